"""Classifier zoos: many small MLP image classifiers trained at once, stored like INRs.

A zoo is a store (format v1, see docs/format.md, "Classifier zoos") whose objects are classifiers
instead of INRs.  Each classifier is an :class:`inrforge.arch.INRSpec` of family ``relu`` with
output offset 0, ``d0 = H*W*C`` (the flattened image) and ``dL = n_classes``:

    h_0 = x = pixels / 255 flattened row-major ((r W + c) C + ch),
    h_{i+1} = relu(W_i h_i + b_i),   logits = W_{L-1} h_{L-1} + b_{L-1},

evaluated by the one batched forward :func:`inrforge.inr.forward` with per-classifier inputs.

Training (:func:`train_classifiers`): parameters are stacked per layer ((B, d_{i+1}, d_i) and
(B, d_{i+1})) and trained with one ``torch.optim.Adam`` over the stacks on the loss
``sum_k CE_k``, where ``CE_k`` is classifier ``k``'s mean cross-entropy on its own minibatch; the
gradient w.r.t. classifier k's parameters is that of ``CE_k`` alone and Adam is elementwise, so
this is B independent Adam runs (tested).  Diversity comes from each classifier's own seed
(:func:`inrforge.fit.inr_seed` of ``(seed, k, 0)``), which draws its init, its init scale
``s_k ~ U(init_scale)`` (every weight and bias multiplied by ``s_k``), its training subset (a
``subset_fraction`` of the training images, without replacement), its number of Adam steps
``T_k ~ U{ceil(min_steps_fraction * steps), ..., steps}`` and its minibatch stream (indices into
its subset, drawn with replacement).  Classifier k's result is a pure function of ``(seed, k)``
and the settings, whatever batch it is trained in.

Metrics per classifier: the source-domain test accuracy (``metrics/accuracy``, also the store's
float label, so ``inrforge train`` can learn to predict generalisation from weights) and
cross-entropy (``metrics/loss``) on the held-out test images, the steps taken and failure.

The second half of the module is weight->weight domain adaptation: :func:`corrupt_images` (the
documented target-domain corruption), :class:`ResidualMapper` (``W' = W + Delta(W)`` around a
DWSNet or a flat MLP) and :func:`train_mapper` (cross-entropy of the *mapped* classifiers on
target-domain images, back-propagated through the functional forward into the mapper).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .arch import INRSpec, make_arch
from .checks import check_count, is_number, whole_number
from .errors import InrforgeError
from .fit import check_device, inr_seed
from .fitjob import _differences, _fit_identity, library_versions
from .inr import forward
from .sources import load_source
from .files import jsonable
from .store import INRStore, ShardData, create_store, is_store
from .weights import Weights

ZOO_SOURCE = "classifier-zoo"


# ----------------------------------------------------------------------------------------------
# Image data of a zoo
# ----------------------------------------------------------------------------------------------
@dataclass
class ZooData:
    """Images of the zoo's source domain as flat float inputs, split into train and test.

    ``x_*`` are (n, H*W*C) float32 in [0, 1] (row-major, channel fastest), ``y_*`` (n,) int64.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    shape: tuple[int, int, int]  # H, W, C
    n_classes: int

    @property
    def in_features(self) -> int:
        return int(np.prod(self.shape))


def _flat_images(images: np.ndarray, size: int | None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 (N, H, W, C) -> float (N, H'*W'*C) in [0, 1]; ``size`` area-downsamples to size x size."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W)
    if size is not None and (size, size) != tuple(x.shape[2:]):
        x = F.interpolate(x, size=(size, size), mode="area")
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w * c).contiguous(), (h, w, c)


