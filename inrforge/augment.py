"""Weight-space augmentations of batches of INRs (see docs/augmentations.md for the catalogue).

Every augmentation is a callable object, batched over the leading dimension B with per-sample
random parameters (no per-sample Python loops):

* ``aug(weights, generator=None) -> Weights`` for the single-network ones;
* ``aug(weights, labels, generator=None) -> (Weights, labels)`` for the mixing ones
  (:class:`MixUp`, and :class:`Compose`, which passes labels through).

Randomness comes from ``generator`` (given at call time, else the one given at construction,
else torch's global RNG), so a seeded generator makes the output reproducible.  Random numbers
are drawn on the generator's device (CPU by default) and moved to the weights' device.

Kinds: exact symmetries (:class:`Permute`, :class:`SirenNegate`, :class:`SirenBiasShift`)
compute the same function; input-space transforms (:class:`Rotate`, :class:`Scale`,
:class:`Translate`) compute ``f'(x) = f(T x)`` exactly for a documented ``T``; the others
(:class:`GaussianNoise`, :class:`WeightDropout`, :class:`QuantilePrune`, :class:`MixUp`) change
the function.  An incompatible arch raises :class:`~inrforge.errors.InrforgeError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .align import permute_neurons, random_permutations, weight_matching
from .arch import INRSpec
from .errors import InrforgeError
from .checks import check_count, number, probability, whole_number
from .weights import Weights

__all__ = [
    "Augmentation",
    "AlignTo",
    "Permute",
    "SirenNegate",
    "SirenBiasShift",
    "Rotate",
    "Scale",
    "Translate",
    "GaussianNoise",
    "WeightDropout",
    "QuantilePrune",
    "Compose",
    "MixUp",
    "MixResult",
    "rotation_matrices",
]


# ----- helpers ---------------------------------------------------------------------------------
def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(shape, generator, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn from ``generator``, cast to ``like``'s dtype/device."""
    dtype = like.dtype if like.dtype.is_floating_point else torch.float32
    r = torch.rand(shape, generator=generator, device=_gen_device(generator), dtype=dtype)
    return r.to(like.device)


def _randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
    dtype = like.dtype if like.dtype.is_floating_point else torch.float32
    r = torch.randn(shape, generator=generator, device=_gen_device(generator), dtype=dtype)
    return r.to(like.device)


