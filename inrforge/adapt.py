"""Weight->weight domain adaptation of a classifier zoo (:mod:`inrforge.zoo`).

The target domain is a documented corruption of the zoo's source images (:func:`corrupt_images`:
a fixed rotation or Gaussian blur, then pixel noise).  A mapper takes a classifier's weights ``W``
and returns adapted weights in one forward pass (:class:`ResidualMapper`)::

    W' = W + alpha * sigma (.) net(W / sigma),

``sigma`` one std per weight/bias tensor over the training zoo, ``alpha`` a learned scalar, ``net``
an equivariant DWSNet (``Weights -> Weights``, equivariant to hidden-neuron permutations) or a
flat MLP on the parameter vector (:func:`build_mapper`).  :func:`train_mapper` minimises the
cross-entropy of the *mapped* classifiers on labelled target-domain images, back-propagated through
the one batched functional forward (:func:`inrforge.zoo.classifier_logits`) into the mapper, with
AdamW, warm-up then cosine decay and a best-val checkpoint (:class:`MapperConfig`);
:func:`mapped_metrics` evaluates mapped (or unmapped) classifiers.  Given a ``log_dir``, a mapper's
training is a run folder (:mod:`inrforge.run_folder`: its record, the metrics per epoch, the best
mapper in ``best.pt``) that :func:`load_mapper` reads back, to adapt other classifiers of the same
widths, and that ``resume`` reuses.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import run_folder
from .arch import INRSpec
from .checks import check_device, number, seed_value, whole_number
from .errors import InrforgeError
from .memory import keep_freed_memory
from .optim import BestKeeper, optimizer_step, warmup_cosine
from .weights import Weights
from .zoo import classifier_logits, classifier_metrics

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
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype,
                             device=x.device)
        grid = F.affine_grid(theta.expand(len(img), 2, 3), list(img.shape), align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:
        r = max(1, int(math.ceil(3 * blur)))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / blur) ** 2)
        k = (k / k.sum())
        kern = (k[:, None] * k[None, :]).expand(c, 1, 2 * r + 1, 2 * r + 1).to(x.device)
        img = F.conv2d(img, kern, padding=r, groups=c)
    gen = torch.Generator().manual_seed(int(seed))  # drawn on the CPU: the same noise on every device
    img = img + sigma * torch.randn(img.shape, generator=gen, dtype=x.dtype).to(x.device)
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
        self.spec = None  # how build_mapper built it ({"mapper", "mapper_kwargs"}), recorded by train_mapper

    @staticmethod
    def tensor_stds(w: Weights) -> torch.Tensor:
        """One std per tensor (W0, b0, W1, ...), floored at 1e-8."""
        return torch.stack([t.float().std() for t in w.tensors()]).clamp_min(1e-8)

    def forward(self, w: Weights) -> Weights:
        self.arch.require_widths(w.arch, "the mapper's")
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
    ``depth`` layers) or "mlp" (flat, hidden widths ``mlp_hidden``); its ``spec`` records these
    (what :func:`load_mapper` rebuilds it from)."""
    from .models import DWSNetEquivariant, FlatMLP

    if kind == "dwsnet":
        net = DWSNetEquivariant(arch, hidden=hidden, depth=depth, residual=False)
        kwargs = {"hidden": hidden, "depth": depth}
    elif kind == "mlp":
        net = FlatMLP(arch, arch.param_count, hidden=tuple(mlp_hidden))
        kwargs = {"mlp_hidden": list(mlp_hidden)}
    else:
        raise InrforgeError(f"unknown mapper {kind!r}; choose dwsnet or mlp")
    mapper = ResidualMapper(net, arch, sigma, alpha0)
    mapper.spec = {"mapper": kind, "mapper_kwargs": {**kwargs, "alpha0": alpha0}}
    return mapper


def load_mapper(path, device: str = "cpu") -> ResidualMapper:
    """The trained mapper of the finished run folder ``path`` (:func:`train_mapper`'s ``log_dir``;
    ``domain_adaptation.py``'s ``OUT/seed<k>/<mapper>``), in eval mode on ``device``:
    ``load_mapper(path)(weights)`` adapts classifiers with the widths it was trained on.  A folder
    that holds no finished mapper run is a one-line error."""
    dev = check_device(device)
    folder, record = run_folder.read_result(path, "mapper training (domain_adaptation.py)")
    if not {"mapper", "mapper_kwargs", "arch"} <= set(record):
        raise InrforgeError(f"{path}/result.json is not a mapper's run (it does not say how its mapper was built)")
    arch = INRSpec.from_dict(record["arch"])
    mapper = build_mapper(record["mapper"], arch, torch.ones(2 * arch.n_layers), **record["mapper_kwargs"])
    run_folder.load_best(folder, mapper, path)  # sigma, the training zoo's stds, is a buffer: it comes back too
    return mapper.to(dev).eval()


