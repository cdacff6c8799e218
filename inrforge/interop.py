"""Conversion to and from the DWSNets / neural-graphs dataset form.

That form is one PyTorch state dict (``.pth``) per INR, with ``seq.{i}.weight`` (out, in) and
``seq.{i}.bias`` (out,), and a splits JSON ``{"train"|"val"|"test": {"path": [...], "label":
[...]}}``.  The labels may instead be a ``label`` key in each state dict.  Importing makes a
one-view store.  Its PSNR is NaN ("unknown"): the targets are not part of that form.

Three conventions differ from inrforge's and are converted both ways (docs/format.md, "DWSNets
import and export"):

* coordinates: DWSNets' ``make_coordinates`` feeds ``(x, y) = (column, row)``; inrforge feeds
  ``(row, column)``.  For INRs of 2-D coordinates the two input columns of the first layer's
  weight are swapped on import and on export (``W0[:, [1, 0]]``), an exact change of variables;
* labels: DWSNets writes class ids as strings (``"2"``); labels that are all integers become
  int64 class ids, other numbers float32 regression targets;
* an export's ``splits.json`` also records the ``arch``, the labels' dtype, the coordinate grid
  and, for Fourier-feature archs, the ``fourier_matrix``, which an import uses.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .arch import INRSpec, make_arch
from .errors import InrforgeError, first_line
from .files import local_path, move_into_place, output_path, process_alive, write_json
from .store import (INRStore, ShardData, check_leftovers, create_store, is_own_build, is_store, open_store,
                    prepare_output, remove_store, replace_store)
from .weights import Weights

_KEY = re.compile(r"^(seq|layers|net|model)\.(\d+)\.(weight|bias)$")
# Keys that belong to the network but not to a plain MLP's layers: a nested layer (nfn's
# net.0.linear.weight), an input encoding (seq.0.b, DWSNets' Gaussian features).  Anything else
# (label, DWSNets' SSL sines' coef / x / y) is data beside the network, and ignored.
_LAYER_LIKE = re.compile(r"^((seq|layers|net|model)\.|.*\.(weight|bias)$)")
_SPLITS = ("train", "val", "test")
_MAX_EXACT_INT = 2 ** 53  # floats beyond this are not trusted to be integers


# ----- reading state dicts ---------------------------------------------------------------------

def _load_state(path: Path) -> dict:
    """The object a ``.pth`` file holds (a wrapped ``{"state_dict": ...}`` unwrapped), or a one-line
    error saying why the file cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = first_line(e)
        if "Weights only load failed" in msg:
            msg = "not a PyTorch file that torch.load(weights_only=True) accepts"
        elif isinstance(e, (EOFError, KeyError, pickle.UnpicklingError)):  # not a zip nor a pickle
            msg = "the file is empty" if _is_empty(path) else "not a PyTorch file (or a truncated one)"
        raise InrforgeError(f"cannot read {path}: {msg}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = {**state["state_dict"], **({"label": state["label"]} if "label" in state else {})}
    if not isinstance(state, dict):
        raise InrforgeError(f"{path} is not a state dict")
    return state


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _check_dense(value: torch.Tensor, key, path) -> None:
    """A one-line error unless ``value`` is a dense CPU tensor that holds its values."""
    if value.device.type == "meta":
        raise InrforgeError(f"{path}: {key} is a tensor on the meta device, which holds no values")
    if value.layout != torch.strided or value.is_quantized:
        kind = "quantized" if value.is_quantized else "sparse"
        raise InrforgeError(f"{path}: {key} is a {kind} tensor; expected a dense one of plain numbers")


def _layers(state: dict, path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) pairs of a state dict, in layer order, checked to form an MLP."""
    found: dict[int, dict[str, torch.Tensor]] = {}
    prefixes = set()
    other = [str(k) for k in state if not _KEY.match(str(k)) and _LAYER_LIKE.match(str(k))]
    if other:  # a tensor the MLP would not read (a nested layer, an input encoding): not an INR we can rebuild
        raise InrforgeError(f"{path}: unexpected entr{'y' if len(other) == 1 else 'ies'} {', '.join(other[:5])}"
                            f"{', ...' if len(other) > 5 else ''}; an INR file holds only seq.{{i}}.weight / "
                            f"seq.{{i}}.bias (and label)")
    for key, value in state.items():
        m = _KEY.match(str(key))
        if m:
            prefixes.add(m.group(1))
            if not torch.is_tensor(value):
                raise InrforgeError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
            _check_dense(value, key, path)
            found.setdefault(int(m.group(2)), {})[m.group(3)] = value
    if not found:
        raise InrforgeError(f"{path}: no seq.{{i}}.weight / seq.{{i}}.bias entries")
    if len(prefixes) > 1:
        raise InrforgeError(f"{path}: layers under several prefixes ({', '.join(sorted(prefixes))}); "
                            f"expected one MLP such as seq.{{i}}.weight / seq.{{i}}.bias")
    layers = []
    for i in sorted(found):
        if set(found[i]) != {"weight", "bias"}:
            raise InrforgeError(f"{path}: layer {i} lacks its weight or bias")
        w, b = found[i]["weight"], found[i]["bias"]
        if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[0]:
            raise InrforgeError(f"{path}: layer {i} has weight {tuple(w.shape)} and bias {tuple(b.shape)}; "
                                f"expected (out, in) and (out,)")
        if layers and w.shape[1] != layers[-1][0].shape[0]:
            raise InrforgeError(f"{path}: layer {i} takes {w.shape[1]} inputs but the layer before gives "
                                f"{layers[-1][0].shape[0]}")
        if w.is_complex() or b.is_complex():
            raise InrforgeError(f"{path}: layer {i} is complex-valued")
        layers.append((w, b))
    return layers


def arch_from_state(state: dict, path="state dict", preset: str = "siren-dwsnets", w0: float = 30.0) -> INRSpec:
    """The INRSpec whose shapes match a state dict (family, offset and init from ``preset``).

    ``relu-fourier`` is refused: a plain state dict lacks the Fourier matrix its first layer reads.
    """
    layers = _layers(state, path)
    widths = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
    if preset == "relu-fourier":
        raise InrforgeError(f"{path}: relu-fourier INRs need their Fourier matrix, which a plain state dict "
                            "lacks; import them from an inrforge export-dws folder (its splits.json records "
                            "the arch and the matrix)")
    base = make_arch(preset, w0=w0)
    return INRSpec(widths=tuple(widths), family=base.family, w0=base.w0, output_offset=base.output_offset,
                   init=base.init)


def _flat(state: dict, arch: INRSpec, path, what: str) -> np.ndarray:
    """A state dict's (P,) float32 parameters in ``arch``'s flat layout (:meth:`Weights.flatten`),
    as the file holds them (no coordinate swap); a one-line error unless its layers have the arch's
    shapes and every value is finite."""
    layers = _layers(state, path)
    shapes = [(tuple(w.shape), tuple(b.shape)) for w, b in layers]
    if shapes != [(ws, bs) for ws, bs in zip(arch.weight_shapes, arch.bias_shapes)]:
        raise InrforgeError(f"{path}: layer shapes {shapes} differ from {what} {list(arch.widths)}")
    one = Weights(tuple(w.detach().float()[None] for w, _ in layers),
                  tuple(b.detach().float()[None] for _, b in layers), arch)  # a batch of one
    flat = one.flatten()[0].numpy()
    if not np.isfinite(flat).all():
        raise InrforgeError(f"{path}: the weights hold NaN or infinite values")
    return flat


# ----- DWSNets' coordinate order -----------------------------------------------------------------

def _swaps_inputs(arch: INRSpec) -> bool:
    """True for INRs of 2-D coordinates: DWSNets orders them (x = column, y = row)."""
    return arch.in_features == 2


def _swaps_first_weight(arch: INRSpec) -> bool:
    """True when the coordinate swap is done on the first layer's weight: 2-D coordinates fed to the
    MLP directly.  With Fourier features the first layer reads the features, and the swap is done on
    the Fourier matrix instead (:func:`_dws_fourier_matrix`)."""
    return _swaps_inputs(arch) and arch.fourier is None


def _swap_xy(w: Weights) -> Weights:
    """The same INRs with their two input coordinates exchanged: ``W0 -> W0[..., [1, 0]]`` (the
    columns of the first weight), everything else shared, so that ``f_new(u, v) = f(v, u)``
    exactly (a permutation of inputs, no arithmetic).  It is its own inverse, and the one
    conversion between inrforge's ``(row, column)`` and DWSNets' ``(x = column, y = row)``, on
    import and on export alike."""
    if not _swaps_first_weight(w.arch):
        raise ValueError(f"_swap_xy is for MLPs of 2-D coordinates without Fourier features, got {w.arch}")
    return Weights((w.weights[0][..., [1, 0]], *w.weights[1:]), w.biases, w.arch)


def _dws_fourier_matrix(arch: INRSpec) -> np.ndarray:
    """The Fourier matrix ``B`` (m x in) of a Fourier-feature arch in DWSNets' coordinate order: for
    2-D coordinates its two columns swapped, the same change of variables as :func:`_swap_xy`
    (``B @ (row, col) = B[:, ::-1] @ (col, row)``)."""
    matrix = arch.fourier.matrix().numpy()
    return matrix[:, ::-1] if _swaps_inputs(arch) else matrix


# ----- labels --------------------------------------------------------------------------------

def _number(value, where: str):
    """A label entry as an int or a finite float; DWSNets' string class ids ("2") are numbers too."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise InrforgeError(f"{where}: label {value!r} is not a number (labels must be class ids "
                                "or regression targets)") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InrforgeError(f"{where}: label {value!r} is not a number (labels must be class ids or "
                            "regression targets)")
    if isinstance(value, numbers.Integral):
        value = int(value)
        if not -2 ** 63 <= value < 2 ** 63:
            raise InrforgeError(f"{where}: label {value} does not fit in int64")
        return value
    value = float(value)
    if not math.isfinite(value):
        raise InrforgeError(f"{where}: label {value} is not finite")
    return value