def _check_generator(owner: str, generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InrforgeError(f"{owner}: generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) "
                            f"or None, got {type(generator).__name__}")
    return generator


def _check_labels(owner: str, labels) -> None:
    if isinstance(labels, torch.Generator):
        raise InrforgeError(f"{owner} takes (weights, labels=None, generator=None): a torch.Generator was given as "
                            f"labels; pass it as generator=...")


def _check_weights(weights) -> None:
    if not isinstance(weights, Weights):
        raise InrforgeError(f"augmentations take a Weights batch, got {type(weights).__name__}")


# ----- base -------------------------------------------------------------------------------------
class Augmentation:
    """Base of the single-network augmentations: ``aug(weights, generator=None) -> Weights``."""

    #: True for augmentations that take and return labels.
    mixes_labels = False
    #: "symmetry", "input-transform" or "lossy" (documentation and tests).
    kind = "lossy"

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = _check_generator(type(self).__name__, generator)

    def _generator(self, generator):
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InrforgeError(f"{type(self).__name__} takes (weights, generator=None), got a "
                                f"{type(generator).__name__} as generator; labels go to MixUp, or to a Compose")
        return generator if generator is not None else self.generator

    def check(self, arch: INRSpec) -> None:
        """Raise InrforgeError if the augmentation does not apply to ``arch``."""

    def __call__(self, weights: Weights, generator: torch.Generator | None = None) -> Weights:
        _check_weights(weights)
        self.check(weights.arch)
        return self._apply(weights, self._generator(generator))

    def _apply(self, weights: Weights, generator) -> Weights:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "generator"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


class _ParamAugmentation(Augmentation):
    """An augmentation with explicit per-sample parameters: ``aug.apply(weights, params)``."""

    def _apply(self, weights, generator):
        return self.apply(weights, self.sample(weights, generator))

    def sample(self, weights: Weights, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def apply(self, weights: Weights, params: torch.Tensor) -> Weights:
        raise NotImplementedError  # pragma: no cover


# ----- exact symmetries -----------------------------------------------------------------------
class Permute(Augmentation):
    """Independent uniform random permutation of every hidden layer of every sample (exact)."""

    kind = "symmetry"

    def _apply(self, weights, generator):
        perms = random_permutations(weights.arch, len(weights), generator, device=weights.device)
        return permute_neurons(weights, perms)


def _check_siren(name: str, arch: INRSpec) -> None:
    if arch.family != "siren":
        raise InrforgeError(
            f"{name} is a symmetry of SIREN INRs only (it relies on sin being odd / 2pi-periodic); "
            f"this arch is {arch.family!r}"
        )


def _scale_neurons(weights: Weights, factors: Sequence[torch.Tensor], outgoing: Sequence[torch.Tensor] | None = None,
                   bias_add: Sequence[torch.Tensor] | None = None) -> Weights:
    """Per hidden layer i: row j of W_i and b_i[j] times ``factors[i][:, j]`` (then ``+ bias_add``),
    column j of W_{i+1} times ``outgoing[i][:, j]`` (defaults to ``factors``)."""
    outgoing = factors if outgoing is None else outgoing
    ws, bs = list(weights.weights), list(weights.biases)
    for i, (s, o) in enumerate(zip(factors, outgoing)):
        if s is not None:
            ws[i] = ws[i] * s.unsqueeze(2)
            bs[i] = bs[i] * s
        if bias_add is not None:
            bs[i] = bs[i] + bias_add[i]
        ws[i + 1] = ws[i + 1] * o.unsqueeze(1)
    return Weights(tuple(ws), tuple(bs), weights.arch)


class SirenNegate(Augmentation):
    """Per hidden neuron, with probability ``p``: negate its row of W_i, b_i and column of W_{i+1}.

    Exact for SIREN: ``sin(-z) = -sin(z)``.  Not a ReLU symmetry (InrforgeError).
    """

    kind = "symmetry"

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.p = probability(p, "SirenNegate p")

    def check(self, arch):
        _check_siren("SirenNegate", arch)

    def _apply(self, weights, generator):
        signs = []
        for d in weights.arch.hidden_widths:
            u = _rand((len(weights), d), generator, weights.weights[0])
            signs.append(torch.where(u < self.p, -1.0, 1.0).to(u.dtype))
        return _scale_neurons(weights, signs)


class SirenBiasShift(Augmentation):
    """Per hidden neuron an integer ``k ~ U{-max_k, ..., max_k}``: ``b_i += k pi / w0`` and the
    neuron's column of W_{i+1} times ``(-1)^k``.

    Exact for SIREN (up to float rounding): ``sin(w0 (Wx + b + k pi / w0)) = (-1)^k sin(w0 (Wx + b))``.
    """

    kind = "symmetry"

    def __init__(self, max_k: int = 4, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.max_k = whole_number(max_k, "SirenBiasShift max_k", minimum=0)

    def check(self, arch):
        _check_siren("SirenBiasShift", arch)

    def _apply(self, weights, generator):
        like = weights.weights[0]
        step = math.pi / weights.arch.w0
        shifts, outgoing = [], []
        for d in weights.arch.hidden_widths:
            k = torch.randint(-self.max_k, self.max_k + 1, (len(weights), d), generator=generator,
                              device=_gen_device(generator)).to(like.device)
            shifts.append(k.to(like.dtype) * step)
            outgoing.append(1.0 - 2.0 * (k.remainder(2)).to(like.dtype))
        return _scale_neurons(weights, [None] * len(shifts), outgoing, bias_add=shifts)


# ----- exact input-space transforms -----------------------------------------------------------
def _check_plain_input(name: str, arch: INRSpec, dims: int | None = None) -> None:
    if arch.fourier is not None:
        raise InrforgeError(
            f"{name} cannot be applied to an INR with Fourier features: its first layer sees "
            f"gamma(x), not the coordinates, so the transform is not a map of its weights"
        )
    if dims is not None and arch.in_features != dims:
        raise InrforgeError(f"{name} needs {dims}-D input coordinates; this arch has {arch.in_features}")


def _params(name: str, params, weights: Weights, shape: tuple[int, ...]) -> torch.Tensor:
    """``params`` as a tensor on the weights' device and dtype, checked to be ``shape``."""
    t = torch.as_tensor(params).to(weights.device, weights.dtype)
    if tuple(t.shape) != shape:
        raise InrforgeError(f"{name} params must be {shape} (one row per INR), got {tuple(t.shape)}")
    return t


def _with_first(weights: Weights, w0=None, b0=None) -> Weights:
    ws, bs = list(weights.weights), list(weights.biases)
    if w0 is not None:
        ws[0] = w0
    if b0 is not None:
        bs[0] = b0
    return Weights(tuple(ws), tuple(bs), weights.arch)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """``R(theta) = [[cos, -sin], [sin, cos]]`` for each angle (radians) -> (B, 2, 2)."""
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


class Rotate(_ParamAugmentation):
    """``W_0 <- W_0 R(theta)``, ``theta ~ U(-max_angle, max_angle)`` degrees per sample.

    Then ``f'(x) = f(R(theta) x)`` exactly, with ``R`` from :func:`rotation_matrices` acting on
    the coordinate vector (for :func:`inrforge.inr.image_grid` that is ``(row, col)``).  2-D
    inputs without Fourier features only.  ``params`` are the angles in radians, (B,).
    """

    kind = "input-transform"

    def __init__(self, max_angle: float = 30.0, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.max_angle = number(max_angle, "Rotate max_angle (degrees)", minimum=0)

    def check(self, arch):
        _check_plain_input("Rotate", arch, dims=2)

    def sample(self, weights, generator=None):
        u = _rand((len(weights),), self._generator(generator), weights.weights[0])
        return (2.0 * u - 1.0) * math.radians(self.max_angle)

    def apply(self, weights, params):
        _check_weights(weights)
        self.check(weights.arch)
        r = rotation_matrices(_params("Rotate", params, weights, (len(weights),)))
        return _with_first(weights, w0=torch.bmm(weights.weights[0], r))

    @staticmethod
    def transform_coords(coords: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``T x = R(theta) x`` per sample: coords (N, 2) or (B, N, 2) -> (B, N, 2)."""
        theta, coords = _coords_per_sample("Rotate", coords, params)
        return torch.einsum("bij,bnj->bni", rotation_matrices(theta), coords)


def _coords_per_sample(name: str, coords: torch.Tensor, params) -> tuple[torch.Tensor, torch.Tensor]:
    """``params`` on ``coords``' device and dtype, and ``coords`` as (B, N, in): shared (N, in)
    coordinates are broadcast to every sample, per-sample ones must have one row per param."""
    params = torch.as_tensor(params).to(coords.device, coords.dtype)
    if params.ndim == 0:
        raise InrforgeError(f"{name}.transform_coords takes one param per sample (B, ...), got a scalar")
    b = params.shape[0]
    if coords.ndim == 2:
        return params, coords.unsqueeze(0).expand(b, *coords.shape)
    if coords.ndim != 3 or coords.shape[0] != b:
        raise InrforgeError(f"{name}.transform_coords takes coords (N, in) or (B, N, in) for {b} params, "
                            f"got {tuple(coords.shape)}")
    return params, coords


class Scale(_ParamAugmentation):
    """``W_0 <- s W_0``, ``s ~ U(lo, hi)`` per sample, so ``f'(x) = f(s x)`` exactly.

    Any input dimension; not with Fourier features.  ``params`` are the factors, (B,).
    """

    kind = "input-transform"

    def __init__(self, lo: float = 0.8, hi: float = 1.2, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.lo, self.hi = number(lo, "Scale lo"), number(hi, "Scale hi")
        if self.lo > self.hi:
            raise InrforgeError(f"Scale needs lo <= hi, got lo={lo}, hi={hi}")

    def check(self, arch):
        _check_plain_input("Scale", arch)

    def sample(self, weights, generator=None):
        u = _rand((len(weights),), self._generator(generator), weights.weights[0])
        return self.lo + (self.hi - self.lo) * u

    def apply(self, weights, params):
        _check_weights(weights)
        self.check(weights.arch)
        s = _params("Scale", params, weights, (len(weights),))
        return _with_first(weights, w0=weights.weights[0] * s[:, None, None])

    @staticmethod
    def transform_coords(coords, params):
        """``T x = s x`` per sample: coords (N, in) or (B, N, in) -> (B, N, in)."""
        s, coords = _coords_per_sample("Scale", coords, params)
        return s[:, None, None] * coords


class Translate(_ParamAugmentation):
    """``f'(x) = f(x + t)`` exactly, ``t ~ U(-max_shift, max_shift)^in`` per sample.

    Plain inputs: ``b_0 <- b_0 + W_0 t``.  Fourier features ``gamma(x) = [cos(a), sin(a)]``,
    ``a = 2 pi B x``: ``gamma(x + t)`` rotates each (cos, sin) pair by ``phi = 2 pi B t``, so
    ``W_cos <- W_cos cos(phi) + W_sin sin(phi)`` and ``W_sin <- W_sin cos(phi) - W_cos sin(phi)``
    (column-wise) is exact too.  ``params`` are the shifts, (B, in).
    """

    kind = "input-transform"

    def __init__(self, max_shift: float = 0.25, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.max_shift = number(max_shift, "Translate max_shift", minimum=0)

    def sample(self, weights, generator=None):
        u = _rand((len(weights), weights.arch.in_features), self._generator(generator), weights.weights[0])
        return (2.0 * u - 1.0) * self.max_shift

    def apply(self, weights, params):
        _check_weights(weights)
        arch = weights.arch
        t = _params("Translate", params, weights, (len(weights), arch.in_features))
        w0 = weights.weights[0]
        if arch.fourier is None:
            return _with_first(weights, b0=weights.biases[0] + torch.bmm(w0, t.unsqueeze(2)).squeeze(2))
        m = arch.fourier.n_features
        bmat = arch.fourier.matrix().to(w0.device, w0.dtype)  # (m, in)
        phi = (2 * math.pi) * t @ bmat.T  # (B, m)
        c, s = torch.cos(phi).unsqueeze(1), torch.sin(phi).unsqueeze(1)
        w_cos, w_sin = w0[:, :, :m], w0[:, :, m:]
        new = torch.cat([w_cos * c + w_sin * s, w_sin * c - w_cos * s], dim=2)
        return _with_first(weights, w0=new)

    @staticmethod
    def transform_coords(coords, params):
        """``T x = x + t`` per sample: coords (N, in) or (B, N, in) -> (B, N, in)."""
        t, coords = _coords_per_sample("Translate", coords, params)
        return coords + t.unsqueeze(1)


# ----- not function-preserving ----------------------------------------------------------------
class GaussianNoise(Augmentation):
    """``t <- t + rel_std * std(t) * N(0, 1)`` for every weight and bias tensor ``t``, where
    ``std(t)`` is that tensor's (population) standard deviation within each sample.

    A tensor with one entry per sample, or a constant one (e.g. zero biases), gets no noise.
    """

    def __init__(self, rel_std: float = 0.32, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.rel_std = number(rel_std, "GaussianNoise rel_std", minimum=0)

    def _apply(self, weights, generator):
        b = len(weights)
        if b == 0:
            return weights

        def noisy(t):
            std = t.flatten(1).std(dim=1, correction=0)
            scale = (self.rel_std * std).reshape(b, *([1] * (t.ndim - 1)))
            return t + _randn(t.shape, generator, t) * scale

        return weights.map(noisy)


class WeightDropout(Augmentation):
    """Each weight and bias entry is zeroed independently with probability ``p``.

    ``rescale=True`` divides the survivors by ``1 - p`` (``F.dropout``'s convention); the
    default keeps them, which changes the function less.
    """

    def __init__(self, p: float = 0.1, rescale: bool = False, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.p = probability(p, "WeightDropout p", closed_top=not rescale)
        self.rescale = bool(rescale)

    def _apply(self, weights, generator):
        def drop(t):
            keep = _rand(t.shape, generator, t) >= self.p
            kept = t / (1.0 - self.p) if self.rescale else t
            return kept.masked_fill(~keep, 0.0)

        return weights.map(drop)


class QuantilePrune(Augmentation):
    """Magnitude pruning: per sample ``q ~ U(0, q_max)``; the ``floor(q P)`` parameters (weights
    and biases together, ``P`` per INR) of smallest ``|value|`` are set to zero.

    That is "zero what lies below the q-quantile of the sample's magnitudes", with ties broken so
    that exactly ``floor(q P)`` entries are selected.
    """

    def __init__(self, q_max: float = 0.1, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.q_max = probability(q_max, "QuantilePrune q_max")

    def _apply(self, weights, generator):
        flat = weights.flatten()
        b, p = flat.shape
        q = _rand((b,), generator, flat) * self.q_max
        k = torch.floor(q * p).long()  # (B,)
        order = flat.abs().argsort(dim=1)
        prune_sorted = torch.arange(p, device=flat.device).unsqueeze(0) < k.unsqueeze(1)
        mask = torch.zeros_like(prune_sorted).scatter_(1, order, prune_sorted)
        return Weights.from_flat(flat.masked_fill(mask, 0.0), weights.arch)


# ----- canonicalisation -----------------------------------------------------------------------
class AlignTo:
    """Align every INR to one fixed reference INR by weight matching: a canonical form, not random.

    The "MLP + alignment" baseline of DWSNets: ``theta -> P* theta`` with ``P*`` the hidden-neuron
    permutation of :func:`inrforge.align.weight_matching` that brings ``theta`` closest to the
    reference.  An exact symmetry (the INR's function is unchanged); apply it to every split.

    A canonical form: a pure function of ``(theta, reference, seed)``, row by row, and the same for
    every ``P theta`` (up to ties in an assignment).  Weight matching starts from its forward match
    alone (``init="forward-only"``, which is permutation-equivariant) and visits the hidden layers
    in an order drawn from a generator seeded with ``seed`` afresh on every call, whatever
    generator the call is given; the order is shared by a batch and a pair's result does not
    depend on the others, so an INR gets the same form alone or in any batch.
    """

    mixes_labels = False

    def __init__(self, reference: Weights, max_iter: int = 100, seed: int = 0):
        _check_weights(reference)
        if len(reference) != 1:
            raise InrforgeError(f"AlignTo needs one reference INR, got {len(reference)}")
        self.reference = reference
        self.max_iter = whole_number(max_iter, "AlignTo max_iter")
        self.seed = check_count("AlignTo seed", seed, minimum=0)

    def check(self, arch: INRSpec) -> None:
        if arch != self.reference.arch:
            raise InrforgeError("AlignTo: the reference INR has another architecture than the data")

    def __call__(self, weights: Weights, generator: torch.Generator | None = None) -> Weights:
        """``generator`` is accepted (Compose hands one to every member) and not used: see above."""
        _check_weights(weights)
        self.check(weights.arch)
        ref = self.reference.to(weights.device, weights.dtype)[torch.zeros(len(weights), dtype=torch.long)]
        order = torch.Generator().manual_seed(self.seed)
        return weight_matching(ref, weights, max_iter=self.max_iter, generator=order, init="forward-only")[1]

    def __repr__(self) -> str:
        return f"AlignTo(reference, max_iter={self.max_iter}, seed={self.seed})"


# ----- composition and mixing -----------------------------------------------------------------
class Compose:
    """Apply augmentations in order.

    ``compose(weights)`` -> Weights; ``compose(weights, labels)`` -> ``(Weights, labels)``, the
    labels passed through every mixing augmentation (MixUp) on the way.  A call-time generator
    is handed to every member (each otherwise uses its own).
    """

    mixes_labels = True

    def __init__(self, augmentations: Sequence, generator: torch.Generator | None = None):
        if callable(augmentations) or not isinstance(augmentations, Iterable):
            raise InrforgeError(f"Compose takes a list of augmentations (Compose([a, b])), got {augmentations!r}")
        augmentations = list(augmentations)
        for a in augmentations:
            if not callable(a):
                raise InrforgeError(f"Compose needs callables, got {a!r}")
        self.augmentations = augmentations
        self.generator = _check_generator("Compose", generator)

    def check(self, arch: INRSpec) -> None:
        for a in self.augmentations:
            if hasattr(a, "check"):
                a.check(arch)

    def __call__(self, weights: Weights, labels: torch.Tensor | None = None, generator: torch.Generator | None = None):
        _check_weights(weights)
        _check_labels("Compose", labels)
        self.check(weights.arch)
        g = generator if _check_generator("Compose", generator) is not None else self.generator
        for a in self.augmentations:
            if getattr(a, "mixes_labels", False):
                weights, labels = a(weights, labels, generator=g)
            else:
                weights = a(weights, generator=g)
        return weights if labels is None else (weights, labels)

    def __repr__(self) -> str:
        return f"Compose({self.augmentations!r})"


@dataclass(frozen=True)
class MixResult:
    """What :meth:`MixUp.mix` did: ``weights = lam * A + (1 - lam) * partner``."""

    weights: Weights
    labels: torch.Tensor | None
    lam: torch.Tensor  # (B,), in the weights' dtype
    partner: torch.Tensor  # (B,) int64: index in the batch of each sample's partner
    partner_weights: Weights  # the partner as mixed (permuted / aligned for those modes)


MIX_MODES = ("vanilla", "perm", "align")


class MixUp:
    """Weight-space MixUp: ``theta = lam theta_A + (1 - lam) theta_B``, ``lam ~ Beta(alpha, alpha)``
    per sample.

    The partner B of each sample is another element of the *same batch*: a random cyclic
    derangement (partner of ``sigma[k]`` is ``sigma[k+1 mod B]`` for a random permutation
    ``sigma``), so with B >= 2 nobody is mixed with itself and every sample is a partner exactly
    once.  The partner therefore comes from the same split, view and preprocessing as the batch.
    With B = 1 the sample is its own partner.

    Modes: ``vanilla`` mixes as is; ``perm`` first applies an independent random hidden-neuron
    permutation to the partner; ``align`` aligns the partner to A with
    :func:`inrforge.align.weight_matching`.

    Labels (same mix): int class ids (B,) become soft targets (B, num_classes) — ``num_classes``
    is then required; float labels ((B,), (B, K), regression targets or already-soft targets) are
    mixed linearly.  ``labels=None`` is allowed (returns None).
    """

    mixes_labels = True

    def __init__(
        self,
        mode: str = "vanilla",
        alpha: float = 1.0,
        num_classes: int | None = None,
        generator: torch.Generator | None = None,
        align_max_iter: int = 100,
    ):
        if mode not in MIX_MODES:
            raise InrforgeError(f"unknown MixUp mode {mode!r}; choose one of {', '.join(MIX_MODES)}")
        self.mode = mode
        self.alpha = number(alpha, "MixUp alpha", positive=True)
        self.num_classes = None if num_classes is None else whole_number(num_classes, "MixUp num_classes")
        self.generator = _check_generator("MixUp", generator)
        self.align_max_iter = whole_number(align_max_iter, "MixUp align_max_iter")

    def check(self, arch: INRSpec) -> None:
        """MixUp applies to every arch."""

    def _lam(self, n: int, generator, like: torch.Tensor) -> torch.Tensor:
        if self.alpha == 1.0:
            return _rand((n,), generator, like)
        # Beta has no generator-aware torch sampler: seed numpy from the torch generator.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_gen_device(generator)).item())
        lam = np.random.default_rng(seed).beta(self.alpha, self.alpha, size=n)
        return torch.as_tensor(lam, dtype=like.dtype, device=like.device)

    def _soft_labels(self, labels: torch.Tensor, n: int, dtype) -> torch.Tensor:
        labels = torch.as_tensor(labels)
        if labels.ndim == 0 or labels.shape[0] != n:
            raise InrforgeError(f"MixUp got {tuple(labels.shape)} labels for {n} INRs")
        if labels.dtype.is_floating_point:
            return labels
        if labels.dtype == torch.bool or labels.ndim != 1:
            raise InrforgeError("MixUp labels must be int class ids (B,) or float targets (B,) / (B, K)")
        if self.num_classes is None:
            raise InrforgeError("MixUp with class-id labels needs num_classes=... to build soft targets")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise InrforgeError(f"class ids must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        return torch.nn.functional.one_hot(labels.long(), self.num_classes).to(dtype)

    def mix(self, weights: Weights, labels: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> MixResult:
        _check_weights(weights)
        _check_labels("MixUp", labels)
        g = generator if _check_generator("MixUp", generator) is not None else self.generator
        n = len(weights)
        like = weights.weights[0]
        soft = None if labels is None else self._soft_labels(labels, n, like.dtype if like.dtype.is_floating_point else torch.float32)
        sigma = torch.randperm(n, generator=g, device=_gen_device(g))
        partner = torch.empty_like(sigma)
        partner[sigma] = sigma.roll(-1)
        partner = partner.to(weights.device)
        lam = self._lam(n, g, like)
        other = weights[partner]
        if self.mode == "perm":
            other = permute_neurons(other, random_permutations(weights.arch, n, g, device=weights.device))
        elif self.mode == "align":
            other = weight_matching(weights, other, max_iter=self.align_max_iter, generator=g)[1]
        mixed = Weights(
            tuple(torch.lerp(o, w, lam.view(-1, 1, 1)) for w, o in zip(weights.weights, other.weights)),
            tuple(torch.lerp(o, b, lam.view(-1, 1)) for b, o in zip(weights.biases, other.biases)),
            weights.arch,
        )
        out_labels = None
        if soft is not None:
            lam_l = lam.to(soft.device, soft.dtype).view(-1, *([1] * (soft.ndim - 1)))
            out_labels = lam_l * soft + (1 - lam_l) * soft[partner.to(soft.device)]
        return MixResult(mixed, out_labels, lam, partner, other)

    def __call__(self, weights: Weights, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None):
        r = self.mix(weights, labels, generator)
        return r.weights, r.labels

    def __repr__(self) -> str:
        return f"MixUp(mode={self.mode!r}, alpha={self.alpha}, num_classes={self.num_classes})"


# The names ``inrforge train --augment`` and the pipelines take, in the catalogue's order.
AUGMENTATIONS = ("perm", "negate", "shift", "rotate", "scale", "translate", "noise", "dropout", "prune",
                 "mixup", "mixup-perm", "mixup-align")


def build_transform(names, arch, num_classes: int | None):
    """A :class:`Compose` of the augmentations named in ``names`` (:data:`AUGMENTATIONS`, applied in
    the order given; ``"none"`` and blanks are skipped), checked against ``arch``, or None for none.
    ``num_classes`` turns class ids into the soft labels MixUp mixes.  A name listed twice, an
    unknown name or two MixUp variants are an :class:`InrforgeError`."""
    names = [n for n in (names or []) if n and n != "none"]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise InrforgeError(f"unknown augmentation(s) {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
    if not names:
        return None
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InrforgeError(f"augmentation(s) listed twice: {', '.join(twice)}")
    mixups = [n for n in names if n.startswith("mixup")]
    if len(mixups) > 1:
        raise InrforgeError(f"choose one MixUp variant, not {', '.join(mixups)}")
    make = {
        "perm": Permute, "negate": SirenNegate, "shift": SirenBiasShift, "rotate": Rotate, "scale": Scale,
        "translate": Translate, "noise": GaussianNoise, "dropout": WeightDropout, "prune": QuantilePrune,
        "mixup": lambda: MixUp("vanilla", num_classes=num_classes),
        "mixup-perm": lambda: MixUp("perm", num_classes=num_classes),
        "mixup-align": lambda: MixUp("align", num_classes=num_classes),
    }
    compose = Compose([make[n]() for n in names])
    compose.check(arch)
    return compose
