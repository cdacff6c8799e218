"""Self-supervised (SimCLR-style) contrastive learning on INR weights.

Two augmented copies ("views") of every INR in a batch are drawn from a weight-space
augmentation with two different generators, encoded, projected, and pulled together with the
NT-Xent loss (normalised temperature-scaled cross entropy, Chen et al. 2020) while being pushed
away from the other ``2B - 2`` embeddings of the batch.  The encoder's output (before the
projection head) is the embedding used downstream (linear probe, t-SNE).

Augmentations act on the raw weights (so exact symmetries such as SIREN negation stay exact);
normalisation (``normalize_weights``, the store's train statistics) is applied afterwards.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import run_folder
from .checks import check_count, check_device, number, seed_value
from .data import WeightDataset, normalization_stats
from .errors import InrforgeError
from .memory import keep_freed_memory
from .optim import optimizer_step, warmup_cosine
from .weights import Weights

__all__ = ["nt_xent", "ProjectionHead", "ContrastiveModel", "two_views", "train_contrastive", "embed",
           "default_views_transform", "make_normalizer"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent loss of two (B, D) batches of projections; row i of ``z1`` and of ``z2`` are a pair.

    With ``z = normalise([z1; z2])`` (2B rows) and ``s_ij = z_i . z_j / temperature``, the loss is
    the mean over the 2B rows of ``-log(exp(s_i,p(i)) / sum_{j != i} exp(s_ij))`` where ``p(i)`` is
    the row's partner.  It is invariant to reordering the pairs, to swapping ``z1`` and ``z2`` and
    to rescaling any row by a positive factor.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise InrforgeError(f"nt_xent needs two (B, D) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if len(z1) < 2:
        raise InrforgeError("nt_xent needs at least 2 pairs (one positive and one negative)")
    if not temperature > 0:
        raise InrforgeError(f"temperature must be positive, got {temperature}")
    b = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


class ProjectionHead(nn.Module):
    """SimCLR's projection g: Linear -> ReLU -> Linear."""

    def __init__(self, in_features: int, out_features: int = 32, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))

    def forward(self, x):
        return self.net(x)


class ContrastiveModel(nn.Module):
    """``encoder`` (Weights -> (B, emb_dim)) followed by a :class:`ProjectionHead`."""

    def __init__(self, encoder: nn.Module, emb_dim: int, proj_dim: int = 32, proj_hidden: int = 128):
        super().__init__()
        self.encoder = encoder
        self.projection = ProjectionHead(emb_dim, proj_dim, proj_hidden)

    def embed(self, x) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x) -> torch.Tensor:
        return self.projection(self.encoder(x))


def default_views_transform(arch, noise: float = 0.1, dropout: float = 0.05):
    """Permute + SirenNegate (exact symmetries of SIRENs) + GaussianNoise + WeightDropout."""
    from . import augment as A

    augs = [A.Permute()]
    if arch.family == "siren":
        augs.append(A.SirenNegate())
    augs += [A.GaussianNoise(noise), A.WeightDropout(dropout)]
    t = A.Compose(augs)
    t.check(arch)
    return t


def make_normalizer(store, mode: str | None = "symmetric") -> Callable[[Weights], Weights]:
    """``w -> (w - mean) / std`` with the store's train statistics (identity for ``mode=None``)."""
    if mode is None:
        return lambda w: w
    mean, std = normalization_stats(store, mode)

    def norm(w: Weights) -> Weights:
        return Weights.from_flat((w.flatten() - mean.to(w.device)) / std.to(w.device), w.arch)

    return norm


def two_views(weights: Weights, transform, gen1: torch.Generator, gen2: torch.Generator) -> tuple[Weights, Weights]:
    """Two augmented copies of a batch, drawn with two generators."""
    return transform(weights, generator=gen1), transform(weights, generator=gen2)


