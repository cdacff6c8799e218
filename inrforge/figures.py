"""Pictures of a store: ground truth beside the INRs' reconstructions."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .errors import InrforgeError, first_line
from .files import check_file_path, file_exists, write_file
from .inr import render
from .store import INRStore


def check_image_path(path: str, overwrite: bool = False) -> str:
    """``path`` as an absolute path if a figure may be written there, else an
    :class:`InrforgeError` (:func:`~inrforge.files.check_file_path`, with the image formats
    matplotlib writes as the extensions, so that no other file is replaced by a PNG)."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    return check_file_path(path, overwrite, tuple("." + f for f in sorted(formats)), "image format",
                           "an image file name such as grid.png")


def reconstructions(store: INRStore, indices, view: int = 0) -> tuple[np.ndarray, dict]:
    """Evaluate the stored INRs on the grid recorded in the store: images (n, H, W, C) clipped to
    [0, 1] for image sources, values (n, n_points) for 1-D sources; returns (values, grid)."""
    from .sources import coords_from_grid

    grid = store.source.get("grid")
    if not grid:
        raise InrforgeError(f"{store.path} records no coordinate grid (an import without --image-size); cannot render")
    if isinstance(grid, dict) and grid.get("kind") == "classifier":
        raise InrforgeError(f"{store.path} is a classifier zoo: its objects are classifiers, not INRs of a "
                            f"coordinate grid; there is nothing to render")
    coords = coords_from_grid(grid)
    weights, _ = store.read(indices, view)
    with torch.no_grad():
        out = render(weights, coords, chunk=256).numpy()
    if grid["kind"] == "image":
        return out.reshape(len(out), grid["height"], grid["width"], -1).clip(0, 1), grid
    return out[..., 0], grid


def _ground_truth(store: INRStore, idx: np.ndarray) -> np.ndarray | None:
    """The targets the objects ``idx`` were fitted to, re-read from the store's source; None (with a
    warning) when that source cannot be read any more or no longer holds the data that was fitted."""
    from .fitjob import source_changes
    from .sources import SOURCE_NAMES, source_from_description

    if store.source.get("name") not in SOURCE_NAMES:  # imported stores have no source to re-read
        return None
    try:
        source = source_from_description(store.source)
        changed = source_changes(store, source)
        if changed:
            raise InrforgeError(f"the source's data changed since the fit: it now has {' and '.join(changed)}")
        return source.targets(idx).numpy()
    except Exception as e:  # the source files may be gone or changed; the reconstructions still render
        warnings.warn(f"ground truth unavailable ({e}); drawing reconstructions only")
        return None


def _label_text(label, names) -> str:
    """A label as a short title: a class id as its name (when the store records names), a regression
    target with 3 significant digits, a vector target as ``name=value`` pairs."""
    label = np.asarray(label)
    names = list(names) if isinstance(names, (list, tuple)) else []
    if label.ndim == 0:
        if np.issubdtype(label.dtype, np.integer):
            v = int(label)
            return str(names[v]) if 0 <= v < len(names) else str(v)
        return f"{float(label):.3g}"
    values = [f"{float(v):.3g}" for v in label.reshape(-1)]
    if len(names) == len(values):
        return ", ".join(f"{n}={v}" for n, v in zip(names, values))
    return "[" + ", ".join(values) + "]"


MAX_RENDERED = 256  # objects in one grid: 512 panels already take matplotlib a minute


