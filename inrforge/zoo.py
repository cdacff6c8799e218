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

Metrics per classifier: the source-domain test accuracy (``metrics/accuracy``, an extra metric the
store is created with, also the store's float label, so ``inrforge train`` can learn to predict
generalisation from weights) and cross-entropy (``metrics/loss``) on the held-out test images, the
steps taken and failure.  :func:`fit_zoo` writes them, with the labels, through
:meth:`inrforge.store.INRStore.write_shard` (so a zoo run never writes into a store another run has
replaced), and resumes like :func:`inrforge.fit_inrs` (:func:`inrforge.fitjob.matching_store`).

Weight->weight domain adaptation of a zoo (corruptions, mappers) is :mod:`inrforge.adapt`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .arch import INRSpec, make_arch
from .checks import check_count, check_device, is_number, whole_number
from .errors import InrforgeError
from .fit import inr_seed
from .fitjob import library_versions, matching_store, require_same_software
from .inr import forward
from .sources import load_source
from .store import INRStore, ShardData, create_store
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
    if size is not None and size > min(x.shape[2:]):
        raise InrforgeError(f"image size {size} is larger than the source's {x.shape[2]}x{x.shape[3]} images: "
                            f"it only downsamples")
    if size is not None and (size, size) != tuple(x.shape[2:]):
        x = F.interpolate(x, size=(size, size), mode="area")
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w * c).contiguous(), (h, w, c)


def zoo_data(data: str = "digits", limit: int | None = None, image_size: int | None = None,
             test_fraction: float = 0.3, seed: int = 0, path: str | None = None,
             path_option: str = "--data") -> ZooData:
    """Load an image source (the registry's ``data``) as flat classifier inputs (``path_option``:
    what the messages about ``path`` call it, :func:`~inrforge.sources.load_source`'s).

    The test images are the dataset's own test items when the (limited) source has any, else a
    seeded ``test_fraction`` (``numpy.random.default_rng([seed, 1])``).  ``image_size`` area-
    downsamples square images (e.g. MNIST 28 -> 14).
    """
    if not (is_number(test_fraction) and 0 < test_fraction < 1):
        raise InrforgeError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if image_size is not None:
        image_size = whole_number(image_size, "image_size")
    seed = check_count("seed", seed, minimum=0)
    src = load_source(data, path=path, limit=limit, path_option=path_option)
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
    """(accuracy, mean cross-entropy), each (B,), of B classifiers on the labelled images (x, y), on
    the classifiers' device (the images are moved there)."""
    x, y = x.to(w.device), y.to(w.device)
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


def zoo_splits(n_classifiers: int, val_fraction: float, zoo_test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """The zoo's train / val / test split of its ``n_classifiers`` classifiers (not of the images).

    With ``perm = numpy.random.default_rng([seed, 2]).permutation(n_classifiers)``,
    ``n_val = round(val_fraction * n)`` and ``n_test = round(zoo_test_fraction * n)``: val is
    ``perm[:n_val]``, test ``perm[n_val:n_val + n_test]``, train the rest, each sorted.  The sizes
    depend on ``n`` and the fractions only, not on the seed.  Each fraction must be in [0, 1) and
    their sum below 1.
    """
    n_classifiers = whole_number(n_classifiers, "n_classifiers")
    seed = check_count("seed", seed, minimum=0)
    for name, f in (("val_fraction", val_fraction), ("zoo_test_fraction", zoo_test_fraction)):
        if not (is_number(f) and 0 <= f < 1):
            raise InrforgeError(f"{name} must be in [0, 1), got {f!r}")
    if val_fraction + zoo_test_fraction >= 1:
        raise InrforgeError("val_fraction + zoo_test_fraction must leave some training classifiers")
    perm = np.random.default_rng([seed, 2]).permutation(n_classifiers)
    n_val, n_test = int(round(val_fraction * n_classifiers)), int(round(zoo_test_fraction * n_classifiers))
    return {"train": np.sort(perm[n_val + n_test:]), "val": np.sort(perm[:n_val]),
            "test": np.sort(perm[n_val:n_val + n_test])}


def zoo_accuracy(store: INRStore) -> np.ndarray:
    """(N,) source-domain test accuracy of every classifier of a zoo store (NaN = not trained)."""
    if store.source.get("name") != ZOO_SOURCE:
        raise InrforgeError(f"{store.path} has no metrics/accuracy: it is not a classifier zoo "
                            f"(its source is {store.source.get('name')!r})")
    return store.metric("accuracy")[:, 0]


def fit_zoo(out, *, data: str = "digits", n_classifiers: int = 512, hidden: int = 32, depth: int = 1,
            settings: ZooSettings | None = None, seed: int = 0, limit: int | None = None,
            image_size: int | None = None, path: str | None = None, test_fraction: float = 0.3,
            val_fraction: float = 0.15, zoo_test_fraction: float = 0.15, shard_objects: int = 256,
            overwrite: bool = False, allow_version_change: bool = False) -> INRStore:
    """Train ``n_classifiers`` classifiers on the image source ``data`` into the zoo store ``out``.

    Like :func:`inrforge.fit_inrs`: creates the store, or resumes it shard by shard when it exists
    with the same arguments (a finished store is returned untouched); other arguments are refused
    unless ``overwrite`` (:func:`inrforge.fitjob.matching_store`).  Objects are classifiers (one
    view each); their splits are a seeded ``val_fraction`` / ``zoo_test_fraction`` of the zoo
    (:func:`zoo_splits`); the label of a classifier is its source-domain test accuracy, stored with
    the extra metric ``metrics/accuracy`` by each shard's write.  A classifier whose training loss
    or test cross-entropy is NaN/inf is stored failed, with NaN accuracy, label and loss.  A zoo
    begun with another inrforge or torch version resumes only with ``allow_version_change``
    (:func:`inrforge.fitjob.require_same_software`).
    """
    settings = ZooSettings() if settings is None else settings
    if not isinstance(settings, ZooSettings):
        raise InrforgeError(f"settings must be a ZooSettings, got {type(settings).__name__}")
    n_classifiers = whole_number(n_classifiers, "n_classifiers")
    shard_objects = whole_number(shard_objects, "shard_objects")
    seed = check_count("seed", seed, minimum=0)
    splits = zoo_splits(n_classifiers, val_fraction, zoo_test_fraction, seed)
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
    store = matching_store(out, identity, overwrite)
    if store is None:  # nothing there yet, or (overwrite) a store made with other arguments
        store = create_store(out, arch=arch, n_objects=n_classifiers, views=1,
                             labels=np.full(n_classifiers, np.nan, dtype=np.float32), splits=splits, source=source,
                             fit=fit_attrs, shard_objects=shard_objects, chunk_objects=min(16, shard_objects),
                             extra_metrics={"accuracy": ("float32", np.nan)}, overwrite=True)
    pending = store.pending_shards()
    if pending:
        require_same_software(store, allow_version_change)
    for k in pending:
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
        store.write_shard(ShardData(
            start=start, params=cat(lambda r, a, c, f: r.params)[:, None],
            psnr=np.full((stop - start, 1), np.nan, dtype=np.float32), loss=cat(lambda r, a, c, f: c)[:, None],
            steps=cat(lambda r, a, c, f: r.steps)[:, None], failed=cat(lambda r, a, c, f: f)[:, None],
            labels=acc, extra_metrics={"accuracy": acc[:, None]}))
    return store
