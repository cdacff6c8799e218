"""Conversion to and from the DWSNets / neural-graphs dataset form.

That form is one PyTorch state dict (``.pth``) per INR, with ``seq.{i}.weight`` (out, in) and
``seq.{i}.bias`` (out,), and a splits JSON ``{"train"|"val"|"test": {"path": [...], "label":
[...]}}``.  The labels may instead be a ``label`` key in each state dict.  Importing makes a
one-view store.  Its PSNR is NaN ("unknown"): the targets are not part of that form.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from .arch import INRSpec, make_arch
from .errors import InrforgeError
from .store import INRStore, ShardData, create_store, open_store, prepare_output

_KEY = re.compile(r"^(?:seq|layers|net|model)\.(\d+)\.(weight|bias)$")


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InrforgeError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = {**state["state_dict"], **({"label": state["label"]} if "label" in state else {})}
    if not isinstance(state, dict):
        raise InrforgeError(f"{path} is not a state dict")
    return state


def _layers(state: dict, path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) pairs of a state dict, in layer order."""
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = _KEY.match(key)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not found:
        raise InrforgeError(f"{path}: no seq.{{i}}.weight / seq.{{i}}.bias entries")
    layers = []
    for i in sorted(found):
        if set(found[i]) != {"weight", "bias"}:
            raise InrforgeError(f"{path}: layer {i} lacks its weight or bias")
        layers.append((found[i]["weight"], found[i]["bias"]))
    return layers


def arch_from_state(state: dict, path="state dict", preset: str = "siren-dwsnets", w0: float = 30.0) -> INRSpec:
    """The INRSpec whose shapes match a state dict (family and init from ``preset``)."""
    layers = _layers(state, path)
    widths = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
    base = make_arch(preset, w0=w0)
    return INRSpec(widths=tuple(widths), family=base.family, w0=base.w0, output_offset=base.output_offset,
                   init=base.init)


def _flat(state: dict, arch: INRSpec, path) -> np.ndarray:
    layers = _layers(state, path)
    shapes = [(tuple(w.shape), tuple(b.shape)) for w, b in layers]
    if shapes != [(ws, bs) for ws, bs in zip(arch.weight_shapes, arch.bias_shapes)]:
        raise InrforgeError(f"{path}: layer shapes {shapes} differ from the first INR's arch {list(arch.widths)}")
    return torch.cat([t.detach().float().reshape(-1) for pair in layers for t in pair]).numpy()


def _from_splits_json(splits_file: Path) -> tuple[list[Path], list, dict]:
    try:
        spec = json.loads(splits_file.read_text())
    except (OSError, ValueError) as e:
        raise InrforgeError(f"cannot read splits file {splits_file}: {e}") from None
    paths, labels, splits = [], [], {}
    for name in ("train", "val", "test"):
        part = spec.get(name)
        if part is None:
            continue
        if not isinstance(part, dict) or "path" not in part:
            raise InrforgeError(f"{splits_file}: split {name!r} must be {{'path': [...], 'label': [...]}}")
        p = part["path"]
        lab = part.get("label", [None] * len(p))
        if len(lab) != len(p):
            raise InrforgeError(f"{splits_file}: split {name!r} has {len(p)} paths but {len(lab)} labels")
        splits[name] = np.arange(len(paths), len(paths) + len(p))
        for q in p:
            q = Path(q)
            paths.append(q if q.is_absolute() else splits_file.parent / q)
        labels += lab
    if not paths:
        raise InrforgeError(f"{splits_file} lists no INRs")
    return paths, labels, splits