def render_grid(store: INRStore, out_png: str, n: int | None = None, view: int = 0, split: str | None = None,
                overwrite: bool = False) -> str:
    """Write a PNG with, per object, the ground truth (when the source can still be read) above
    its reconstruction (1-D sources: in the same plot, dashed).  Objects are the first ``n`` of
    ``split`` (default ``"test"``; all objects if it is empty, with a warning when ``split`` was
    given) whose shard is fitted and whose view did not fail; a
    warning says so when there are fewer than ``n``.  ``n=None``: up to 16, silently.
    ``out_png`` is checked by :func:`check_image_path` (an existing file is replaced only with
    ``overwrite``) and written whole or not at all (:func:`~inrforge.files.write_file`); returns
    its absolute path."""
    from .script import pyplot
    from .sources import coords_from_grid

    plt = pyplot()

    shown = out_png  # as given, for messages
    out_png = check_image_path(out_png, overwrite)
    asked, n = n, 16 if n is None else n
    if isinstance(n, bool) or int(n) != n or not 1 <= n <= MAX_RENDERED:
        raise InrforgeError(f"--n must be an integer from 1 to {MAX_RENDERED} (a grid of two panels per object), got {n}")
    view = store.check_view(view)
    asked_split, split = split, "test" if split is None else split
    idx = store.split(split)
    where = f"the {split} split"
    if len(idx) == 0:
        idx = np.arange(len(store))
        where = f"all objects (the {split} split is empty)"
        if asked_split is not None:
            warnings.warn(f"the {split} split of {store.path} is empty; drawing from all objects")
    done = store.done()
    fitted = idx[done[idx]]
    usable = idx[store.usable(done)[idx, view]]
    if len(usable) == 0:
        if len(fitted):
            raise InrforgeError(f"{store.path}: the {len(fitted)} fitted INR(s) of view {view} in {where} all "
                                f"failed (their loss became NaN/inf); nothing to render")
        if done.any():
            raise InrforgeError(f"{store.path} has no fitted objects to render yet in {where} "
                                f"({int(done.sum())} of {len(store)} objects are fitted; try another --split)")
        raise InrforgeError(f"{store.path} has no fitted objects to render yet")
    idx = usable[: int(n)]
    if asked is not None and len(idx) < n:  # drawn anyway, but not silently
        warnings.warn(f"{n} objects asked for, but {where} has {len(idx)} with a usable view {view}; "
                      f"drawing those")
    left_out = len(fitted) - len(usable)
    note = f", {left_out} failed INR{'s' if left_out > 1 else ''} left out" if left_out else ""
    recon, grid = reconstructions(store, idx, view)
    truth = _ground_truth(store, idx)
    labels = store.labels[idx]
    names = store.source.get("label_names")
    psnr = store.metric("psnr")[idx, view]

    image = grid["kind"] == "image"
    cols = min(len(idx), 8)
    blocks = -(-len(idx) // cols)
    rows_per = 2 if truth is not None and image else 1  # 1-D: the ground truth shares the plot
    fig, axes = plt.subplots(blocks * rows_per, cols, figsize=(max(1.6 * cols, 4.0), 1.7 * blocks * rows_per),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    x = None if image else coords_from_grid(grid)[:, 0].numpy()  # the points the INRs were evaluated at
    for k in range(len(idx)):
        b, c = divmod(k, cols)
        ax_r = axes[b * rows_per + rows_per - 1, c]
        if image:
            show = (lambda a, img: a.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1))
            show(ax_r, recon[k])
            if truth is not None:
                show(axes[b * rows_per, c], truth[k].reshape(recon[k].shape))
        else:
            ax_r.axis("on")
            ax_r.plot(x, recon[k], lw=1, color="C1")
            if truth is not None:
                ax_r.plot(x, truth[k][:, 0], lw=1, color="C0", ls="--")
            ax_r.set_xticks([])
            ax_r.set_yticks([])
        title = _label_text(labels[k], names)
        if np.isfinite(psnr[k]):  # imported INRs have no recorded PSNR
            title += f" | {psnr[k]:.1f} dB"
        ax_r.set_title(title, fontsize=7)
    if truth is None:
        top = "INR reconstructions"
    else:
        top = "top: ground truth, bottom: INR" if image else "dashed: ground truth, solid: INR"
    fig.suptitle(f"{store.source.get('name')} view {view}, {where.removeprefix('the ')}{note}\n{top}", fontsize=9)
    fig.tight_layout()
    ext = os.path.splitext(out_png)[1].lstrip(".").lower()  # the temporary file's name has another one
    try:
        write_file(out_png, lambda tmp: fig.savefig(tmp, dpi=120, format=ext), overwrite)
    except FileExistsError:  # created while the figure was drawn
        raise file_exists(shown) from None
    except OSError as e:
        raise InrforgeError(f"cannot write {shown}: {e.strerror or e}") from None
    except RuntimeError as e:  # a format whose backend needs a program this machine lacks (pgf: LaTeX)
        raise InrforgeError(f"cannot write {shown} as {ext}: {first_line(e)}"[:300]) from None
    finally:
        plt.close(fig)
    return out_png