def zoo_data(data: str = "digits", limit: int | None = None, image_size: int | None = None,
             test_fraction: float = 0.3, seed: int = 0, path: str | None = None) -> ZooData:
    """Load an image source (the registry's ``data``) as flat classifier inputs.

    The test images are the dataset's own test items when the (limited) source has any, else a
    seeded ``test_fraction`` (``numpy.random.default_rng([seed, 1])``).  ``image_size`` area-
    downsamples square images (e.g. MNIST 28 -> 14).
    """
    if not (is_number(test_fraction) and 0 < test_fraction < 1):
        raise InrforgeError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if image_size is not None:
        image_size = whole_number(image_size, "image_size")
    seed = check_count("seed", seed, minimum=0)
    src = load_source(data, path=path, limit=limit)
    if not hasattr(src, "images") or src.labels.ndim != 1:
        raise InrforgeError(f"source {data!r} is not a labelled image dataset; a classifier zoo needs one")
    x, shape = _flat_images(src.images, image_size)
    y = torch.from_numpy(src.labels.astype(np.int64))
    test = np.asarray(src.official_test, dtype=np.int64)
    if len(test) == 0:
        perm = np.random.default_rng([seed, 1]).permutation(len(y))
        test = np.sort(perm[: int(round(test_fraction * len(y)))])
    train = np.setdiff1d(np.arange(len(y)), test)
    if len(train) < 2 or len(test) < 1:
        raise InrforgeError(f"source {data!r} has too few images ({len(y)}) for a train/test split")
    tr, te = torch.from_numpy(train), torch.from_numpy(test)
    return ZooData(x[tr], y[tr], x[te], y[te], shape, int(y.max()) + 1)


def zoo_data_of(store: INRStore) -> ZooData:
    """The :class:`ZooData` a zoo store was trained on, rebuilt from its ``source`` attribute."""
    if store.source.get("name") != ZOO_SOURCE:
        raise InrforgeError(f"{store.path} is not a classifier zoo (its source is {store.source.get('name')!r})")
    p = store.source["params"]
    return zoo_data(p["data"], limit=p.get("limit"), image_size=p.get("image_size"),
                    test_fraction=p["test_fraction"], seed=p["seed"], path=p.get("path"))