def _label(value, where: str):
    """A label: a number, or a flat non-empty list of numbers (a vector target)."""
    if torch.is_tensor(value):
        if value.ndim > 1:
            raise InrforgeError(f"{where}: label of shape {tuple(value.shape)}; expected a number or a vector")
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, (list, tuple)) for v in value):
            raise InrforgeError(f"{where}: label {value!r} must be a number or a non-empty flat list of numbers")
        return [_number(v, where) for v in value]
    return _number(value, where)


def _is_integer(v) -> bool:
    return isinstance(v, int) or (v.is_integer() and abs(v) <= _MAX_EXACT_INT)


def _label_array(labels: list, wheres: list[str], recorded_dtype=None) -> np.ndarray:
    """int64 class ids when every (scalar) label is an integer, else float32; vectors are float32."""
    shapes = [len(v) if isinstance(v, list) else None for v in labels]
    for k, s in enumerate(shapes):
        if s != shapes[0]:
            what = (lambda s: "a number" if s is None else f"a vector of {s}")
            raise InrforgeError(f"labels of different shapes: {wheres[0]} has {what(shapes[0])}, "
                                f"{wheres[k]} has {what(s)}")
    if shapes[0] is not None:
        return np.asarray(labels, dtype=np.float32)
    integral = all(_is_integer(v) for v in labels)
    if recorded_dtype == "int64" and not integral:
        k = next(k for k, v in enumerate(labels) if not _is_integer(v))
        raise InrforgeError(f"{wheres[k]}: label {labels[k]} is not an integer, but the splits file "
                            "records int64 (class id) labels")
    if integral and recorded_dtype != "float32":
        return np.asarray([int(v) for v in labels], dtype=np.int64)
    return np.asarray(labels, dtype=np.float32)