@dataclass(frozen=True)
class MapperConfig:
    """Training of a mapper: AdamW, warm-up then cosine decay, best-val checkpoint.

    Every field is checked: a bad value is a one-line :class:`InrforgeError` naming it.  The counts
    (``epochs``, ``batch_size``, ``image_batch``) are positive integers (an integral float such as
    ``8.0`` is kept as the int 8; a bool, a string or ``2.5`` is refused), ``lr`` and ``grad_clip``
    positive numbers, ``weight_decay`` a number >= 0, ``seed`` an integer in [0, 2**63); the device
    is spelled ``cpu`` or ``cuda[:N]`` (:func:`train_mapper` checks that it is there).
    """

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32  # classifiers per step
    image_batch: int = 256  # target-domain images per step (shared by the classifiers of a step)
    seed: int = 0
    device: str = "cpu"
    grad_clip: float = 10.0

    def __post_init__(self):
        for name, label in (("epochs", "mapper epochs"), ("batch_size", "mapper batch_size"),
                            ("image_batch", "mapper image_batch")):
            object.__setattr__(self, name, whole_number(getattr(self, name), label))
        object.__setattr__(self, "lr", number(self.lr, "mapper lr", positive=True))
        object.__setattr__(self, "weight_decay", number(self.weight_decay, "mapper weight_decay", minimum=0))
        object.__setattr__(self, "grad_clip", number(self.grad_clip, "mapper grad_clip", positive=True))
        object.__setattr__(self, "seed", seed_value(self.seed, "mapper seed"))
        check_device(self.device, here=False)


def mapped_metrics(mapper: nn.Module | None, w: Weights, x: torch.Tensor, y: torch.Tensor,
                   batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, cross-entropy), each (B,), of the classifiers ``mapper(w)`` (``w`` if None) on (x, y),
    on the mapper's device (``w``'s without one; the classifiers and images are moved there)."""
    accs, ces = [], []
    dev = w.device if mapper is None else next(mapper.parameters()).device
    with torch.no_grad():
        if mapper is not None:
            mapper.eval()
        for s in range(0, len(w), batch):
            part = w[s:s + batch].to(dev)
            a, c = classifier_metrics(part if mapper is None else mapper(part), x, y)
            accs.append(a)
            ces.append(c)
    return torch.cat(accs), torch.cat(ces)


def train_mapper(mapper: ResidualMapper, train_w: Weights, val_w: Weights, x: torch.Tensor, y: torch.Tensor,
                 cfg: MapperConfig, x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                 log_dir=None, describe: dict | None = None, resume: bool = False) -> dict:
    """Train ``mapper`` so the mapped classifiers classify the target-domain images (x, y).

    Step: a batch of classifiers ``W`` and a batch of images; loss = mean over classifiers and
    images of ``CE(f_{mapper(W)}(x), y)``, where ``f`` is the batched functional forward, so the
    gradient flows through the mapped weights into the mapper.  Validation: mean target accuracy of
    the mapped ``val_w`` classifiers on (x_val, y_val) (default (x, y)); the best epoch's state is
    loaded back at the end.  Returns ``{"history", "best_epoch", "best_val_acc", "params",
    "train_time_s"}``.

    ``log_dir``: the run's folder: ``run.json`` (``describe``: what the mapper learns from, e.g.
    the zoo and the corruption; the mapper's ``spec`` and arch, ``cfg``, torch's thread count and
    the library versions), the metrics per epoch, and at the end ``best.pt`` (the best mapper) and
    ``result.json``; :func:`load_mapper` reads it back.  ``resume``: a finished run of the same
    record there is not trained again: its mapper is loaded into ``mapper`` and its result returned,
    with ``reused`` True.
    """
    if len(val_w) == 0:  # its epochs are chosen by val accuracy (an empty one crashed in torch.cat)
        raise InrforgeError("train_mapper needs at least one val classifier: it keeps the epoch of best val accuracy")
    if not isinstance(cfg, MapperConfig):
        raise InrforgeError(f"cfg must be a MapperConfig, got {type(cfg).__name__}")
    dev = check_device(cfg.device)
    run = run_folder.record(describe, **(mapper.spec or {}), arch=mapper.arch.to_dict(), config=asdict(cfg))
    done = run_folder.reuse(log_dir, run, mapper) if resume else None
    if done is not None:
        mapper.to(dev)
        return {**{k: done[k] for k in ("history", "best_epoch", "best_val_acc", "params", "train_time_s")},
                "reused": True}
    log_dir = run_folder.begin(log_dir, run)
    mapper.to(dev)
    train_w, val_w = train_w.to(dev), val_w.to(dev)
    x, y = x.to(dev), y.to(dev)
    x_val = x if x_val is None else x_val.to(dev)
    y_val = y if y_val is None else y_val.to(dev)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    steps_per_epoch = -(-len(train_w) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    keep_freed_memory()  # every step frees and allocates the same activations again
    opt = torch.optim.AdamW(mapper.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, max(1, steps_per_epoch), total)
    best, history = BestKeeper(higher_better=True), []
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
            optimizer_step(loss, opt, sched, mapper.parameters(), cfg.grad_clip)
            losses.append(loss.detach())  # on the device, read once per epoch (no host sync per step)
        val_acc = float(mapped_metrics(mapper, val_w, x_val, y_val)[0].mean())
        history.append({"epoch": epoch, "train_loss": float(np.mean(torch.stack(losses).tolist())), "val_acc": val_acc})
        run_folder.log_epoch(log_dir, history[-1])
        best.offer(val_acc, mapper, epoch)
    best.restore(mapper)
    result = {"history": history, "best_epoch": best.epoch, "best_val_acc": best.score,
              "params": sum(p.numel() for p in mapper.parameters()), "train_time_s": time.perf_counter() - t0}
    run_folder.finish(log_dir, history, mapper, None, {**run, **result})
    return result