def train_contrastive(model: ContrastiveModel, dataset: WeightDataset, transform, normalize=None, epochs: int = 50,
                      lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128, temperature: float = 0.1,
                      seed: int = 0, device: str = "cpu", grad_clip: float | None = 10.0, log=None, log_dir=None,
                      describe: dict | None = None, form=None, resume: bool = False) -> dict:
    """Train ``model`` with NT-Xent on two views of each INR of ``dataset`` (its labels are ignored).

    ``dataset`` should hold raw weights (``normalize=None``, no transform); ``normalize`` (e.g.
    :func:`make_normalizer`) is applied to each view after ``transform``.  AdamW with a cosine
    learning-rate decay per step; the last batch of an epoch is dropped when it has < 2 INRs.
    Returns ``{"history": [{"epoch", "loss", "time_s"}], "train_time_s"}``; ``log`` is called with
    each epoch's row.

    ``log_dir``: the run's folder (:mod:`inrforge.run_folder`): ``run.json`` (``describe``, these
    settings, torch's thread count, the library versions), the loss per epoch, and at the end
    ``best.pt``, the state dict of ``model.encoder`` (the embedding model; the projection head is
    training's only), ``inputs.pt`` (``form``, e.g. the :class:`~inrforge.predict.InputForm` of
    the normalised dataset the embeddings are read from) and ``result.json``.  A ``describe`` that
    says how the encoder is built (``model``, ``model_kwargs``, ``out_features``: the embedding
    size, ``task`` ``"embedding"``) makes the folder one that :func:`~inrforge.predict.load_run`
    rebuilds: its predictions are embeddings.  ``resume``: a finished run of the same record in
    ``log_dir`` is not trained again; its encoder weights are loaded into ``model.encoder`` and its
    result returned, with ``reused`` True.
    """
    if not isinstance(dataset, WeightDataset):
        raise InrforgeError(f"train_contrastive takes a WeightDataset, got {type(dataset).__name__}")
    if dataset.normalize is not None or dataset.transform is not None:
        raise InrforgeError("train_contrastive wants a raw dataset (normalize=None, transform=None)")
    if not callable(transform):
        raise InrforgeError(f"transform must make the views (e.g. default_views_transform(arch)), got {transform!r}")
    if normalize is not None and not callable(normalize):
        raise InrforgeError(f"normalize must be a function of Weights (e.g. make_normalizer(store)) or None, "
                            f"got {normalize!r}")
    epochs, batch_size = check_count("epochs", epochs), check_count("batch_size", batch_size)
    lr, temperature = number(lr, "lr", positive=True), number(temperature, "temperature", positive=True)
    weight_decay, seed = number(weight_decay, "weight_decay", minimum=0), seed_value(seed)
    if grad_clip is not None:
        grad_clip = number(grad_clip, "grad_clip", minimum=0)
    device = check_device(device)
    if batch_size < 2 or len(dataset) < 2:
        # a batch of one INR has no negative: every batch would be skipped and nothing trained
        raise InrforgeError(f"contrastive training needs batches of at least 2 INRs, got batch_size {batch_size} "
                            f"and a dataset of {len(dataset)}")
    dev = torch.device(device)
    encoder = getattr(model, "encoder", model)
    run = run_folder.record(describe, contrastive={"epochs": epochs, "lr": lr, "weight_decay": weight_decay,
                                                   "batch_size": batch_size, "temperature": temperature, "seed": seed,
                                                   "grad_clip": grad_clip, "device": str(dev)})
    done = run_folder.reuse(log_dir, run, encoder) if resume else None
    if done is not None:
        model.to(dev)
        return {"history": done["history"], "train_time_s": done["train_time_s"], "reused": True}
    torch.manual_seed(seed)
    model.to(dev)
    log_dir = run_folder.begin(log_dir, run)
    normalize = normalize or (lambda w: w)
    keep_freed_memory()  # every step frees and allocates the same activations again
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = dataset.loader(batch_size, shuffle=True, drop_last=len(dataset) % batch_size == 1)
    total_steps = max(1, epochs * len(loader))
    sched = warmup_cosine(opt, 0, total_steps)
    gen1 = torch.Generator().manual_seed(int(seed) * 2 + 1)
    gen2 = torch.Generator().manual_seed(int(seed) * 2 + 2)
    history, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        dataset.set_epoch(epoch)
        losses, sizes = [], []  # on the device, read once per epoch (no host sync per step)
        for w, _ in loader:
            if len(w) < 2:
                continue
            v1, v2 = two_views(w, transform, gen1, gen2)
            v1, v2 = normalize(v1).to(dev), normalize(v2).to(dev)
            loss = nt_xent(model(v1), model(v2), temperature)
            optimizer_step(loss, opt, sched, model.parameters(), grad_clip)
            losses.append(loss.detach())
            sizes.append(len(w))
        total = 0.0
        for value, size in zip(torch.stack(losses).tolist() if losses else [], sizes):
            total += value * size
        row = {"epoch": epoch, "loss": total / max(sum(sizes), 1), "time_s": time.perf_counter() - t0}
        history.append(row)
        run_folder.log_epoch(log_dir, row)
        if log is not None:
            log(row)
    result = {"history": history, "train_time_s": time.perf_counter() - t0}
    run_folder.finish(log_dir, history, encoder, form,
                      {**run, **result, "epochs_run": len(history), "loss_first": history[0]["loss"],
                       "loss_last": history[-1]["loss"], "params": sum(p.numel() for p in encoder.parameters())})
    return result


@torch.no_grad()
def embed(encoder: nn.Module, dataset: WeightDataset, batch_size: int = 256,
          device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings (N, D), labels (N, ...))`` of a dataset (its own normalisation/transform applied).

    The batches are moved to ``device``, by default the encoder's (its first parameter's, CPU if
    it has none); the embeddings come back on the CPU.
    """
    if device is None:
        device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    if len(dataset) == 0:
        raise InrforgeError(f"nothing to embed: the {dataset.split} dataset holds no usable INR")
    was_training = encoder.training
    encoder.eval()
    embs, labels = [], []
    for w, y in dataset.loader(batch_size, shuffle=False):
        embs.append(encoder(w.to(device)).cpu())
        labels.append(y)
    encoder.train(was_training)
    return torch.cat(embs).numpy(), torch.cat(labels).numpy()