# ----- the splits JSON -----------------------------------------------------------------------

def _from_splits_json(splits_file: Path) -> tuple[list[Path], list, list[str], dict, dict]:
    """(paths, labels (None: read from the file), where each label came from, splits, spec)."""
    try:
        spec = json.loads(splits_file.read_text())
    except (OSError, ValueError) as e:
        raise InrforgeError(f"cannot read splits file {splits_file}: {e}") from None
    if not isinstance(spec, dict):
        raise InrforgeError(f"{splits_file}: expected a JSON object {{'train': {{'path': [...], 'label': [...]}}, ...}}, "
                            f"got a {type(spec).__name__}")
    paths, labels, wheres, splits, numbers = [], [], [], {}, []
    for name in _SPLITS:
        part = spec.get(name)
        if part is None:
            continue
        if not isinstance(part, dict) or "path" not in part:
            raise InrforgeError(f"{splits_file}: split {name!r} must be {{'path': [...], 'label': [...]}}")
        p = part["path"]
        lab = part.get("label", [None] * len(p) if isinstance(p, list) else None)
        if not isinstance(p, list) or not all(isinstance(q, str) for q in p):
            raise InrforgeError(f"{splits_file}: split {name!r}: 'path' must be a list of file names")
        if not isinstance(lab, list):
            raise InrforgeError(f"{splits_file}: split {name!r}: 'label' must be a list (one label per path)")
        if len(lab) != len(p):
            raise InrforgeError(f"{splits_file}: split {name!r} has {len(p)} paths but {len(lab)} labels")
        splits[name] = np.arange(len(paths), len(paths) + len(p))
        index = part.get("index")  # export-dws: the object numbers in the exported store
        ok = isinstance(index, list) and len(index) == len(p) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and _is_integer(v) for v in index)
        numbers = numbers + [int(v) for v in index] if ok and numbers is not None else None
        for k, q in enumerate(p):
            q = Path(q)
            paths.append(q if q.is_absolute() else splits_file.parent / q)
            wheres.append(f"{splits_file} ({name} entry {k})")
        labels += lab
    if not paths:
        raise InrforgeError(f"{splits_file} lists no INRs")
    if numbers is not None and sorted(numbers) == list(range(len(paths))):
        # an export of a whole store: every object goes back to its own number
        order = np.argsort(numbers)
        paths, labels, wheres = ([seq[j] for j in order] for seq in (paths, labels, wheres))
        where = np.asarray(numbers)
        splits = {name: np.sort(where[idx]) for name, idx in splits.items()}
    return paths, labels, wheres, splits, spec


