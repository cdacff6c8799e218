"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): the default source.

Pixel values are 0..16 in scikit-learn; they are rescaled to uint8 as round(v * 255 / 16).
There is no official test split.
"""

import numpy as np

from .base import ImageSource


def load_digits_source() -> ImageSource:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    return ImageSource("digits", images, d.target, official_test=[], params={},
                       label_names=[str(i) for i in range(10)])
