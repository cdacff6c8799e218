"""Reading one DWSNets ``.pth`` file: the state dict it holds, its MLP layers checked, the arch
whose shapes they match (:func:`arch_from_state`), and its parameters in inrforge's flat layout."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from ..arch import INRSpec, make_arch
from ..errors import InrforgeError, first_line
from ..weights import Weights

_KEY = re.compile(r"^(seq|layers|net|model)\.(\d+)\.(weight|bias)$")
# Keys that belong to the network but not to a plain MLP's layers: a nested layer (nfn's
# net.0.linear.weight), an input encoding (seq.0.b, DWSNets' Gaussian features).  Anything else
# (label, DWSNets' SSL sines' coef / x / y) is data beside the network, and ignored.
_LAYER_LIKE = re.compile(r"^((seq|layers|net|model)\.|.*\.(weight|bias)$)")


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