def _recorded_arch(spec: dict, splits_file, preset, w0) -> INRSpec | None:
    """The arch an export recorded in its splits file (checked against ``preset``/``w0`` if given)."""
    if "arch" not in spec:
        return None
    if not isinstance(spec["arch"], dict):
        raise InrforgeError(f"{splits_file}: 'arch' must be an object (as export-dws writes it)")
    try:
        arch = INRSpec.from_dict(spec["arch"])
    except InrforgeError as e:
        raise InrforgeError(f"{splits_file}: {e}") from None
    name = arch.init + ("-fourier" if arch.fourier is not None else "")  # the preset it was made with
    if preset is not None:
        want = make_arch(preset, w0=arch.w0)
        if (want.family, want.init, want.output_offset, want.fourier is None) != \
                (arch.family, arch.init, arch.output_offset, arch.fourier is None):
            raise InrforgeError(f"{splits_file} records a {name} arch ({arch.family}, output offset "
                                f"{arch.output_offset}{', Fourier features' if arch.fourier else ''}); it "
                                f"contradicts --arch {preset}: leave --arch out")
    if w0 is not None and arch.family != "siren":
        raise InrforgeError(f"{splits_file} records a {name} arch, which has no w0: leave --w0 out")
    if w0 is not None and float(w0) != arch.w0:
        raise InrforgeError(f"{splits_file} records w0={arch.w0:g}; it contradicts --w0 {float(w0):g}: leave --w0 out")
    if arch.fourier is not None:
        matrix = spec.get("fourier_matrix")
        try:
            matrix = np.asarray(matrix, dtype=np.float32)
        except (TypeError, ValueError):
            matrix = None
        expected = _dws_fourier_matrix(arch)  # as an export records it
        if matrix is None or matrix.shape != expected.shape:
            raise InrforgeError(f"{splits_file}: a Fourier-feature arch needs 'fourier_matrix', a "
                                f"{expected.shape[0]} x {expected.shape[1]} list of lists")
        if not np.array_equal(matrix, expected):
            raise InrforgeError(f"{splits_file}: 'fourier_matrix' is not the matrix of the recorded Fourier "
                                f"features (seed {arch.fourier.seed}, sigma {arch.fourier.sigma})")
    return arch


def _recorded_grid(spec: dict, splits_file, arch: INRSpec) -> dict | None:
    grid = spec.get("grid")
    if grid is None:
        return None
    bad = InrforgeError(f"{splits_file}: 'grid' must be an image grid {{'kind': 'image', 'height', 'width', "
                        f"'channels'}} for INRs of 2-D coordinates or an interval grid for 1-D ones, "
                        f"matching the arch's {arch.in_features} inputs and {arch.out_features} outputs")
    if not isinstance(grid, dict):
        raise bad
    posint = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
    if grid.get("kind") == "image":
        if not (arch.in_features == 2 and posint(grid.get("height")) and posint(grid.get("width"))
                and grid.get("channels") == arch.out_features):
            raise bad
        return dict(grid)  # as recorded, descriptive keys included
    if grid.get("kind") == "interval":
        lo, hi = grid.get("lo"), grid.get("hi")
        if not (arch.in_features == 1 and posint(grid.get("n_points")) and isinstance(grid.get("endpoint", False), bool)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi))):
            raise bad
        return dict(grid)
    raise bad


# ----- writing safely ----------------------------------------------------------------------------

def _make_parent(path: Path, what: str) -> list[Path]:
    """Create ``path``'s missing parent folders; returns those created (outermost first)."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InrforgeError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    missing.reverse()
    try:
        for folder in missing:
            folder.mkdir()
    except OSError as e:
        _remove_empty(missing)
        raise InrforgeError(f"cannot write {what} {path}: {e.strerror or e}") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


# Why not the store's own scheme (``OUT.tmp-PID`` / ``OUT.old-PID`` beside OUT, store.check_leftovers):
# * an import writes every shard before the store may appear at ``out``, but a leftover
#   ``OUT.tmp-PID`` is reaped only while it holds no fitted INR (is_own_build, fitted=False, which
#   keeps a half-done fit safe), so a killed import's would stay forever; in a staging folder the
#   store (built there by create_store, with the store's scheme) is reaped with fitted=True;
# * an export is no store, and one into an empty folder is staged inside that folder, where a
#   visible ``OUT.tmp-PID`` would look like content: the staging folder is hidden;
# * a dead staging folder holds only copies being written (and, with --overwrite, an earlier export
#   being replaced) and is deleted whole, while a store set aside as ``OUT.old-PID`` may be the only
#   copy of its INRs and is refused instead (an import replacing a store at ``out`` uses that scheme:
#   replace_store).  process_alive, move_into_place and is_own_build are the shared parts.
_STAGING_SUFFIX = ".inrforge-tmp"


def _staging_dir(path: Path, what: str) -> Path:
    """A new hidden folder ``.NAME.PID-XXXX.inrforge-tmp`` beside ``path`` to build into (fails
    early when that is not writable).  Those that processes now gone left beside ``path`` (an
    import or export killed with SIGKILL) are deleted first (:func:`_remove_dead_staging`)."""
    _remove_dead_staging(path)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=_STAGING_SUFFIX, dir=path.parent))
    except OSError as e:
        raise InrforgeError(f"cannot write {what} {path}: {e.strerror or e} (in {path.parent})") from None


def _remove_dead_staging(path: Path) -> None:
    """Delete the staging folders of ``path`` (:func:`_staging_dir`) whose process is gone and that
    hold only what an import or export builds there (:func:`_own_staging`); those of a running
    process are its work in progress, and anything else is left alone."""
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if (name.startswith(prefix) and name.endswith(_STAGING_SUFFIX) and pid.isdigit()
                and not process_alive(int(pid)) and _own_staging(path.parent / name)):
            shutil.rmtree(path.parent / name, ignore_errors=True)


_WRITE_JSON_TMP = re.compile(r"^\.splits\.json\.\d+\.tmp$")  # write_json's temporary file


def _own_staging(folder: Path) -> bool:
    """True when the folder (not a link) holds only what :func:`import_dws` or :func:`export_dws`
    builds in a staging folder, and no links: a store (``store``, or the ``store.tmp-PID`` it is
    built in; :func:`inrforge.store.is_own_build`) or export files (``export``, or ``replaced``: an
    earlier export set aside), so deleting it loses nothing they did not make."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    for entry in folder.iterdir():
        if entry.name == "store" or re.fullmatch(r"store\.tmp-\d+", entry.name):
            if not is_own_build(entry, fitted=True):
                return False
        elif entry.name not in ("export", "replaced") or not _export_files_only(entry):
            return False
    return True


