"""DWSNet: networks equivariant / invariant to the hidden-neuron permutations of an INR's weights.

The symmetry group
------------------
An INR with widths ``d0 .. dL`` computes the same function when the neurons of any hidden layer
``k`` (``1 <= k <= L-1``) are permuted: rows of ``W_{k-1}``, entries of ``b_{k-1}`` and columns of
``W_k`` move together.  The groups of different hidden layers act independently; ``d0`` (inputs)
and ``dL`` (outputs) are *not* permuted.

The full linear equivariant map (DWSNets, Navon et al. 2023)
-----------------------------------------------------------
Every weight-space tensor ``T`` (``W_i`` or ``b_i``) has a set ``P(T)`` of permuted axes (hidden
indices; each appears at most once per tensor) and possibly unpermuted axes (``d0`` of ``W_0``,
``dL`` of ``W_{L-1}`` and ``b_{L-1}``), which behave like extra channels.  For an input tensor ``X``
and an output tensor ``Y``, the equivariant linear maps ``X -> Y`` are spanned, independently per
hidden index, by: identity or pool-then-broadcast on a shared axis, pooling on an axis of ``X``
only, broadcasting on an axis of ``Y`` only -- i.e. one term per subset ``K`` of the shared axes
``P(X) & P(Y)`` (``2**|shared|`` terms): pool ``X`` over ``P(X) - K``, apply a linear map to the
(effective) channels, broadcast over ``P(Y) - K``.  Unpermuted axes are mixed fully.  With the
affine part (one bias per output tensor and effective channel, broadcast over its permuted axes)
this is the complete space (``tests/test_dwsnet.py`` checks its dimension against the character
formula ``mean_g chi(g)^2`` of the group and that the terms are linearly independent).

Implementation (why it is fast)
-------------------------------
Terms are grouped by ``K`` ("banks"): every input ``X`` with ``K`` in ``P(X)`` is pooled down to the
axes ``K`` and the results are concatenated along channels; ONE matmul maps them to the
concatenated channels of every output ``Y`` with ``K`` in ``P(Y)``; each slice is then broadcast
into its output.  The banks are: ``()`` (global: every tensor pooled to a vector, which also
carries the layer's bias), ``(k,)`` for each hidden index (the three tensors ``W_{k-1}``,
``b_{k-1}``, ``W_k`` touching neuron set ``k``) and ``(k+1, k)`` for each internal ``W_k`` (its
identity term, a channel matmul on the full tensor).  So a layer (``L >= 2``) is ``2L - 2`` matmuls (``1 +
(L-1) + (L-2)``) with one parameter matrix per bank, no per-block modules; the summed output is
built in place with two broadcast additions per full-size tensor.  Mean pooling is a sum times
``1/n`` (cheaper backward than ``mean``), max pooling uses ``max(dim)`` (scatter backward).

On the MNIST INR arch (2->32->32->1), 32 channels, 5 layers: 370,890 parameters (77,024 per
hidden->hidden layer), ~0.8-0.9 s per AdamW training step at batch 512 on 2 CPU cores
(``benchmarks/bench_dwsnet.py``), vs ~7.4 s for the DWSNets reference implementation; 1.5 s
where glibc's malloc hands freed activations back each step (the training loops stop that:
:func:`inrforge.memory.keep_freed_memory`).

Feature layout (``WSFeatures``)
-------------------------------
Internally a feature is a tuple of ``2L`` tensors in layout order ``W0, b0, W1, b1, ...``, each
**channels-last with the unpermuted axes folded into the channels**: ``(B, *permuted axes,
F*C)`` where ``F`` is the product of the tensor's unpermuted sizes (channel index fastest).
Concretely, for ``L >= 2``:

* ``W_0``: ``(B, d1, d0*C)``;  ``W_i`` (``0 < i < L-1``): ``(B, d_{i+1}, d_i, C)``;
* ``W_{L-1}``: ``(B, d_{L-1}, dL*C)`` (note: transposed, the permuted axis comes first);
* ``b_i`` (``i < L-1``): ``(B, d_{i+1}, C)``;  ``b_{L-1}``: ``(B, dL*C)``.

Channel matmuls then act on the contiguous last dim and no layer ever permutes memory.
:meth:`WSFeatures.from_channels_second` / :meth:`WSFeatures.to_channels_second` convert from/to the
nfn-style layout ``weights (B, C, d_{i+1}, d_i)``, ``biases (B, C, d_{i+1})``;
:meth:`WSFeatures.from_weights` / :meth:`WSFeatures.to_weights` from/to :class:`inrforge.Weights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import INRSpec, require_arch
from ..checks import probability, whole_number
from ..errors import InrforgeError
from ..weights import Weights
from .baselines import mlp

POOLS = ("mean", "sum", "max")
SET_LAYERS = ("linear", "attention")
NORMS = (None, "batch", "layer")

__all__ = [
    "POOLS",
    "SET_LAYERS",
    "NORMS",
    "TensorSlot",
    "tensor_slots",
    "WSFeatures",
    "DWSLayer",
    "WSNorm",
    "InvariantPool",
    "pool_axis",
    "DWSNet",
    "DWSNetEquivariant",
]


# ----------------------------------------------------------------------------------------------
# Which axes of which tensor are permuted
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSlot:
    """One weight-space tensor: its torch-order axes as ``(size, hidden index or None)``.

    ``hidden index`` is ``k`` for an axis of size ``d_k`` permuted by the group (``1 <= k <= L-1``)
    and ``None`` for an unpermuted one (``d0`` or ``dL``).
    """

    name: str
    kind: str  # "W" or "b"
    layer: int
    axes: tuple[tuple[int, int | None], ...]

    @property
    def perm(self) -> tuple[int, ...]:
        """Hidden indices of the permuted axes, in axis order."""
        return tuple(k for _, k in self.axes if k is not None)

    @property
    def perm_sizes(self) -> tuple[int, ...]:
        return tuple(n for n, k in self.axes if k is not None)

    @property
    def perm_pos(self) -> tuple[int, ...]:
        return tuple(i for i, (_, k) in enumerate(self.axes) if k is not None)

    @property
    def fixed_pos(self) -> tuple[int, ...]:
        return tuple(i for i, (_, k) in enumerate(self.axes) if k is None)

    @property
    def fixed_sizes(self) -> tuple[int, ...]:
        return tuple(n for n, k in self.axes if k is None)

    @property
    def fixed(self) -> int:
        """Product of the unpermuted sizes (the factor folded into the channels)."""
        return int(math.prod(self.fixed_sizes))

    def canonical_shape(self, batch: int, channels: int) -> tuple[int, ...]:
        return (batch, *self.perm_sizes, self.fixed * channels)


def tensor_slots(arch: INRSpec) -> tuple[TensorSlot, ...]:
    """The ``2L`` tensors of ``arch`` in layout order ``W0, b0, W1, b1, ...``."""
    d, L = arch.widths, arch.n_layers

    def idx(k):
        return k if 0 < k < L else None

    slots = []
    for i in range(L):
        slots.append(TensorSlot(f"W{i}", "W", i, ((d[i + 1], idx(i + 1)), (d[i], idx(i)))))
        slots.append(TensorSlot(f"b{i}", "b", i, ((d[i + 1], idx(i + 1)),)))
    return tuple(slots)


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------
class WSFeatures:
    """A batch of multi-channel weight-space features in the canonical layout (see module doc)."""

    __slots__ = ("tensors", "arch", "channels")

    def __init__(self, tensors: Sequence[torch.Tensor], arch: INRSpec, channels: int):
        self.tensors = tuple(tensors)
        self.arch = arch
        self.channels = int(channels)
        slots = tensor_slots(arch)
        if len(self.tensors) != len(slots):
            raise InrforgeError(f"expected {len(slots)} feature tensors for this arch, got {len(self.tensors)}")
        b = self.tensors[0].shape[0]
        for s, t in zip(slots, self.tensors):
            want = s.canonical_shape(b, self.channels)
            if tuple(t.shape) != want:
                raise InrforgeError(f"feature {s.name}: got shape {tuple(t.shape)}, expected {want}")

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    @property
    def batch_size(self) -> int:
        return len(self)

    def map(self, fn) -> "WSFeatures":
        return WSFeatures(tuple(fn(t) for t in self.tensors), self.arch, self.channels)

    def __add__(self, other: "WSFeatures") -> "WSFeatures":
        # no broadcasting: (B=1, C=1) features would otherwise silently add to (B, C) ones
        if (not isinstance(other, WSFeatures) or other.arch.widths != self.arch.widths
                or other.channels != self.channels or len(other) != len(self)):
            what = (type(other).__name__ if not isinstance(other, WSFeatures)
                    else f"{len(other)} x {other.channels} channels, widths {list(other.arch.widths)}")
            raise InrforgeError(f"cannot add features ({what}) to features of {len(self)} x {self.channels} "
                                f"channels, widths {list(self.arch.widths)}")
        return WSFeatures(tuple(a + b for a, b in zip(self.tensors, other.tensors)), self.arch, self.channels)

    # ----- conversions -------------------------------------------------------------------
    @staticmethod
    def _to_canonical(s: TensorSlot, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, *axes) -> (B, *perm axes, *fixed axes, C) -> (B, *perm axes, fixed*C)
        order = (0, *(2 + p for p in s.perm_pos), *(2 + p for p in s.fixed_pos), 1)
        x = x.permute(order)
        return x.reshape(s.canonical_shape(x.shape[0], x.shape[-1]))  # no -1: B may be 0

    @staticmethod
    def _from_canonical(s: TensorSlot, x: torch.Tensor, channels: int) -> torch.Tensor:
        b = x.shape[0]
        x = x.reshape(b, *s.perm_sizes, *s.fixed_sizes, channels)
        # current axis order: perm axes, fixed axes, C  ->  C, torch axes
        cur = (*s.perm_pos, *s.fixed_pos)
        order = [0, 1 + len(cur)] + [1 + cur.index(p) for p in range(len(s.axes))]
        return x.permute(order)

    @classmethod
    def from_channels_second(cls, weights, biases, arch: INRSpec) -> "WSFeatures":
        """From nfn-style ``weights[i] (B, C, d_{i+1}, d_i)``, ``biases[i] (B, C, d_{i+1})``."""
        slots = tensor_slots(arch)
        if len(weights) != arch.n_layers or len(biases) != arch.n_layers:
            raise InrforgeError(f"expected {arch.n_layers} weights and biases, got {len(weights)} / {len(biases)}")
        if weights[0].ndim != 4:
            raise InrforgeError(f"weights[0]: expected a (B, C, d_1, d_0) tensor, got shape {tuple(weights[0].shape)}")
        b, c = weights[0].shape[:2]
        # check every shape before reshaping: a transposed (B, C, d_i, d_{i+1}) weight would
        # otherwise be silently scrambled into the right number of entries
        for i in range(arch.n_layers):
            for what, t, shape in (("weights", weights[i], arch.weight_shapes[i]),
                                   ("biases", biases[i], arch.bias_shapes[i])):
                if tuple(t.shape) != (b, c, *shape):
                    raise InrforgeError(
                        f"{what}[{i}]: got shape {tuple(t.shape)}, expected {(b, c, *shape)} (nfn layout "
                        f"(B, C, d_out, d_in) / (B, C, d_out) of widths {list(arch.widths)})"
                    )
        ts = [t for pair in zip(weights, biases) for t in pair]
        return cls(tuple(cls._to_canonical(s, t) for s, t in zip(slots, ts)), arch, c)

    def to_channels_second(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """nfn-style ``(weights, biases)``: ``(B, C, d_{i+1}, d_i)`` and ``(B, C, d_{i+1})`` (views)."""
        slots = tensor_slots(self.arch)
        ts = [self._from_canonical(s, t, self.channels) for s, t in zip(slots, self.tensors)]
        return tuple(ts[0::2]), tuple(ts[1::2])

    @classmethod
    def from_weights(cls, w: Weights) -> "WSFeatures":
        """Single-channel features of a batch of INR weights."""
        return cls.from_channels_second(
            tuple(t.unsqueeze(1) for t in w.weights), tuple(t.unsqueeze(1) for t in w.biases), w.arch
        )

    def to_weights(self) -> Weights:
        if self.channels != 1:
            raise InrforgeError(f"only single-channel features convert to Weights, these have {self.channels}")
        ws, bs = self.to_channels_second()
        return Weights(tuple(t[:, 0] for t in ws), tuple(t[:, 0] for t in bs), self.arch)


def _as_features(x, arch: INRSpec) -> WSFeatures:
    if isinstance(x, WSFeatures):
        feats = x
    elif isinstance(x, Weights):
        feats = WSFeatures.from_weights(x)
    else:
        raise InrforgeError(f"expected Weights or WSFeatures, got {type(x).__name__}")
    arch.require_widths(feats.arch)
    return feats


def _checked(x, arch: INRSpec, channels: int, what: str) -> WSFeatures:
    feats = _as_features(x, arch)
    if feats.channels != channels:
        raise InrforgeError(f"{what} expects {channels} channels, got {feats.channels}")
    return feats


def pool_axis(x: torch.Tensor, dim: int, pool: str) -> torch.Tensor:
    """``x`` reduced over axis ``dim`` by ``pool`` (one of :data:`POOLS`: mean, sum or max)."""
    if pool == "mean":
        # sum then scale the small result: MeanBackward would materialise a full-size
        # grad / n tensor, SumBackward is a free expand
        return x.sum(dim) * (1.0 / x.shape[dim])
    if pool == "sum":
        return x.sum(dim)
    # max(dim) backward scatters into zeros; amax's backward needs several full-size passes
    return x.max(dim).values


def _ordered_subsets(seq: tuple[int, ...]):
    for r in range(len(seq), -1, -1):
        yield from combinations(seq, r)


# ----------------------------------------------------------------------------------------------
# The layer
# ----------------------------------------------------------------------------------------------
class DWSLayer(nn.Module):
    """The full affine equivariant map between weight-space features (see module doc).

    ``pool`` is the reduction of the pooling terms ("mean", "sum" or "max"; all equivariant).
    ``set_layer="attention"`` replaces it by attention pooling: per input tensor a learned linear
    map of the channels gives ``H`` scores per entry (``H = gcd(attention_heads, F*C_in)`` heads,
    head ``h`` owns the ``h``-th contiguous group of effective channels), softmax over the pooled
    axis, weighted sum (it starts as mean pooling: the score map is initialised to zero); ``pool``
    is then ignored.

    Parameters: one matrix per bank ``K`` (``in x out``, rows/columns are the concatenated effective
    channels of the tensors containing ``K``), the layer bias (per output tensor and effective
    channel) and, with attention, one ``F*C_in x H`` score matrix per tensor that has a permuted
    axis.  Parameter count without attention:
    ``sum over (out Y, in X) of 2**|P(X) & P(Y)| * F(X) C_in * F(Y) C_out + sum_Y F(Y) C_out``.
    """

    def __init__(
        self,
        arch: INRSpec,
        in_channels: int,
        out_channels: int,
        pool: str = "mean",
        set_layer: str = "linear",
        bias: bool = True,
        attention_heads: int = 4,
    ):
        super().__init__()
        if pool not in POOLS:
            raise InrforgeError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
        if set_layer not in SET_LAYERS:
            raise InrforgeError(f"unknown set layer {set_layer!r}; choose one of {', '.join(SET_LAYERS)}")
        if in_channels < 1 or out_channels < 1:
            raise InrforgeError(f"channels must be positive, got {in_channels} -> {out_channels}")
        self.arch = arch
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.pool, self.set_layer = pool, set_layer
        self.slots = tensor_slots(arch)
        self.ce_in = tuple(s.fixed * self.in_channels for s in self.slots)
        self.ce_out = tuple(s.fixed * self.out_channels for s in self.slots)

        # banks: K -> member tensors (same members on the input and output side)
        banks: dict[tuple[int, ...], list[int]] = {}
        for t, s in enumerate(self.slots):
            for k in _ordered_subsets(s.perm):
                banks.setdefault(k, []).append(t)
        self.bank_keys = tuple(sorted(banks, key=lambda k: (-len(k), k)))
        self.bank_members = {k: tuple(banks[k]) for k in self.bank_keys}
        self.bank_names = {k: "g" if not k else "h" + "_".join(map(str, k)) for k in self.bank_keys}

        # total fan-in of each output tensor (all its terms) for the initialisation
        fan_in = [0] * len(self.slots)
        for k, mem in self.bank_members.items():
            n_in = sum(self.ce_in[t] for t in mem)
            for t in mem:
                fan_in[t] += n_in

        self.weight = nn.ParameterDict()
        for k in self.bank_keys:
            mem = self.bank_members[k]
            n_in = sum(self.ce_in[t] for t in mem)
            cols = []
            for t in mem:
                # He-uniform over ALL terms feeding output t (variance 2 / total fan-in): keeps
                # the feature scale roughly constant through ReLU stacks
                bound = math.sqrt(6.0 / fan_in[t])
                cols.append(torch.empty(n_in, self.ce_out[t]).uniform_(-bound, bound))
            w = torch.cat(cols, dim=1)
            if pool == "sum" and set_layer == "linear":  # start as if mean-pooled
                r0 = 0
                for t in mem:
                    s = self.slots[t]
                    n_pooled = math.prod(n for n, h in zip(s.perm_sizes, s.perm) if h not in k)
                    w[r0 : r0 + self.ce_in[t]] /= n_pooled
                    r0 += self.ce_in[t]
            self.weight[self.bank_names[k]] = nn.Parameter(w)
        if bias:
            parts = [torch.empty(self.ce_out[t]).uniform_(-1 / math.sqrt(fan_in[t]), 1 / math.sqrt(fan_in[t]))
                     for t in self.bank_members[()]]
            self.bias = nn.Parameter(torch.cat(parts))
        else:
            self.register_parameter("bias", None)
        self.score = nn.ParameterDict()
        self.heads = tuple(math.gcd(int(attention_heads), c) for c in self.ce_in)
        if set_layer == "attention":
            if attention_heads < 1:
                raise InrforgeError(f"attention_heads must be positive, got {attention_heads}")
            for t, s in enumerate(self.slots):
                if s.perm:
                    self.score[s.name] = nn.Parameter(torch.zeros(self.ce_in[t], self.heads[t]))

    def extra_repr(self) -> str:
        return (f"widths={list(self.arch.widths)}, {self.in_channels} -> {self.out_channels}, "
                f"pool={self.pool!r}, set_layer={self.set_layer!r}")

    # ----- pooling -----------------------------------------------------------------------
    @staticmethod
    def _attention_pool(x, scores, dim):
        """Softmax(scores over ``dim``)-weighted sum of ``x``; scores (..., H), x (..., H*g)."""
        w = torch.softmax(scores, dim=dim)
        h, ce = scores.shape[-1], x.shape[-1]
        g = ce // h
        if dim == x.ndim - 2:
            # reduce the axis right before the channels with one bmm that never writes a
            # full-size tensor: (N, n, H)^T @ (N, n, Ce) -> (N, H, Ce), keep each head's own group
            lead = x.shape[:dim]
            n = x.shape[dim]
            full = torch.bmm(w.reshape(-1, n, h).transpose(1, 2), x.reshape(-1, n, ce))
            out = full.view(-1, h, h, g).diagonal(dim1=1, dim2=2)  # (N, g, H)
            return out.transpose(1, 2).reshape(*lead, ce)
        y = x.view(*x.shape[:-1], h, g) * w.unsqueeze(-1)
        return y.sum(dim).reshape(*y.shape[:dim], *y.shape[dim + 1 : -2], ce)

    def _reduce(self, x, dim, scores=None):
        if scores is not None:
            return self._attention_pool(x, scores, dim)
        return pool_axis(x, dim, self.pool)

    def _pooled(self, t: int, x: torch.Tensor) -> dict:
        """``x`` pooled onto every subset ``K`` of its permuted axes."""
        s = self.slots[t]
        p = s.perm
        scores = None
        if self.set_layer == "attention" and p:
            a = self.score[s.name]
            scores = x @ a
        out = {p: x}
        if len(p) == 2:
            r = self._reduce(x, 2, scores)  # keeps p[0]
            out[(p[0],)] = r
            out[(p[1],)] = self._reduce(x, 1, scores)
            out[()] = self._reduce(r, 1, None if scores is None else r @ a)
        elif len(p) == 1:
            out[()] = self._reduce(x, 1, scores)
        return out

    # ----- forward -----------------------------------------------------------------------
    def forward(self, x) -> WSFeatures:
        feats = _as_features(x, self.arch)
        if feats.channels != self.in_channels:
            raise InrforgeError(f"layer expects {self.in_channels} channels, got {feats.channels}")
        xs = feats.tensors
        b = xs[0].shape[0]
        pooled = [self._pooled(t, xt) for t, xt in enumerate(xs)]
        terms: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.slots]
        for k in self.bank_keys:
            mem = self.bank_members[k]
            ins = [pooled[t][k] for t in mem]
            inp = ins[0] if len(ins) == 1 else torch.cat(ins, dim=-1)
            w = self.weight[self.bank_names[k]]
            if not k and self.bias is not None:
                out = torch.addmm(self.bias, inp, w)
            else:
                out = inp @ w
            pieces = (out,) if len(mem) == 1 else torch.split(out, [self.ce_out[t] for t in mem], dim=-1)
            for t, piece in zip(mem, pieces):
                s = self.slots[t]
                if len(k) != len(s.perm):  # broadcast over the output's axes not in K
                    shape = [b] + [n if h in k else 1 for n, h in zip(s.perm_sizes, s.perm)] + [self.ce_out[t]]
                    piece = piece.reshape(shape)
                terms[t].append((len(k), piece))
        ys = []
        for t, ts in enumerate(terms):
            ts.sort(key=lambda e: -e[0])
            y = ts[0][1]  # the identity term (K = P(Y)): full size, a fresh matmul output
            if len(ts) == 4:  # an internal W_k: its identity bank has no other member
                # (B,n,m,C) += [(B,1,m,C) + (B,1,1,C)];  += (B,n,1,C): in place, no new full tensor
                _, one_axis, other_axis, glob = (e[1] for e in ts)
                y.add_(one_axis + glob).add_(other_axis)
            elif len(ts) == 1:  # no permuted axis: a (tiny) split view, made a tensor of its own
                y = y.clone()
            else:  # small tensors (one permuted axis): out of place
                for _, piece in ts[1:]:
                    y = y + piece
            ys.append(y)
        return WSFeatures(ys, self.arch, self.out_channels)


# ----------------------------------------------------------------------------------------------
# Normalisation, pooling head
# ----------------------------------------------------------------------------------------------
class WSNorm(nn.Module):
    """Equivariant normalisation, one per tensor, statistics pooled over permuted axes.

    * ``"batch"``: batch norm per effective channel, statistics over the batch and all permuted
      positions (running statistics in eval mode);
    * ``"layer"``: per sample and tensor, mean/variance over all its entries and channels, then a
      per-channel affine map.
    Both commute with the hidden permutations.  With ``"batch"``, the bias of the layer that feeds
    the norm is redundant (the norm subtracts a mean over the same axes, as with a convolution's
    bias before batch norm): its gradient is zero to rounding.  It is kept so that parameter counts
    and seeded inits stay those of the recorded results.
    """

    def __init__(self, arch: INRSpec, channels: int, kind: str = "batch", eps: float = 1e-5):
        super().__init__()
        if kind not in ("batch", "layer"):
            raise InrforgeError(f"unknown norm {kind!r}; choose batch or layer")
        self.kind, self.eps = kind, eps
        self.arch, self.channels = arch, int(channels)
        self.slots = tensor_slots(arch)
        ce = [s.fixed * channels for s in self.slots]
        if kind == "batch":
            self.norms = nn.ModuleList(nn.BatchNorm1d(c, eps=eps) for c in ce)
        else:
            self.gamma = nn.ParameterList(nn.Parameter(torch.ones(c)) for c in ce)
            self.beta = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in ce)

    def forward(self, feats: WSFeatures) -> WSFeatures:
        feats = _checked(feats, self.arch, self.channels, "WSNorm")
        if self.kind == "batch" and self.training and len(feats) == 1:
            raise InrforgeError("batch norm needs at least 2 INRs per training batch (the last bias has no "
                                "permuted axis to pool over); use eval(), a larger batch or norm='layer'")
        out = []
        for i, x in enumerate(feats.tensors):
            if self.kind == "batch":
                out.append(self.norms[i](x.reshape(-1, x.shape[-1])).reshape(x.shape))
            else:
                y = F.layer_norm(x, x.shape[1:], eps=self.eps)
                out.append(torch.addcmul(self.beta[i], y, self.gamma[i]))
        return WSFeatures(out, feats.arch, feats.channels)


class InvariantPool(nn.Module):
    """Invariant summary ``(B, sum_T F(T) C)``: every tensor pooled over its permuted axes.

    Internal weights over both axes, hidden biases over their axis, ``W_0`` over ``d1`` keeping
    ``d0``, ``W_{L-1}`` over ``d_{L-1}`` keeping ``dL``, ``b_{L-1}`` whole; concatenated.
    """

    def __init__(self, arch: INRSpec, channels: int, pool: str = "mean"):
        super().__init__()
        if pool not in POOLS:
            raise InrforgeError(f"unknown head pool {pool!r}; choose one of {', '.join(POOLS)}")
        self.pool = pool
        self.arch, self.channels = arch, int(channels)
        self.slots = tensor_slots(arch)
        self.out_features = sum(s.fixed * channels for s in self.slots)

    def forward(self, feats: WSFeatures) -> torch.Tensor:
        feats = _checked(feats, self.arch, self.channels, "InvariantPool")
        parts = []
        for s, x in zip(self.slots, feats.tensors):
            for _ in s.perm:  # reduce the leading permuted axis, once per permuted axis
                x = pool_axis(x, 1, self.pool)
            parts.append(x)
        return torch.cat(parts, dim=-1)


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class _Trunk(nn.Module):
    """Stack of DWS layers: layer -> [norm] -> ReLU -> [dropout], optional skip connections."""

    def __init__(self, arch, channels: Sequence[int], pool, set_layer, dropout, norm, residual, last_plain):
        super().__init__()
        if norm not in NORMS:
            raise InrforgeError(f"unknown norm {norm!r}; choose None, 'batch' or 'layer'")
        dropout = probability(dropout, "dropout", closed_top=False)
        self.layers = nn.ModuleList(
            DWSLayer(arch, cin, cout, pool=pool, set_layer=set_layer) for cin, cout in zip(channels[:-1], channels[1:])
        )
        n = len(self.layers)
        self.plain = [last_plain and i == n - 1 for i in range(n)]
        self.norms = nn.ModuleList(
            nn.Identity() if (norm is None or self.plain[i]) else WSNorm(arch, channels[i + 1], norm) for i in range(n)
        )
        self.dropout = float(dropout)
        self.residual = bool(residual)

    def forward(self, feats: WSFeatures) -> WSFeatures:
        for i, layer in enumerate(self.layers):
            y = layer(feats)
            if not self.plain[i]:
                y = self.norms[i](y)
                # in place on fresh outputs (matmul / add) whose producer does not need them for
                # backward; views (e.g. reshaped norm outputs) out of place: an in-place op on a
                # view costs autograd a CopySlices round trip
                y = y.map(lambda t: F.relu(t, inplace=not t._is_view()))
                if self.dropout > 0 and self.training:
                    y = y.map(lambda t: F.dropout(t, self.dropout, True))
            if self.residual and layer.in_channels == layer.out_channels and not self.plain[i]:
                y = feats + y
            feats = y
        return feats


class DWSNet(nn.Module):
    """Permutation-invariant DWSNet: ``Weights`` (or ``WSFeatures``) -> ``(B, out_features)``.

    ``depth`` equivariant layers (``in_channels -> hidden -> ... -> hidden``), each followed by
    [norm], ReLU and [dropout] (``residual`` adds skip connections around hidden->hidden layers),
    then :class:`InvariantPool` (``head_pool``) and an MLP with hidden sizes ``head_hidden``.
    """

    def __init__(
        self,
        arch: INRSpec,
        out_features: int,
        hidden: int = 32,
        depth: int = 4,
        pool: str = "mean",
        set_layer: str = "linear",
        dropout: float = 0.0,
        norm: str | None = None,
        residual: bool = False,
        head_pool: str = "mean",
        head_hidden: Sequence[int] = (256,),
        in_channels: int = 1,
    ):
        super().__init__()
        self.arch = require_arch(arch, "DWSNet")
        out_features = whole_number(out_features, "DWSNet out_features")
        hidden, depth = whole_number(hidden, "DWSNet hidden"), whole_number(depth, "DWSNet depth")
        head_hidden = tuple(whole_number(h, "DWSNet head_hidden widths") for h in head_hidden)
        self.trunk = _Trunk(arch, [in_channels] + [hidden] * depth, pool, set_layer, dropout, norm, residual, False)
        self.pool = InvariantPool(arch, hidden, head_pool)
        self.head = mlp(self.pool.out_features, head_hidden, out_features, dropout)

    def features(self, x) -> torch.Tensor:
        """The invariant summary before the MLP head, ``(B, pool.out_features)``."""
        return self.pool(self.trunk(_as_features(x, self.arch)))

    def forward(self, x) -> torch.Tensor:
        return self.head(self.features(x))


class DWSNetEquivariant(nn.Module):
    """Permutation-equivariant DWSNet: ``Weights`` -> ``Weights`` of the same arch.

    ``depth`` equivariant layers ``1 -> hidden -> ... -> hidden -> 1`` (ReLU etc. between them, the
    last layer is plain).  ``residual=True`` returns ``input + scale * net(input)`` with a learned
    scalar ``scale`` (initialised to ``residual_scale``); ``block_residual`` adds skip connections
    around the hidden->hidden layers.  Given ``WSFeatures`` it returns ``WSFeatures``.
    """

    def __init__(
        self,
        arch: INRSpec,
        hidden: int = 32,
        depth: int = 4,
        pool: str = "mean",
        set_layer: str = "linear",
        dropout: float = 0.0,
        norm: str | None = None,
        residual: bool = False,
        residual_scale: float = 0.1,
        block_residual: bool = False,
        in_channels: int = 1,
        out_channels: int = 1,
    ):
        super().__init__()
        self.arch = require_arch(arch, "DWSNetEquivariant")
        hidden, depth = whole_number(hidden, "DWSNetEquivariant hidden"), whole_number(depth, "DWSNetEquivariant depth")
        if residual and in_channels != out_channels:
            raise InrforgeError("residual output needs in_channels == out_channels")
        chans = [in_channels] + [hidden] * (depth - 1) + [out_channels]
        self.trunk = _Trunk(arch, chans, pool, set_layer, dropout, norm, block_residual, True)
        self.residual = bool(residual)
        if self.residual:
            self.scale = nn.Parameter(torch.tensor(float(residual_scale)))
        else:
            self.register_parameter("scale", None)

    def forward(self, x):
        feats = _as_features(x, self.arch)
        y = self.trunk(feats)
        if self.residual:
            y = WSFeatures(tuple(a + self.scale * b for a, b in zip(feats.tensors, y.tensors)), self.arch, y.channels)
        if isinstance(x, Weights):
            out = y.to_weights()
            return Weights(out.weights, out.biases, x.arch)
        return y