# ----------------------------------------------------------------------------------------------
# Batched training
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooSettings:
    """Training settings of a zoo (everything that determines the numbers, with the seed)."""

    steps: int = 400
    min_steps_fraction: float = 0.25
    lr: float = 3e-3
    batch_size: int = 32
    subset_fraction: float = 0.5
    init_scale: tuple[float, float] = (0.5, 1.5)
    classifiers_per_batch: int = 256
    device: str = "cpu"

    def __post_init__(self):
        for name, label in (("steps", "zoo steps"), ("batch_size", "zoo batch_size"),
                            ("classifiers_per_batch", "classifiers_per_batch")):
            object.__setattr__(self, name, whole_number(getattr(self, name), label))
        for name in ("min_steps_fraction", "subset_fraction"):
            value = getattr(self, name)
            if not (is_number(value) and 0 < value <= 1):
                raise InrforgeError(f"{name} must be in (0, 1], got {value!r}")
        if not (is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise InrforgeError(f"zoo lr must be a positive number, got {self.lr!r}")
        scale = self.init_scale
        pair = isinstance(scale, (tuple, list, np.ndarray)) and len(scale) == 2 and all(map(is_number, scale))
        if not (pair and 0 < scale[0] <= scale[1] < math.inf):
            raise InrforgeError(f"init_scale must be a range 0 < lo <= hi (finite), got {scale!r}")
        object.__setattr__(self, "init_scale", (float(scale[0]), float(scale[1])))
        check_device(self.device)


@dataclass
class ClassifierPlan:
    """Per-classifier draws (see the module docstring), all pure functions of ``(seed, k)``."""

    init: torch.Tensor  # (B, P) float32, already multiplied by the init scale
    subsets: torch.Tensor  # (B, n_sub) int64 indices into the training images
    steps: torch.Tensor  # (B,) int64 Adam steps of each classifier
    batch_seeds: list[int]  # seeds of each classifier's minibatch stream


def plan_classifiers(arch: INRSpec, indices, seed: int, n_train: int, settings: ZooSettings) -> ClassifierPlan:
    """Draw init, init scale, training subset, step count and minibatch seed of classifiers ``indices``."""
    seeds = [inr_seed(seed, int(k), 0) for k in indices]
    init = arch.init_flat(seeds)
    n_sub = max(1, int(round(settings.subset_fraction * n_train)))
    lo_steps = max(1, math.ceil(settings.min_steps_fraction * settings.steps))
    subsets, steps, scales, batch_seeds = [], [], [], []
    for s in seeds:  # one small numpy draw per classifier (setup, not the training loop)
        rng = np.random.default_rng(s)
        scales.append(rng.uniform(*settings.init_scale))
        subsets.append(np.sort(rng.choice(n_train, size=n_sub, replace=False)))
        steps.append(int(rng.integers(lo_steps, settings.steps + 1)))
        batch_seeds.append(int(rng.integers(0, 2**62)))
    init = init * torch.tensor(scales, dtype=torch.float32)[:, None]
    return ClassifierPlan(init, torch.from_numpy(np.stack(subsets)), torch.tensor(steps), batch_seeds)


def minibatch_positions(batch_seeds, n_sub: int, steps: int, batch_size: int, device="cpu"):
    """Yield, step by step, (B, batch_size) positions into each classifier's subset.

    Classifier k's stream is ``torch.randint(n_sub, (chunk, batch_size))`` from its own generator
    seeded with ``batch_seeds[k]``, drawn in chunks of 64 steps, so it does not depend on the other
    classifiers in the batch.
    """
    gens = [torch.Generator().manual_seed(int(s)) for s in batch_seeds]
    chunk = 64
    for start in range(0, steps, chunk):
        c = min(chunk, steps - start)
        block = torch.stack([torch.randint(n_sub, (c, batch_size), generator=g) for g in gens], dim=1).to(device)
        yield from block  # (B, batch_size) per step


def classifier_logits(w: Weights, x: torch.Tensor) -> torch.Tensor:
    """Logits (B, n, K) of B classifiers on shared inputs ``x`` (n, D) or per-classifier (B, n, D)."""
    return forward(w.arch, w.weights, w.biases, x, encoded=True)


def classifier_metrics(w: Weights, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, mean cross-entropy), each (B,), of B classifiers on the labelled images (x, y)."""
    correct = torch.zeros(len(w), device=w.device)
    ce = torch.zeros(len(w), device=w.device)
    with torch.no_grad():
        for s in range(0, len(y), chunk):
            logits = classifier_logits(w, x[s:s + chunk])
            yy = y[s:s + chunk].expand(len(w), -1)
            correct += (logits.argmax(-1) == yy).sum(1)
            ce += F.cross_entropy(logits.transpose(1, 2), yy, reduction="none").sum(1)
    return correct / len(y), ce / len(y)


@dataclass
class ZooFitResult:
    params: torch.Tensor  # (B, P) float32, CPU
    steps: torch.Tensor  # (B,) int32
    failed: torch.Tensor  # (B,) bool


def train_classifiers(arch: INRSpec, plan: ClassifierPlan, x: torch.Tensor, y: torch.Tensor,
                      settings: ZooSettings) -> ZooFitResult:
    """Train the classifiers of ``plan`` on the images (x (n, D), y (n,)) with one Adam over stacks.

    Step t (for t < max_k T_k): every classifier k takes the minibatch ``subsets[k][pos_t[k]]``
    (see :func:`minibatch_positions`), the loss ``sum_k CE_k`` is back-propagated, one Adam step
    updates all stacks.  Classifier k's parameters are snapshotted after its ``T_k``-th step;
    training it further does not touch the others (the loss separates), so the result equals a
    separate Adam run of ``T_k`` steps.  A classifier whose loss becomes NaN/inf is marked failed;
    like a failed INR it keeps the parameters at which that happened, and its step count is the
    number of steps it took before.  That includes the loss of its final parameters (on its last
    minibatch): a last update that diverged fails it with ``T_k`` steps.
    """
    dev = check_device(settings.device)
    b = plan.init.shape[0]
    if x.ndim != 2 or arch.in_features != x.shape[1]:
        raise InrforgeError(f"classifier arch takes {arch.in_features} inputs but the images are {tuple(x.shape)}")
    if y.shape != (len(x),) or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < arch.out_features):
        raise InrforgeError(f"labels must be (n,) = ({len(x)},) classes in [0, {arch.out_features}), got shape "
                            f"{tuple(y.shape)}" + (f", range [{int(y.min())}, {int(y.max())}]" if y.numel() else ""))
    x, y = x.to(dev), y.to(dev)
    subsets = plan.subsets.to(dev)
    params = [plan.init[:, s.offset:s.offset + s.size].reshape(b, *s.shape).to(dev).clone().requires_grad_(True)
              for s in arch.layout]
    opt = torch.optim.Adam(params, lr=settings.lr)
    final = plan.init.to(dev).clone()
    ends = plan.steps.to(dev)
    failed = torch.zeros(b, dtype=torch.bool, device=dev)
    steps_taken = plan.steps.to(dev).to(torch.int32)
    max_steps = int(plan.steps.max())
    positions = minibatch_positions(plan.batch_seeds, subsets.shape[1], max_steps, settings.batch_size, dev)
    for t, pos in enumerate(positions):
        idx = subsets.gather(1, pos)  # (B, m) image indices
        logits = forward(arch, params[0::2], params[1::2], x[idx], encoded=True)  # (B, m, K)
        ce = F.cross_entropy(logits.transpose(1, 2), y[idx], reduction="none").mean(1)  # (B,)
        newly = ~torch.isfinite(ce) & (t < ends) & ~failed
        if bool(newly.any()):  # the parameters that gave the non-finite loss, before any update
            with torch.no_grad():
                final[newly] = torch.cat([p.reshape(b, -1) for p in params], dim=1)[newly]
            steps_taken = torch.where(newly, torch.full_like(steps_taken, t), steps_taken)
        failed |= newly
        opt.zero_grad(set_to_none=True)
        torch.where(failed, torch.zeros_like(ce), ce).sum().backward()
        opt.step()
        done = (ends == t + 1) & ~failed
        if bool(done.any()):
            with torch.no_grad():
                flat = torch.cat([p.reshape(b, -1) for p in params], dim=1)
                final[done] = flat[done]
                failed |= _diverged_at_end(arch, params, done, x[idx], y[idx])
        if bool(failed.any()):  # the failed ones are finished: final holds their parameters
            ends = torch.where(failed, torch.full_like(ends, -1), ends)
    return ZooFitResult(final.cpu(), steps_taken.cpu(), failed.cpu())


def _diverged_at_end(arch: INRSpec, params, done: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the ``done`` classifiers whose mean cross-entropy on their minibatch (x (B, m, D),
    y (B, m)) is non-finite at the current ``params``; only those classifiers are evaluated."""
    sel = done.nonzero()[:, 0]
    logits = forward(arch, [p[sel] for p in params[0::2]], [p[sel] for p in params[1::2]], x[sel], encoded=True)
    ce = F.cross_entropy(logits.transpose(1, 2), y[sel], reduction="none").mean(1)
    out = torch.zeros_like(done)
    out[sel] = ~torch.isfinite(ce)
    return out


# ----------------------------------------------------------------------------------------------
# Writing a zoo store
# ----------------------------------------------------------------------------------------------
def classifier_arch(in_features: int, n_classes: int, hidden: int = 32, depth: int = 1) -> INRSpec:
    """The ReLU MLP classifier ``in -> hidden x depth -> n_classes`` (nn.Linear init, no offset)."""
    return make_arch("relu", in_features=in_features, out_features=n_classes, hidden=hidden, depth=depth)


def _accuracy_array(store: INRStore):
    """The zoo's ``metrics/accuracy`` (N, 1) float32 array, created if missing (NaN = not trained)."""
    m = store.root["metrics"]
    if "accuracy" not in m:
        m.create_array("accuracy", shape=(len(store), 1), dtype="float32", chunks=(store.shard_objects, 1),
                       fill_value=np.nan)
    return m["accuracy"]


def zoo_accuracy(store: INRStore) -> np.ndarray:
    """(N,) source-domain test accuracy of every classifier of a zoo store (NaN = not trained)."""
    if "accuracy" not in store.root["metrics"]:
        raise InrforgeError(f"{store.path} has no metrics/accuracy: it is not a classifier zoo")
    return store.root["metrics"]["accuracy"][:, 0]


def fit_zoo(out, *, data: str = "digits", n_classifiers: int = 512, hidden: int = 32, depth: int = 1,
            settings: ZooSettings | None = None, seed: int = 0, limit: int | None = None,
            image_size: int | None = None, path: str | None = None, test_fraction: float = 0.3,
            val_fraction: float = 0.15, zoo_test_fraction: float = 0.15, shard_objects: int = 256,
            overwrite: bool = False) -> INRStore:
    """Train ``n_classifiers`` classifiers on the image source ``data`` into the zoo store ``out``.

    Like :func:`inrforge.fit_inrs`: creates the store, or resumes it shard by shard when it exists
    with the same arguments (a finished store is returned untouched); other arguments are refused
    unless ``overwrite``.  Objects are classifiers (one view each); their splits are a seeded
    ``val_fraction`` / ``zoo_test_fraction`` of the zoo (``default_rng([seed, 2])``); the label of a
    classifier is its source-domain test accuracy.  A classifier whose training loss or test
    cross-entropy is NaN/inf is stored failed, with NaN accuracy, label and loss.
    """
    settings = ZooSettings() if settings is None else settings
    if not isinstance(settings, ZooSettings):
        raise InrforgeError(f"settings must be a ZooSettings, got {type(settings).__name__}")
    n_classifiers = whole_number(n_classifiers, "n_classifiers")
    shard_objects = whole_number(shard_objects, "shard_objects")
    seed = check_count("seed", seed, minimum=0)
    for name, f in (("val_fraction", val_fraction), ("zoo_test_fraction", zoo_test_fraction)):
        if not (is_number(f) and 0 <= f < 1):
            raise InrforgeError(f"{name} must be in [0, 1), got {f!r}")
    if val_fraction + zoo_test_fraction >= 1:
        raise InrforgeError("val_fraction + zoo_test_fraction must leave some training classifiers")
    d = zoo_data(data, limit=limit, image_size=image_size, test_fraction=test_fraction, seed=seed, path=path)
    arch = classifier_arch(d.in_features, d.n_classes, hidden, depth)
    h, w, c = d.shape
    src_params = {"data": data, "limit": limit, "image_size": image_size, "test_fraction": float(test_fraction),
                  "seed": int(seed), "path": path}
    source = {"name": ZOO_SOURCE, "params": src_params, "n_objects": int(n_classifiers),
              "target_scaling": "inputs: pixel / 255, flattened row-major ((r*W + c)*C + ch)",
              "grid": {"kind": "classifier", "height": h, "width": w, "channels": c,
                       "n_train_images": len(d.y_train), "n_test_images": len(d.y_test), "n_classes": d.n_classes},
              "label_names": None, "label_shape": []}
    fit_attrs = {**asdict(settings), "seed": int(seed), "val_fraction": float(val_fraction),
                 "zoo_test_fraction": float(zoo_test_fraction), "versions": library_versions()}
    identity = {"arch": arch.to_dict(), "source": source, "fit": fit_attrs, "views": 1,
                "shard_objects": min(int(shard_objects), int(n_classifiers))}
    store = None
    if is_store(out):
        store = INRStore(out, mode="r+")
        diffs = _differences(jsonable(_fit_identity(store)), jsonable(identity))
        if diffs and not overwrite:
            raise InrforgeError(f"{out} holds a store made with other arguments ({'; '.join(diffs[:3])}); "
                                "pass overwrite=True (--overwrite) or choose another output")
        store = None if diffs else store
    if store is None:
        rng = np.random.default_rng([seed, 2])
        perm = rng.permutation(n_classifiers)
        n_val, n_test = int(round(val_fraction * n_classifiers)), int(round(zoo_test_fraction * n_classifiers))
        splits = {"val": np.sort(perm[:n_val]), "test": np.sort(perm[n_val:n_val + n_test]),
                  "train": np.sort(perm[n_val + n_test:])}
        store = create_store(out, arch=arch, n_objects=n_classifiers, views=1,
                             labels=np.full(n_classifiers, np.nan, dtype=np.float32), splits=splits, source=source,
                             fit=fit_attrs, shard_objects=shard_objects, chunk_objects=min(16, shard_objects),
                             overwrite=True)
    acc_array = _accuracy_array(store)
    for k in store.pending_shards():
        start, stop = store.shard_range(k)
        n_batches = -(-(stop - start) // settings.classifiers_per_batch)
        bounds = np.linspace(start, stop, n_batches + 1).round().astype(int)
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            plan = plan_classifiers(arch, range(lo, hi), seed, len(d.y_train), settings)
            res = train_classifiers(arch, plan, d.x_train, d.y_train, settings)
            acc, ce = classifier_metrics(Weights.from_flat(res.params, arch), d.x_test, d.y_test)
            failed = res.failed | ~torch.isfinite(ce)  # "failed": a loss became NaN/inf (docs/format.md)
            acc = torch.where(failed, torch.full_like(acc, float("nan")), acc)
            ce = torch.where(failed, torch.full_like(ce, float("nan")), ce)
            parts.append((res, acc, ce, failed))
        cat = lambda f: torch.cat([f(*p) for p in parts]).numpy()  # noqa: E731
        acc = cat(lambda r, a, c, f: a)
        acc_array[start:stop] = acc[:, None]
        store.root["labels"][start:stop] = acc
        store.write_shard(ShardData(
            start=start, params=cat(lambda r, a, c, f: r.params)[:, None],
            psnr=np.full((stop - start, 1), np.nan, dtype=np.float32), loss=cat(lambda r, a, c, f: c)[:, None],
            steps=cat(lambda r, a, c, f: r.steps)[:, None], failed=cat(lambda r, a, c, f: f)[:, None]))
    store._labels = None
    return store


# ----------------------------------------------------------------------------------------------
# Weight -> weight domain adaptation
# ----------------------------------------------------------------------------------------------
CORRUPTIONS = ("rotate-noise", "blur-noise")


def corrupt_images(x: torch.Tensor, shape, kind: str = "rotate-noise", angle: float = 30.0,
                   sigma: float = 0.1, blur: float = 1.0, seed: int = 0) -> torch.Tensor:
    """The target domain: corrupted copies of flat images ``x`` (n, H*W*C) in [0, 1].

    * ``rotate-noise``: rotate every image by the fixed ``angle`` (degrees, counter-clockwise,
      about the centre; bilinear, zeros outside), then add N(0, sigma^2) pixel noise;
    * ``blur-noise``: Gaussian blur with std ``blur`` pixels (zero padding), then the same noise.

    Results are clipped to [0, 1].  The noise is drawn from ``torch.Generator().manual_seed(seed)``.
    Both are fixed maps of the input plus noise, so a classifier's first layer can in principle
    undo the deterministic part (``W_0 -> W_0 M``): what a weight->weight mapper has to learn.
    """
    if kind not in CORRUPTIONS:
        raise InrforgeError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
    if kind == "blur-noise" and not (math.isfinite(blur) and blur > 0):
        raise InrforgeError(f"the blur std must be a positive number of pixels, got {blur!r}")
    h, w, c = shape
    img = x.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    if kind == "rotate-noise":
        a = math.radians(angle)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
        grid = F.affine_grid(theta.expand(len(img), 2, 3), list(img.shape), align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:
        r = max(1, int(math.ceil(3 * blur)))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / blur) ** 2)
        k = (k / k.sum())
        kern = (k[:, None] * k[None, :]).expand(c, 1, 2 * r + 1, 2 * r + 1)
        img = F.conv2d(img, kern, padding=r, groups=c)
    gen = torch.Generator().manual_seed(int(seed))
    img = img + sigma * torch.randn(img.shape, generator=gen, dtype=x.dtype)
    return img.clamp(0, 1).permute(0, 2, 3, 1).reshape(len(x), -1)


class ResidualMapper(nn.Module):
    """``W' = W + alpha * sigma (.) net(W / sigma)``: a weight->weight map around ``net``.

    ``sigma`` holds one scalar per weight/bias tensor (its std over the training zoo; a scalar per
    tensor commutes with neuron permutations), ``alpha`` is a learned scalar starting at
    ``alpha0`` (so the mapper starts close to the identity).  ``net`` is a
    :class:`inrforge.models.DWSNetEquivariant` (``Weights -> Weights``: the mapper is equivariant
    to hidden-neuron permutations) or a :class:`inrforge.models.FlatMLP` with ``P`` outputs (flat
    ``(B, P) -> (B, P)``, no symmetry).
    """

    def __init__(self, net: nn.Module, arch: INRSpec, sigma, alpha0: float = 0.1):
        super().__init__()
        self.net, self.arch = net, arch
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        if sigma.shape != (2 * arch.n_layers,):
            raise InrforgeError(f"sigma must hold one std per tensor ({2 * arch.n_layers}), got {tuple(sigma.shape)}")
        self.register_buffer("sigma", sigma)
        self.alpha = nn.Parameter(torch.tensor(float(alpha0)))
        self.flat_net = not isinstance(net, _equivariant_types())

    @staticmethod
    def tensor_stds(w: Weights) -> torch.Tensor:
        """One std per tensor (W0, b0, W1, ...), floored at 1e-8."""
        return torch.stack([t.float().std() for t in w.tensors()]).clamp_min(1e-8)

    def forward(self, w: Weights) -> Weights:
        if w.arch.widths != self.arch.widths:
            raise InrforgeError(f"mapper built for widths {list(self.arch.widths)}, got {list(w.arch.widths)}")
        ws, bs = self.sigma[0::2], self.sigma[1::2]
        scaled = Weights(tuple(t / s for t, s in zip(w.weights, ws)), tuple(t / s for t, s in zip(w.biases, bs)), w.arch)
        if self.flat_net:
            delta = Weights.from_flat(self.net(scaled.flatten()), w.arch)
        else:
            delta = self.net(scaled)
        return Weights(tuple(t + self.alpha * s * d for t, s, d in zip(w.weights, ws, delta.weights)),
                       tuple(t + self.alpha * s * d for t, s, d in zip(w.biases, bs, delta.biases)), w.arch)


def _equivariant_types():
    from .models import DWSNetEquivariant

    return (DWSNetEquivariant,)


def build_mapper(kind: str, arch: INRSpec, sigma, hidden: int = 8, depth: int = 3,
                 mlp_hidden=(512, 512), alpha0: float = 0.1) -> ResidualMapper:
    """A :class:`ResidualMapper` around ``kind`` = "dwsnet" (equivariant, ``hidden`` channels,
    ``depth`` layers) or "mlp" (flat, hidden widths ``mlp_hidden``)."""
    from .models import DWSNetEquivariant, FlatMLP

    if kind == "dwsnet":
        net = DWSNetEquivariant(arch, hidden=hidden, depth=depth, residual=False)
    elif kind == "mlp":
        net = FlatMLP(arch, arch.param_count, hidden=tuple(mlp_hidden))
    else:
        raise InrforgeError(f"unknown mapper {kind!r}; choose dwsnet or mlp")
    return ResidualMapper(net, arch, sigma, alpha0)


@dataclass
class MapperConfig:
    """Training of a mapper: AdamW, warm-up then cosine decay, best-val checkpoint."""

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32  # classifiers per step
    image_batch: int = 256  # target-domain images per step (shared by the classifiers of a step)
    seed: int = 0
    device: str = "cpu"
    grad_clip: float = 10.0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.image_batch < 1:
            raise InrforgeError("mapper epochs and batch sizes must be positive")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InrforgeError(f"mapper lr must be positive, got {self.lr}")


def mapped_metrics(mapper: nn.Module | None, w: Weights, x: torch.Tensor, y: torch.Tensor,
                   batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, cross-entropy), each (B,), of the classifiers ``mapper(w)`` (``w`` if None) on (x, y)."""
    accs, ces = [], []
    with torch.no_grad():
        if mapper is not None:
            mapper.eval()
        for s in range(0, len(w), batch):
            part = w[s:s + batch]
            a, c = classifier_metrics(part if mapper is None else mapper(part), x, y)
            accs.append(a)
            ces.append(c)
    return torch.cat(accs), torch.cat(ces)


def train_mapper(mapper: ResidualMapper, train_w: Weights, val_w: Weights, x: torch.Tensor, y: torch.Tensor,
                 cfg: MapperConfig, x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None) -> dict:
    """Train ``mapper`` so the mapped classifiers classify the target-domain images (x, y).

    Step: a batch of classifiers ``W`` and a batch of images; loss = mean over classifiers and
    images of ``CE(f_{mapper(W)}(x), y)``, where ``f`` is the batched functional forward, so the
    gradient flows through the mapped weights into the mapper.  Validation: mean target accuracy of
    the mapped ``val_w`` classifiers on (x_val, y_val) (default (x, y)); the best epoch's state is
    loaded back at the end.  Returns a history dict.
    """
    dev = check_device(cfg.device)
    mapper.to(dev)
    train_w, val_w = train_w.to(dev), val_w.to(dev)
    x, y = x.to(dev), y.to(dev)
    x_val = x if x_val is None else x_val.to(dev)
    y_val = y if y_val is None else y_val.to(dev)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    steps_per_epoch = -(-len(train_w) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(mapper.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    best, best_state, history = -1.0, None, []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        mapper.train()
        order = torch.randperm(len(train_w), generator=gen).to(dev)
        losses = []
        for s in range(0, len(order), cfg.batch_size):
            w = train_w[order[s:s + cfg.batch_size]]
            img = torch.randint(len(y), (cfg.image_batch,), generator=gen).to(dev)
            logits = classifier_logits(mapper(w), x[img])  # (b, m, K)
            loss = F.cross_entropy(logits.transpose(1, 2), y[img].expand(len(w), -1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(mapper.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        val_acc = float(mapped_metrics(mapper, val_w, x_val, y_val)[0].mean())
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_acc": val_acc})
        if val_acc > best:
            best, best_state, best_epoch = val_acc, copy.deepcopy(mapper.state_dict()), epoch
    mapper.load_state_dict(best_state)
    return {"history": history, "best_epoch": best_epoch, "best_val_acc": best,
            "params": sum(p.numel() for p in mapper.parameters()), "train_time_s": time.perf_counter() - t0}