def _export_files_only(folder: Path) -> bool:
    """True when the folder (not a link) holds only what :func:`export_dws` writes, finished or not:
    ``splits.json`` (or its temporary file) and train/val/test folders of ``NNNNNNN.pth`` files."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    for p in folder.iterdir():
        if p.is_symlink():
            return False
        if p.is_dir() and p.name in _SPLITS:
            if not all(f.is_file() and not f.is_symlink() and _EXPORTED_FILE.match(f.name) for f in p.iterdir()):
                return False
        elif not (p.is_file() and (p.name == "splits.json" or _WRITE_JSON_TMP.match(p.name))):
            return False
    return True


# ----- import ----------------------------------------------------------------------------------

def import_dws(data_dir, out, splits_file=None, preset: str | None = None, w0: float | None = None,
               shard_objects: int = 1024, overwrite: bool = False, image_size: tuple[int, int] | None = None) -> INRStore:
    """Convert a folder of per-INR state dicts into a one-view store, keeping the splits.

    Without a splits file, every ``*.pth`` under ``data_dir`` (sorted) is imported, labels come
    from each file's ``label`` key, and the splits follow the path: ``test`` in it -> test,
    ``val`` -> val, else train.  ``image_size=(H, W)`` records the image grid the INRs were fitted
    on (``inrforge render`` needs it; the DWSNets MNIST INRs are 28 x 28).

    The arch is the one a splits file written by :func:`export_dws` records; ``preset`` and ``w0``
    (default ``siren-dwsnets`` and 30) are for files that record none, and contradicting a
    recorded arch is an error.  Every file is read and checked before anything is written, and
    the store is built beside ``out`` and renamed into place: a failed import leaves ``out`` as
    it was (with ``overwrite``, an existing store there is replaced only by a complete import).
    """
    data_dir = _import_folder(data_dir, image_size)
    out = local_path(out)
    url = "://" in out
    prepare_output(out, overwrite)  # refuses a file, a non-empty folder, or a store without overwrite; deletes nothing

    paths, labels, wheres, splits, spec, splits_file = _collect_inputs(data_dir, splits_file)
    arch = _recorded_arch(spec, splits_file, preset, w0)
    grid = None if arch is None else _recorded_grid(spec, splits_file, arch)
    recorded_dtype = spec.get("label_dtype")
    if recorded_dtype not in (None, "int64", "float32"):
        raise InrforgeError(f"{splits_file}: 'label_dtype' must be 'int64' or 'float32', got {recorded_dtype!r}")

    staging, created, ok = None, [], False
    if not url:  # fail before reading every file when --out cannot be written
        check_leftovers(out.rstrip("/") or "/")
        created = _make_parent(Path(out), "a store at")
        staging = _staging_dir(Path(out), "a store at")
    try:
        arch, params, lab = _read_inrs(paths, labels, wheres, arch, preset, w0, recorded_dtype)
        if image_size is not None:
            grid = _image_grid(image_size, arch, grid, splits_file)
        # an export written before the swap existed records its arch but no label_dtype: its files
        # are already in inrforge's (row, col) order
        pre_swap_export = "arch" in spec and "label_dtype" not in spec
        if _swaps_first_weight(arch) and not pre_swap_export:  # DWSNets (x=col, y=row) -> inrforge (row, col)
            params = _swap_xy(Weights.from_flat(torch.from_numpy(params), arch)).flatten().numpy()
        source = {"name": "dws-import", "params": {"path": str(data_dir.resolve())}, "n_objects": len(paths),
                  "target_scaling": "unknown (imported)", "grid": grid, "label_names": None,
                  "label_shape": list(lab.shape[1:])}
        _write_store(out, None if url else str(staging / "store"), arch, params, lab, splits, source,
                     {"imported_from": str(data_dir.resolve())}, shard_objects)
        ok = True
    finally:  # the staging folder goes, holding at most a half-built store or the replaced one
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            _remove_empty(created)
    return INRStore(out, mode="r+")


def _import_folder(data_dir, image_size) -> Path:
    """``data_dir`` as a Path, refused unless it is a folder; ``image_size`` refused unless it is
    two positive integers (or None)."""
    if not str(data_dir).strip():  # Path("") is the current folder
        raise InrforgeError("import_dws needs a folder, got an empty path")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InrforgeError(f"no folder {data_dir}")
    if image_size is not None:
        if (len(image_size) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                                             for v in image_size)):
            raise InrforgeError(f"image size must be two positive integers (height, width), got {image_size!r}")
    return data_dir


def _collect_inputs(data_dir: Path, splits_file) -> tuple[list[Path], list, list[str], dict, dict, Path | None]:
    """What to import: (the INR files, their labels from the splits file (None: from the file),
    where each label came from, the splits, the splits file's contents, the splits file).

    The splits file defaults to ``data_dir/splits.json`` when that exists; without one, every
    ``*.pth`` under ``data_dir`` (sorted), split by its path.  Every file must exist, once."""
    if splits_file is None and (data_dir / "splits.json").exists():
        splits_file = data_dir / "splits.json"
    spec = {}
    if splits_file is not None:
        splits_file = Path(splits_file)
        paths, labels, wheres, splits, spec = _from_splits_json(splits_file)
    else:
        paths = sorted(data_dir.rglob("*.pth"))
        if not paths:
            raise InrforgeError(f"no .pth files under {data_dir}")
        labels = [None] * len(paths)
        wheres = [str(p) for p in paths]
        rel = [p.relative_to(data_dir).as_posix().lower() for p in paths]
        which = np.array(["test" if "test" in r else "val" if "val" in r else "train" for r in rel])
        splits = {name: np.flatnonzero(which == name) for name in _SPLITS}
    seen = {}
    for p in paths:
        if not p.is_file():
            raise InrforgeError(f"missing INR file {p}" if not p.exists() else f"{p} is not a file")
        key = os.path.realpath(p)
        if key in seen:
            raise InrforgeError(f"{splits_file}: {p} is listed twice (an INR belongs to one split, once)")
        seen[key] = p
    return paths, labels, wheres, splits, spec, splits_file


def _read_inrs(paths: list[Path], labels: list, wheres: list[str], arch: INRSpec | None, preset, w0,
               recorded_dtype) -> tuple[INRSpec, np.ndarray, np.ndarray]:
    """(the arch, the (N, P) float32 parameters as the files hold them, the label array) of every
    file, read and checked.  Without a recorded ``arch``, the first file's shapes give it
    (:func:`arch_from_state` with ``preset`` and ``w0``); a label not given in ``labels`` is the
    file's own ``label`` key."""
    what = "the arch recorded in the splits file" if arch is not None else "the first INR's arch"
    flats, found = [], []
    for k, p in enumerate(paths):
        state = _load_state(p)
        if arch is None:
            arch = arch_from_state(state, p, preset or "siren-dwsnets", 30.0 if w0 is None else w0)
        flats.append(_flat(state, arch, p, what))
        if labels[k] is not None:
            found.append(_label(labels[k], wheres[k]))
        elif "label" in state:
            found.append(_label(state["label"], f"{p} ('label')"))
        else:
            raise InrforgeError(f"{p}: no label (give a splits JSON or a 'label' key)")
    lab = _label_array(found, [str(p) if labels[k] is None else wheres[k] for k, p in enumerate(paths)],
                       recorded_dtype)
    return arch, np.stack(flats).astype(np.float32), lab


def _image_grid(image_size, arch: INRSpec, recorded: dict | None, splits_file) -> dict:
    """The image grid ``image_size=(H, W)`` describes, for INRs of 2-D coordinates and 1 or 3
    outputs; it must agree with a grid the splits file records."""
    if arch.in_features != 2:
        raise InrforgeError(f"--image-size is for INRs of 2-D image coordinates; these take "
                            f"{arch.in_features} input{'s' if arch.in_features != 1 else ''}")
    if arch.out_features not in (1, 3):
        raise InrforgeError(f"--image-size is for INRs of images, with 1 (gray) or 3 (RGB) outputs; these "
                            f"have {arch.out_features}")
    h, w = int(image_size[0]), int(image_size[1])
    if recorded is not None and (recorded["kind"], recorded.get("height"), recorded.get("width")) != ("image", h, w):
        raise InrforgeError(f"--image-size {h}x{w} contradicts the grid {splits_file} records "
                            f"({recorded.get('height')}x{recorded.get('width')})")
    return {"kind": "image", "height": h, "width": w, "channels": arch.out_features,
            "coords": "coords[r*W + c] = (linspace(-1,1,H)[r], linspace(-1,1,W)[c]), row-major"}


def _write_store(out: str, build: str | None, arch: INRSpec, params: np.ndarray, labels: np.ndarray, splits: dict,
                 source: dict, fit: dict, shard_objects: int) -> None:
    """Write the one-view store of ``params`` (N, P), every shard, at ``build`` and move it to
    ``out`` (:func:`~inrforge.store.replace_store`); with no ``build`` (``out`` is a URL, where
    nothing can be renamed) straight at ``out``, after removing a store there.  The PSNR and loss
    are NaN (unknown), the steps 0, and no INR is failed."""
    n = len(params)
    params = params[:, None]  # (N, 1, P)
    try:
        if build is None and is_store(out):
            remove_store(out)  # no rename on an object store: the old store goes first
        store = create_store(out if build is None else build, arch=arch, n_objects=n, views=1, labels=labels,
                             splits=splits, source=source, fit=fit, shard_objects=shard_objects)
        for k in range(store.n_shards):
            a, b = store.shard_range(k)
            unknown = np.full((b - a, 1), np.nan, np.float32)
            store.write_shard(ShardData(a, params[a:b], unknown, unknown, np.zeros((b - a, 1), np.int32),
                                        np.zeros((b - a, 1), bool)))
        if build is not None:
            replace_store(build, out)
    except OSError as e:
        raise InrforgeError(f"cannot write a store at {out}: {e.strerror or e}") from None


# ----- export ----------------------------------------------------------------------------------

_EXPORTED_FILE = re.compile(r"^\d{7,}\.pth$")  # f"{index:07d}.pth": 8+ digits from 10 million objects


def _is_export(folder: Path) -> bool:
    """True for a folder export_dws wrote: a splits.json that records an ``arch`` (every export's
    does; a DWSNets splits file does not) and train/val/test folders holding only ``NNNNNNN.pth``
    files, nothing else (so ``overwrite`` never deletes files export_dws did not write)."""
    names = {p.name for p in folder.iterdir()}
    if "splits.json" not in names or not names <= {"splits.json", *_SPLITS}:
        return False
    try:
        spec = json.loads((folder / "splits.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), dict):
        return False
    for name in names - {"splits.json"}:
        sub = folder / name
        if sub.is_symlink() or not sub.is_dir():
            return False
        if not all(f.is_file() and not f.is_symlink() and _EXPORTED_FILE.match(f.name) for f in sub.iterdir()):
            return False
    return True


def exportable(store: INRStore, view: int = 0) -> tuple[np.ndarray, str]:
    """(the objects :func:`export_dws` writes for ``view``: fitted, and that view not failed; what
    it leaves out, in words such as ``"3 not fitted and 1 failed"``, or ``""``)."""
    view = store.check_view(view)
    done = store.done()
    usable = store.usable(done)[:, view]
    counts = ((int((~done).sum()), "not fitted"), (int((done & ~usable).sum()), "failed"))
    return np.flatnonzero(usable), " and ".join(f"{n} {what}" for n, what in counts if n)


_IN_PLACE = "export"  # staging folders inside an empty out_dir are named after this (.export.PID-...)


def export_dws(store, out_dir, view: int = 0, overwrite: bool = False) -> Path:
    """Write one ``seq.{i}.weight``/``seq.{i}.bias`` state dict (plus ``label``) per object and a
    DWSNets ``splits.json``; returns the splits file.  Objects not fitted, and those whose
    ``view`` failed, are left out (:func:`exportable`); a store with no INR left to export is
    refused before anything is written.

    ``out_dir`` must be absent or an empty folder (with ``overwrite``, a folder an earlier export
    wrote, holding nothing else, is replaced).  The export is built in a hidden folder beside a new
    ``out_dir`` (renamed into place at the end) or inside an empty one (its contents moved up at the
    end, ``splits.json`` last).  A failed export leaves nothing behind; what an export killed with
    SIGKILL left is deleted by the next export to the same place.  The splits file also records the
    ``arch``, ``label_dtype``, the coordinate ``grid`` and, for Fourier-feature archs, the
    ``fourier_matrix``, so that :func:`import_dws` rebuilds the store exactly.
    """
    store = store if isinstance(store, INRStore) else open_store(store)
    view = store.check_view(view)  # before creating anything
    usable, left_out = exportable(store, view)
    if len(usable) == 0:  # an export without INRs is a folder import_dws refuses
        raise InrforgeError(f"nothing to export: {store.path} has no usable INR of view {view} "
                            f"(of {len(store)} objects, {left_out})")
    # a file:// URL is its local path; only --overwrite replaces the folder (an empty one is filled in place)
    out_dir = Path(output_path(out_dir, "the export folder", replaced=overwrite))
    _check_export_folder(out_dir, overwrite)
    in_place = out_dir.is_dir() and not any(out_dir.iterdir())  # an empty folder is filled where it is
    created = [] if in_place else _make_parent(out_dir, "an export to")
    # built hidden (inside the empty folder, or beside a new one), then moved into place
    staging = _staging_dir(out_dir / _IN_PLACE if in_place else out_dir, "an export to")
    build = staging / "export"
    ok = False
    try:
        build.mkdir()
        spec = {name: _export_split(store, name, usable, view, build) for name in _SPLITS}
        spec.update(_export_records(store))
        write_json(build / "splits.json", spec, indent=None)  # last, whole: the export is complete
        if in_place:
            for name in (*_SPLITS, "splits.json"):  # splits.json last: the export is complete
                os.replace(build / name, out_dir / name)
        else:
            move_into_place(build, out_dir, aside=staging / "replaced")
        ok = True
    except OSError as e:
        raise InrforgeError(f"cannot write an export to {out_dir}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            if in_place:  # the folder was empty: everything moved into it is ours
                _remove_export_files(out_dir)
            _remove_empty(created)
    return out_dir / "splits.json"


def _check_export_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that is a file, or a folder that is neither empty nor (with
    ``overwrite``) an earlier export (:func:`_is_export`); what a killed export into that empty
    folder left inside it is deleted first."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InrforgeError(f"{out_dir} is a file; choose an empty folder")
    _remove_dead_staging(out_dir / _IN_PLACE)  # what an export into this empty folder left when killed
    if any(out_dir.iterdir()) and not (overwrite and _is_export(out_dir)):
        hint = (" (overwrite replaces only an earlier export-dws folder)" if overwrite
                else " or pass --overwrite to replace this earlier export" if _is_export(out_dir) else "")
        raise InrforgeError(f"{out_dir} is not empty; choose an empty folder{hint}")


def _export_split(store: INRStore, name: str, usable: np.ndarray, view: int, build: Path) -> dict:
    """Write split ``name``'s usable INRs (view ``view``) as ``build/name/NNNNNNN.pth`` state dicts
    (:func:`_state_dict`, in DWSNets' coordinate order, :func:`_swap_xy`), 1,024 at a time;
    returns the split's entry of ``splits.json`` (``path``, ``label``, ``index``)."""
    idx = store.split(name)
    idx = idx[np.isin(idx, usable)]  # a failed fit is not exported as a good one
    entries = {"path": [], "label": [], "index": []}
    (build / name).mkdir()
    for lo in range(0, len(idx), 1024):
        part = idx[lo: lo + 1024]
        weights, labels = store.read(part, view)
        if _swaps_first_weight(store.arch):
            weights = _swap_xy(weights)  # inrforge (row, col) -> DWSNets (x=col, y=row)
        for j, i in enumerate(part):
            label = labels[j].tolist()
            rel = f"{name}/{int(i):07d}.pth"
            torch.save(_state_dict(weights, j, label), build / rel)
            entries["path"].append(rel)
            entries["label"].append(label)
            entries["index"].append(int(i))
    return entries


def _state_dict(weights: Weights, j: int, label) -> dict:
    """INR ``j`` of ``weights`` as DWSNets stores one: ``seq.{i}.weight`` (out, in) and
    ``seq.{i}.bias`` (out,), each in its own storage (a view would save the whole batch), and
    ``label``."""
    state = {}
    for layer, (w, b) in enumerate(zip(weights.weights, weights.biases)):
        state[f"seq.{layer}.weight"] = w[j].clone()
        state[f"seq.{layer}.bias"] = b[j].clone()
    state["label"] = torch.tensor(label)
    return state


def _export_records(store: INRStore) -> dict:
    """What an export's ``splits.json`` records besides the splits, for :func:`import_dws`: the
    ``arch``, ``label_dtype``, the image or interval ``grid``, and a Fourier-feature arch's
    ``fourier_matrix`` (in DWSNets' coordinate order)."""
    arch = store.arch
    records = {"arch": arch.to_dict(),
               "label_dtype": "int64" if np.issubdtype(store.labels.dtype, np.integer) else "float32"}
    grid = store.source.get("grid")
    if isinstance(grid, dict) and grid.get("kind") in ("image", "interval"):
        records["grid"] = grid
    if arch.fourier is not None:
        records["fourier_matrix"] = _dws_fourier_matrix(arch).tolist()
    return records


def _remove_export_files(out_dir: Path) -> None:
    """Delete what a failed export moved into the empty folder ``out_dir``: its train/val/test
    folders and ``splits.json`` (the folder was empty, so they are the export's)."""
    for name in (*_SPLITS, "splits.json"):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()


__all__ = ["import_dws", "export_dws", "exportable", "arch_from_state"]
