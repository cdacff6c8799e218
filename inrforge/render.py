"""Pictures of a store: ground truth beside the INRs' reconstructions."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .errors import InrforgeError
from .inr import render
from .store import INRStore


def check_image_path(path: str) -> str:
    """``path`` as an absolute path if a figure may be written there, else an
    :class:`InrforgeError`: its folder must exist, it must not be a folder (a store is one), and its
    extension must be an image format matplotlib writes (so no other file is replaced by a PNG)."""
    from matplotlib.figure import Figure

    out = os.path.abspath(path)
    if os.path.isdir(out):
        raise InrforgeError(f"cannot write {path}: it is a folder; give an image file name such as grid.png")
    if not os.path.isdir(os.path.dirname(out)):
        raise InrforgeError(f"cannot write {path}: folder {os.path.dirname(out)} does not exist")
    if not os.access(os.path.dirname(out), os.W_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        raise InrforgeError(f"cannot write {path}: permission denied")
    ext = os.path.splitext(out)[1].lstrip(".").lower()
    formats = Figure().canvas.get_supported_filetypes()
    if ext not in formats:
        what = f"{'.' + ext} is not an image format" if ext else "it has no image extension"
        raise InrforgeError(f"cannot write {path}: {what} (use one of {', '.join('.' + f for f in sorted(formats))})")
    return out


def reconstructions(store: INRStore, indices, view: int = 0) -> tuple[np.ndarray, dict]:
    """Evaluate the stored INRs on the grid recorded in the store: images (n, H, W, C) clipped to
    [0, 1] for image sources, values (n, n_points) for 1-D sources; returns (values, grid)."""
    from .sources import coords_from_grid

    grid = store.source.get("grid")
    if not grid:
        raise InrforgeError(f"{store.path} records no coordinate grid (an import without --image-size); cannot render")
    coords = coords_from_grid(grid)
    weights, _ = store.read(indices, view)
    with torch.no_grad():
        out = render(weights, coords, chunk=256).numpy()
    if grid["kind"] == "image":
        return out.reshape(len(out), grid["height"], grid["width"], -1).clip(0, 1), grid
    return out[..., 0], grid


def render_grid(store: INRStore, out_png: str, n: int = 16, view: int = 0, split: str = "test") -> str:
    """Write a PNG with, per object, the ground truth (when the source can still be read) above
    its reconstruction.  Objects are the first ``n`` of ``split`` (all objects if it is empty)."""
    from .script import pyplot
    from .sources import SOURCE_NAMES, source_from_description

    plt = pyplot()

    out_png = check_image_path(out_png)
    if n < 1:
        raise InrforgeError(f"--n must be positive, got {n}")
    idx = store.split(split)
    if len(idx) == 0:
        idx = np.arange(len(store))
    done = store.done()
    idx = idx[done[idx]][:n]
    if len(idx) == 0:
        raise InrforgeError(f"{store.path} has no fitted objects to render yet")
    recon, grid = reconstructions(store, idx, view)
    truth = None
    if store.source.get("name") in SOURCE_NAMES:  # imported stores have no source to re-read
        try:
            truth = source_from_description(store.source).targets(idx).numpy()
        except Exception as e:  # the source files may be gone; the reconstructions still render
            warnings.warn(f"ground truth unavailable ({e}); drawing reconstructions only")
    labels = store.labels[idx]
    psnr = store.metric("psnr")[idx, view]

    cols = min(len(idx), 8)
    blocks = -(-len(idx) // cols)
    rows_per = 2 if truth is not None else 1
    fig, axes = plt.subplots(blocks * rows_per, cols, figsize=(1.6 * cols, 1.7 * blocks * rows_per), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(len(idx)):
        b, c = divmod(k, cols)
        ax_r = axes[b * rows_per + rows_per - 1, c]
        label = labels[k] if np.ndim(labels[k]) == 0 else np.round(labels[k], 2).tolist()
        if grid["kind"] == "image":
            show = (lambda a, img: a.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1))
            show(ax_r, recon[k])
            if truth is not None:
                show(axes[b * rows_per, c], truth[k].reshape(recon[k].shape))
        else:
            x = np.linspace(grid["lo"], grid["hi"], grid["n_points"], endpoint=grid.get("endpoint", False))
            ax_r.axis("on")
            ax_r.plot(x, recon[k], lw=1, color="C1")
            if truth is not None:
                ax_r.plot(x, truth[k][:, 0], lw=1, color="C0", ls="--")
            ax_r.set_xticks([])
            ax_r.set_yticks([])
        ax_r.set_title(f"{label} | {psnr[k]:.1f} dB", fontsize=7)
    top = "top: ground truth, bottom: INR" if truth is not None and grid["kind"] == "image" else "INR reconstructions"
    fig.suptitle(f"{store.source.get('name')} view {view}: {top}", fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(out_png, dpi=120)
    except OSError as e:
        raise InrforgeError(f"cannot write {out_png}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out_png
