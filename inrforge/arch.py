"""INRSpec: the one frozen description of an INR architecture, shared by every stage.

An INR is an MLP with widths ``[d0, d1, ..., dL]``: layer ``i`` maps ``d_i -> d_{i+1}`` with a
weight ``W_i`` of shape ``(d_{i+1}, d_i)`` (PyTorch orientation) and a bias ``b_i`` of shape
``(d_{i+1},)``.  Hidden layers apply the family's activation, the last layer is linear:

* ``siren``: ``h_{i+1} = sin(w0 * (W_i h_i + b_i))``
* ``relu``:  ``h_{i+1} = relu(W_i h_i + b_i)``

and the output is ``W_{L-1} h_{L-1} + b_{L-1} + output_offset``.  With Fourier features the MLP's
input is ``gamma(x) = [cos(2 pi B x), sin(2 pi B x)]`` for a fixed random matrix ``B`` (``m x
in_features``), so ``d0 = 2m``.

This module is the one place that knows the flat parameter layout (``layers.{i}.weight`` then
``layers.{i}.bias``, layer by layer, row-major) and how parameters are initialised.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .checks import number, whole_number
from .errors import InrforgeError

FAMILIES = ("siren", "relu")
INITS = ("siren", "siren-dwsnets", "relu")
PRESETS = ("siren", "siren-dwsnets", "relu", "relu-fourier")


def _count(value, what: str, minimum: int | None = 1) -> int:
    """:func:`whole_number` for an arch field: the error says the arch is impossible."""
    try:
        return whole_number(value, what, minimum)
    except InrforgeError as e:
        raise InrforgeError(f"impossible arch: {e}") from None


def _real(value, what: str, positive: bool = False) -> float:
    """:func:`~inrforge.checks.number` for an arch field: the error says the arch is impossible."""
    try:
        return number(value, what, positive=positive)
    except InrforgeError as e:
        raise InrforgeError(f"impossible arch: {e}") from None


@dataclass(frozen=True)
class FourierSpec:
    """Random Fourier features ``gamma(x) = [cos(2 pi B x), sin(2 pi B x)]``, ``B ~ N(0, sigma^2)``.

    ``B`` (``n_features x in_features``) is a pure function of ``seed`` (see :meth:`matrix`); the
    store also keeps it as the array ``fourier_matrix`` so it can be used without inrforge.
    """

    in_features: int
    n_features: int
    sigma: float
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "in_features", _count(self.in_features, "Fourier in_features"))
        object.__setattr__(self, "n_features", _count(self.n_features, "the number of Fourier features"))
        object.__setattr__(self, "sigma", _real(self.sigma, "Fourier sigma", positive=True))
        object.__setattr__(self, "seed", _count(self.seed, "the Fourier seed", minimum=None))

    def matrix(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(self.seed))
        return torch.randn(self.n_features, self.in_features, generator=gen) * float(self.sigma)


@dataclass(frozen=True)
class ParamSlot:
    """Where one weight or bias lives in the flat parameter vector."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class INRSpec:
    """Frozen, hashable, JSON-serialisable description of an INR architecture."""

    widths: tuple[int, ...]
    family: str = "siren"
    w0: float = 30.0
    output_offset: float = 0.0
    init: str = "siren"
    fourier: FourierSpec | None = None
    _layout: tuple[ParamSlot, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        bad = InrforgeError(f"impossible INR widths {self.widths!r}: need >= 2 positive integer sizes")
        if isinstance(self.widths, (str, bytes)):
            raise bad
        try:
            widths = tuple(_count(w, "width") for w in self.widths)
        except (InrforgeError, TypeError):  # TypeError: not a sequence
            raise bad from None
        if len(widths) < 2:
            raise bad
        object.__setattr__(self, "widths", widths)
        if self.family not in FAMILIES:
            raise InrforgeError(f"unknown INR family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        if self.init not in INITS:
            raise InrforgeError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        object.__setattr__(self, "w0", _real(self.w0, "w0", positive=True))
        object.__setattr__(self, "output_offset", _real(self.output_offset, "output_offset"))
        if self.fourier is not None:
            f = self.fourier
            if not isinstance(f, FourierSpec):
                raise InrforgeError(f"impossible arch: fourier must be a FourierSpec or None, got {type(f).__name__}")
            if widths[0] != 2 * f.n_features:
                raise InrforgeError(
                    f"with {f.n_features} Fourier features the first width must be {2 * f.n_features}, got {widths[0]}"
                )
        slots, offset = [], 0
        for i in range(len(widths) - 1):
            for name, shape in ((f"layers.{i}.weight", (widths[i + 1], widths[i])), (f"layers.{i}.bias", (widths[i + 1],))):
                slots.append(ParamSlot(name, shape, offset))
                offset += int(np.prod(shape))
        object.__setattr__(self, "_layout", tuple(slots))

    # ----- shapes -------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of linear layers L."""
        return len(self.widths) - 1

    @property
    def in_features(self) -> int:
        """Dimension of the coordinates the INR is evaluated at (before any Fourier encoding)."""
        return self.fourier.in_features if self.fourier is not None else self.widths[0]

    @property
    def out_features(self) -> int:
        return self.widths[-1]

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """``(d1, ..., d_{L-1})``: the sizes of the hidden layers, whose neurons any permutation
        (and, for SIREN, any sign flip) may reorder without changing the function.  The input
        axis d0 and the output axis dL are never permuted."""
        return tuple(self.widths[1:-1])

    def require_widths(self, other: "INRSpec", whose: str = "the model's") -> None:
        """An InrforgeError unless ``other`` has these widths.  Models and mappers are built for
        widths alone (their shapes follow the permutation symmetry, which the widths fix), so they
        read INRs of any family with these widths."""
        if tuple(other.widths) != tuple(self.widths):
            raise InrforgeError(f"input widths {list(other.widths)} do not match {whose} {list(self.widths)}")

    @property
    def weight_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple((self.widths[i + 1], self.widths[i]) for i in range(self.n_layers))

    @property
    def bias_shapes(self) -> tuple[tuple[int], ...]:
        return tuple((self.widths[i + 1],) for i in range(self.n_layers))

    @property
    def layout(self) -> tuple[ParamSlot, ...]:
        """The flat layout: ``layers.{i}.weight`` (out, in) then ``layers.{i}.bias`` (out,), per layer."""
        return self._layout

    @property
    def param_count(self) -> int:
        last = self._layout[-1]
        return last.offset + last.size

    def permutation_orbits(self) -> torch.Tensor:
        """(P,) int64 orbit id of every flat entry under the hidden-neuron permutation group.

        Two entries share an id when some permutation of the hidden neurons maps one to the
        other: hidden axes (the rows of W_i / entries of b_i for i < L-1, the columns of W_i
        for i > 0) are pooled, the input axis d0 and the output axis dL are kept.  Statistics
        pooled over orbits commute with every neuron permutation.
        """
        ids = torch.empty(self.param_count, dtype=torch.long)
        next_id = 0
        last = self.n_layers - 1
        for i in range(self.n_layers):
            wslot, bslot = self.layout[2 * i], self.layout[2 * i + 1]
            rows, cols = wslot.shape
            row_key = torch.arange(rows) if i == last else torch.zeros(rows, dtype=torch.long)
            col_key = torch.arange(cols) if i == 0 else torch.zeros(cols, dtype=torch.long)
            n_cols = cols if i == 0 else 1
            w_ids = row_key[:, None] * n_cols + col_key[None, :]
            ids[wslot.offset : wslot.offset + wslot.size] = next_id + w_ids.reshape(-1)
            next_id += int(w_ids.max()) + 1
            b_ids = row_key
            ids[bslot.offset : bslot.offset + bslot.size] = next_id + b_ids
            next_id += int(b_ids.max()) + 1
        return ids

    # ----- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "widths": list(self.widths),
            "w0": float(self.w0),
            "output_offset": float(self.output_offset),
            "init": self.init,
            "fourier": None if self.fourier is None else asdict(self.fourier),
            "in_features": self.in_features,
            "param_count": self.param_count,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "INRSpec":
        """The arch a :meth:`to_dict` describes.  Anything else (not a JSON object, a missing or
        malformed field, a recorded ``param_count``/``in_features`` that contradicts the widths)
        is an :class:`InrforgeError`."""
        if not isinstance(d, dict):
            raise InrforgeError(f"not an INR architecture description: expected a JSON object, got "
                                f"{type(d).__name__}")
        missing = [k for k in ("widths", "family") if k not in d]
        if missing:
            raise InrforgeError(f"not an INR architecture description: missing {', '.join(map(repr, missing))}")
        fourier = d.get("fourier")
        if fourier is not None and not isinstance(fourier, dict):
            raise InrforgeError(f"not an INR architecture description: 'fourier' must be null or an object, "
                                f"got {fourier!r}"[:300])
        try:
            spec = cls(
                widths=d["widths"],
                family=d["family"],
                w0=d.get("w0", 30.0),
                output_offset=d.get("output_offset", 0.0),
                init=d.get("init", "siren" if d["family"] == "siren" else "relu"),
                fourier=None if fourier is None else FourierSpec(**fourier),
            )
        except TypeError as e:  # unexpected or missing FourierSpec fields
            raise InrforgeError(f"not an INR architecture description: {e}") from None
        except InrforgeError as e:
            raise InrforgeError(f"not an INR architecture description: {e}") from None
        for key in ("param_count", "in_features"):
            if key in d and d[key] != getattr(spec, key):
                raise InrforgeError(f"not a consistent INR architecture description: it records {key} "
                                    f"{d[key]!r}, but its widths {list(spec.widths)} give {getattr(spec, key)}")
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "INRSpec":
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise InrforgeError(f"not an INR architecture description: not JSON ({e})") from None
        return cls.from_dict(d)

    def layout_dicts(self) -> list[dict]:
        return [{"name": s.name, "shape": list(s.shape), "offset": s.offset} for s in self.layout]

    # ----- initialisation -----------------------------------------------------------------
    def init_bounds(self, layer: int) -> tuple[float, float]:
        """Half-widths of the uniform distributions of layer ``layer``'s weight and bias.

        * ``siren`` (Sitzmann et al.): first layer U(+-1/d_in), others U(+-sqrt(6/d_in)/w0);
          biases U(+-1/sqrt(d_in)) as nn.Linear does.
        * ``siren-dwsnets``: every layer U(+-sqrt(6/d_in)/w0), biases zero.
        * ``relu``: nn.Linear's default, weights and biases U(+-1/sqrt(d_in)).
        """
        d_in = self.widths[layer]
        if self.init == "siren":
            w = 1.0 / d_in if layer == 0 else math.sqrt(6.0 / d_in) / self.w0
            return w, 1.0 / math.sqrt(d_in)
        if self.init == "siren-dwsnets":
            return math.sqrt(6.0 / d_in) / self.w0, 0.0
        return 1.0 / math.sqrt(d_in), 1.0 / math.sqrt(d_in)

    def init_flat(self, seeds) -> torch.Tensor:
        """Initial flat parameters (len(seeds), P), float32; row k depends only on ``seeds[k]``.

        Each row draws, layer by layer, the weight then the bias from a CPU generator seeded with
        its own seed, so one INR can be re-initialised identically whatever batch it is in.
        """
        seeds = [int(s) for s in seeds]
        out = torch.empty(len(seeds), self.param_count)
        bounds = [self.init_bounds(i) for i in range(self.n_layers)]
        gen = torch.Generator()
        for k, seed in enumerate(seeds):
            gen.manual_seed(seed)
            for i, (ws, bs) in enumerate(zip(self.layout[0::2], self.layout[1::2])):
                wb, bb = bounds[i]
                out[k, ws.offset : ws.offset + ws.size].uniform_(-wb, wb, generator=gen)
                bias = out[k, bs.offset : bs.offset + bs.size]
                if bb > 0:
                    bias.uniform_(-bb, bb, generator=gen)
                else:
                    bias.zero_()
        return out


def require_arch(arch, who: str) -> INRSpec:
    """``arch`` if it is an :class:`INRSpec`; anything else (a preset name, the spec's dict or
    JSON) is an :class:`InrforgeError` that says how to build one."""
    if not isinstance(arch, INRSpec):
        raise InrforgeError(f"{who} needs an INRSpec as arch (inrforge.make_arch(...) or INRSpec.from_dict(...)), "
                            f"got {type(arch).__name__} {arch!r:.60}")
    return arch


def make_arch(
    preset: str = "siren-dwsnets",
    in_features: int = 2,
    out_features: int = 1,
    hidden: int = 32,
    depth: int = 2,
    w0: float = 30.0,
    fourier_features: int = 32,
    fourier_sigma: float = 3.0,
    fourier_seed: int = 0,
) -> INRSpec:
    """Build an INRSpec from a preset name and sizes; ``depth`` is the number of hidden layers.

    The default, ``siren-dwsnets`` with 2 -> 32 -> 32 -> 1, is the INR of the DWSNets datasets
    (1,185 parameters; output offset 0.5).
    """
    if preset not in PRESETS:
        raise InrforgeError(f"unknown arch preset {preset!r}; choose one of {', '.join(PRESETS)}")
    in_features, out_features, hidden, depth = (
        _count(v, name) for name, v in (("in_features", in_features), ("out_features", out_features),
                                        ("hidden", hidden), ("depth", depth)))
    w0 = _real(w0, "w0")
    fourier = None
    d0 = in_features
    if preset == "relu-fourier":
        fourier = FourierSpec(in_features, fourier_features, fourier_sigma, fourier_seed)
        d0 = 2 * fourier.n_features
    widths = (d0,) + (hidden,) * depth + (out_features,)
    family = "siren" if preset.startswith("siren") else "relu"
    init = {"siren": "siren", "siren-dwsnets": "siren-dwsnets"}.get(preset, "relu")
    offset = 0.5 if preset == "siren-dwsnets" else 0.0
    return INRSpec(widths=widths, family=family, w0=w0, output_offset=offset, init=init, fourier=fourier)