def import_dws(data_dir, out, splits_file=None, preset: str = "siren-dwsnets", w0: float = 30.0,
               shard_objects: int = 1024, overwrite: bool = False, image_size: tuple[int, int] | None = None) -> INRStore:
    """Convert a folder of per-INR state dicts into a one-view store, keeping the splits.

    Without a splits file, every ``*.pth`` under ``data_dir`` (sorted) is imported, labels come
    from each file's ``label`` key, and the splits follow the path: ``test`` in it -> test,
    ``val`` -> val, else train.  ``image_size=(H, W)`` records the image grid the INRs were fitted
    on (``inrforge render`` needs it; the DWSNets MNIST INRs are 28 x 28).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InrforgeError(f"no folder {data_dir}")
    if splits_file is None and (data_dir / "splits.json").exists():
        splits_file = data_dir / "splits.json"
    if splits_file is not None:
        paths, labels, splits = _from_splits_json(Path(splits_file))
    else:
        paths = sorted(data_dir.rglob("*.pth"))
        if not paths:
            raise InrforgeError(f"no .pth files under {data_dir}")
        labels = [None] * len(paths)
        rel = [p.relative_to(data_dir).as_posix().lower() for p in paths]
        which = np.array(["test" if "test" in r else "val" if "val" in r else "train" for r in rel])
        splits = {name: np.flatnonzero(which == name) for name in ("train", "val", "test")}
    for p in paths:
        if not p.exists():
            raise InrforgeError(f"missing INR file {p}")

    arch = None
    flats, all_labels = [], []
    for k, p in enumerate(paths):
        state = _load_state(p)
        if arch is None:
            arch = arch_from_state(state, p, preset, w0)
        flats.append(_flat(state, arch, p))
        if labels[k] is not None:
            all_labels.append(labels[k])
        elif "label" in state:
            lab = state["label"]
            all_labels.append(lab.tolist() if torch.is_tensor(lab) else lab)
        else:
            raise InrforgeError(f"{p}: no label (give a splits JSON or a 'label' key)")
    lab = np.asarray(all_labels)
    lab = lab.astype(np.int64) if np.issubdtype(lab.dtype, np.integer) else lab.astype(np.float32)
    params = np.stack(flats).astype(np.float32)[:, None]  # (N, 1, P)

    out = str(out)
    prepare_output(out, overwrite)
    n = len(paths)
    source = {"name": "dws-import", "params": {"path": str(data_dir.resolve())}, "n_objects": n,
              "target_scaling": "unknown (imported)",
              "grid": None if image_size is None else {"kind": "image", "height": int(image_size[0]),
                                                       "width": int(image_size[1]), "channels": arch.out_features}, "label_names": None,
              "label_shape": list(lab.shape[1:])}
    store = create_store(out, arch=arch, n_objects=n, views=1, labels=lab, splits=splits, source=source,
                         fit={"imported_from": str(data_dir.resolve())}, shard_objects=shard_objects)
    for k in range(store.n_shards):
        a, b = store.shard_range(k)
        unknown = np.full((b - a, 1), np.nan, np.float32)
        store.write_shard(ShardData(a, params[a:b], unknown, unknown, np.zeros((b - a, 1), np.int32),
                                    np.zeros((b - a, 1), bool)))
    return store


def export_dws(store, out_dir, view: int = 0, overwrite: bool = False) -> Path:
    """Write one ``seq.{i}.weight``/``seq.{i}.bias`` state dict (plus ``label``) per object and a
    DWSNets ``splits.json``; returns the splits file.  Objects not fitted are left out."""
    store = store if isinstance(store, INRStore) else open_store(store)
    view = store.check_view(view)  # before creating anything
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InrforgeError(f"{out_dir} is not empty; choose an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = store.done()
    arch = store.arch
    spec = {}
    for name in ("train", "val", "test"):
        idx = store.split(name)
        idx = idx[done[idx]]
        entries = {"path": [], "label": []}
        for lo in range(0, len(idx), 1024):
            part = idx[lo: lo + 1024]
            weights, labels = store.read(part, view)
            for j, i in enumerate(part):
                state = {}
                for layer, (w, b) in enumerate(zip(weights.weights, weights.biases)):
                    state[f"seq.{layer}.weight"] = w[j].clone()
                    state[f"seq.{layer}.bias"] = b[j].clone()
                label = labels[j].tolist()
                state["label"] = torch.tensor(label)
                rel = f"{name}/{int(i):07d}.pth"
                (out_dir / name).mkdir(exist_ok=True)
                torch.save(state, out_dir / rel)
                entries["path"].append(rel)
                entries["label"].append(label)
        spec[name] = entries
    spec["arch"] = arch.to_dict()
    splits_file = out_dir / "splits.json"
    splits_file.write_text(json.dumps(spec))
    return splits_file


__all__ = ["import_dws", "export_dws", "arch_from_state"]
