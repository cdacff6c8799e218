"""Training weight-space models on a store: classifiers (class ids, soft labels after MixUp) and
regressors (float labels).

One loop serves all: AdamW, linear warm-up then cosine decay of the learning rate per step,
validation each epoch, the best-val checkpoint kept in memory (and written if asked), early stop
after ``patience`` epochs without improvement, per-epoch metrics to JSON lines and CSV, tqdm.
The test split is evaluated once, with the best-val weights.  A run whose train loss becomes
NaN/inf stops there and keeps the weights of its best (or, without val, last) finished epoch; an
epoch whose val loss is not finite is never the best, and a run with no such epoch is an error.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import run_folder
from .augment import build_transform
from .checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from .checks import check_count, check_device, number, process_count, seed_value
from .data import WeightDataset
from .errors import InrforgeError
from .files import location
from .memory import keep_freed_memory
from .models import build_model
from .optim import BestKeeper, correct, optimizer_step, warmup_cosine
from .predict import InputForm
from .store import INRStore

TASKS = ("classification", "regression")

MAX_LR = 1e30  # AdamW divides lr by its bias correction (>= 0.1 at its defaults): float32 holds 3.4e38


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    lr: float = 5e-3
    weight_decay: float = 5e-4
    batch_size: int = 512
    warmup_epochs: float = 1.0
    patience: int | None = None
    device: str = "cpu"
    seed: int = 0
    num_workers: int = 0
    grad_clip: float | None = 10.0

    def __post_init__(self):
        """Every field checked: a bad value is a one-line :class:`InrforgeError` naming it."""
        check_count("--epochs", self.epochs)
        check_count("--batch-size", self.batch_size)
        if number(self.lr, "--lr", positive=True) > MAX_LR:
            raise InrforgeError(f"--lr must be a positive number up to {MAX_LR:g} (the optimizer's float32 "
                                f"arithmetic overflows beyond), got {self.lr}")
        number(self.weight_decay, "weight decay", minimum=0)
        if number(self.warmup_epochs, "warm-up epochs", minimum=0) > self.epochs:
            raise InrforgeError(f"--warmup-epochs ({self.warmup_epochs:g}) must be at most --epochs ({self.epochs}): "
                                f"the learning rate would never reach its peak")
        if self.patience is not None:
            check_count("--patience", self.patience)
        seed_value(self.seed, "--seed")
        process_count(self.num_workers, "--workers", minimum=0)
        if self.grad_clip is not None:
            number(self.grad_clip, "grad_clip (0 or None: no clipping)", minimum=0)
        check_device(self.device, here=False)


def _require_config(config) -> None:
    if not isinstance(config, TrainConfig):
        raise InrforgeError(f"config must be a TrainConfig, got {type(config).__name__}")


def task_of(store: INRStore) -> tuple[str, int]:
    """("classification", n_classes) for int labels, ("regression", n_targets) for float ones."""
    labels = store.labels
    if np.issubdtype(labels.dtype, np.integer):
        if labels.min() < 0:
            raise InrforgeError("class labels must be >= 0")
        return "classification", int(labels.max()) + 1
    return "regression", 1 if labels.ndim == 1 else labels.shape[1]


def require_task(store: INRStore, task: str, what: str = "this experiment") -> int:
    """The store's number of classes (or targets) if its labels are ``task``'s, else a clear error."""
    got, n = task_of(store)
    if got != task:
        labels = "class ids" if got == "classification" else f"{n} float target(s) per INR"
        raise InrforgeError(f"{store.path} holds {labels}, a {got} task; {what} needs a {task} store")
    return n


def _loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out, y if y.dtype.is_floating_point else y.long())  # soft or hard targets
    return F.mse_loss(out, y.float().reshape(out.shape))


@torch.no_grad()
def evaluate(model, loader, task: str, device) -> dict:
    """Mean loss and, for classification, accuracy (an output that is not finite counts as wrong)."""
    model.eval()
    losses, sizes, hits = [], [], []  # on the device, read once at the end (no host sync per batch)
    for w, y in loader:
        w, y = w.to(device), y.to(device)
        out = model(w)
        losses.append(_loss(task, out, y))
        sizes.append(len(y))
        if task == "classification":
            hits.append(correct(out, y).sum())
    total, n = 0.0, sum(sizes)
    for value, size in zip(torch.stack(losses).tolist() if losses else [], sizes):
        total += value * size
    res = {"loss": total / max(n, 1), "n": n}
    if task == "classification":
        res["acc"] = (int(torch.stack(hits).sum()) if hits else 0) / max(n, 1)
    return res


def check_batch_norm(model, n_train: int, batch_size: int) -> bool:
    """Whether ``model`` has batch norm; if so, an error unless its batches can hold 2 INRs
    (batch statistics of one INR are undefined)."""
    batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if batch_norm and min(n_train, batch_size) < 2:
        what = f"--batch-size {batch_size}" if batch_size < 2 else f"a train split of {n_train} INR(s)"
        raise InrforgeError(f"batch norm needs batches of at least 2 INRs, not {what}; use --norm layer or none")
    return batch_norm


def _eval_loader(ds: WeightDataset, batch_size: int):
    return ds.loader(max(batch_size, 256), shuffle=False)


def fit_model(model, train: WeightDataset, val: WeightDataset | None, test: WeightDataset | None,
              config: TrainConfig, task: str, log_dir=None, progress: bool | None = None, desc: str = "train",
              describe: dict | None = None, checkpoint: bool = False, resume: bool = False) -> dict:
    """Train ``model`` and return the results (best epoch, val/test metrics, history, time).

    Without a val split the last epoch's weights are kept.  A model with batch norm skips a
    last batch of one INR (batch statistics need two).  ``describe`` (what was trained: model,
    augmentations, ...) goes into the results and ``result.json``.

    A non-finite train loss stops the run before that step updates the model, and weights that an
    epoch's last update made non-finite stop it at the end of that epoch (a warning says so):
    the best finished epoch's weights (without val, the last finished epoch's) are kept and
    ``result["diverged"] = {"epoch", "step"}`` says where; a run that diverges in its first epoch
    has no such weights and is an :class:`InrforgeError`.  An epoch whose val loss (or score) is
    not finite is never the best; a run in which no epoch has a finite one is an
    :class:`InrforgeError` too (it diverged), and writes no ``best.pt`` or ``result.json``.
    ``config.patience`` without a val split to watch is an :class:`InrforgeError`.  ``log_dir``
    receives :data:`~inrforge.run_folder.LOG_FILES`: ``run.json`` first (``describe``, the config, torch's thread count
    and the library versions: what decides the numbers), then the metrics per epoch, and at the end
    ``best.pt``, ``inputs.pt`` (the :class:`~inrforge.predict.InputForm` of ``train``: what the
    model's inputs went through, unless ``train``'s canonical form is a function of the user's own)
    and ``result.json`` (which marks a finished run; :func:`~inrforge.predict.load_run` reads the
    three back); those of an earlier run there are
    deleted first (the CLI and the pipelines refuse to reuse a folder without ``--overwrite`` before
    they get here), and nothing else in it is touched.

    ``checkpoint`` (with ``log_dir``): also write ``checkpoint.pt`` at the end of every epoch
    (:mod:`inrforge.checkpoint`; the finished run deletes it).  ``resume``: continue the run in
    ``log_dir`` from its checkpoint, exactly as it would have gone on (the same record is required:
    store, model, augmentations, config), or start it afresh if it stopped before its first
    checkpoint; a finished run of the same record there is not trained again: its ``result.json`` is
    returned, with ``reused`` True (:func:`~inrforge.checkpoint.finished_result`).
    """
    _require_config(config)
    if task not in TASKS:
        raise InrforgeError(f"unknown task {task!r}; choose {' or '.join(TASKS)}")
    if len(train) == 0:
        raise InrforgeError(f"the train dataset has no INRs to train on ({train.skipped} skipped)")
    _check_patience(config, val, "this run")
    device = check_device(config.device)
    run = run_folder.record(describe, config=asdict(config))
    if resume:
        folder, done = run_folder.finished(log_dir, run)  # before anything is built for training (an aligned loader)
        if done is not None:
            return done
    torch.manual_seed(config.seed)
    model.to(device)
    keep_freed_memory()  # every step frees and allocates the same activations again
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch_norm = check_batch_norm(model, len(train), config.batch_size)
    drop_last = batch_norm and len(train) % config.batch_size == 1
    train_loader = train.loader(config.batch_size, shuffle=True, drop_last=drop_last, num_workers=config.num_workers)
    steps_per_epoch = len(train_loader)
    sched = warmup_cosine(opt, max(1, int(config.warmup_epochs * steps_per_epoch)), config.epochs * steps_per_epoch)
    key = "acc" if task == "classification" else "loss"
    best = BestKeeper(higher_better=task == "classification")
    history, diverged = [], None
    has_val = val is not None and len(val) > 0
    start, resumed = 0, None
    if resume:
        ck = load_checkpoint(folder, run)
        if ck is not None:
            start, history = restore_checkpoint(ck, model, opt, sched, best)
            resumed = {"epoch": start, "threads": run["threads"], "versions": run["versions"]}
            run = {**ck["run"], "resumed": ck["run"].get("resumed", []) + [resumed]}
    log_dir = run_folder.begin(log_dir, None if resumed else run, history if resumed else None)
    t0 = time.perf_counter() - (history[-1]["time_s"] if history else 0.0)
    if config.patience is not None and best.since >= config.patience:
        start = config.epochs  # the run had stopped early at its last checkpoint
    bar = tqdm(range(start, config.epochs), desc=desc, disable=(not progress) if progress is not None else None,
               dynamic_ncols=True, initial=start, total=config.epochs)
    for epoch in bar:
        train.set_epoch(epoch)
        train_loss, lr, diverged = _train_epoch(model, train_loader, opt, sched, task, device, config.grad_clip, epoch)
        if diverged:
            break
        row = {"epoch": epoch, "train_loss": train_loss, "lr": lr,  # the epoch's last step's
               "time_s": time.perf_counter() - t0}
        if has_val:
            v = evaluate(model, _eval_loader(val, config.batch_size), task, device)
            row.update({f"val_{k}": x for k, x in v.items() if k != "n"})
            # accuracy stays finite when the outputs are NaN: the loss tells (a NaN score is never the best)
            usable = math.isfinite(v["loss"]) and math.isfinite(row["train_loss"])
            best.offer(v[key] if usable else math.nan, model, epoch)
        else:  # the last finished epoch, kept should a later one diverge
            best.keep(model, epoch)
        history.append(row)
        bar.set_postfix({k: f"{x:.4g}" for k, x in row.items() if k.startswith(("train_loss", "val_"))}, refresh=False)
        run_folder.log_epoch(log_dir, row)
        if log_dir and checkpoint:
            save_checkpoint(log_dir, epoch, run, model, opt, sched, best, history)
        if config.patience is not None and best.since >= config.patience:
            break
    bar.close()
    if diverged:
        _report_divergence(diverged, best.state, opt.param_groups[0]["lr"])
    elif best.state is None:  # with a val split: not one epoch with a finite val loss
        raise InrforgeError(f"training diverged: the val loss was not finite in any of the {len(history)} "
                            f"epoch(s) (lr {config.lr:.3g}); lower --lr or check the INRs")
    best.restore(model)  # the best epoch's weights (without a val split, the last finished epoch's)
    result = {**run, "best_epoch": best.epoch, "epochs_run": len(history),
              "train_time_s": time.perf_counter() - t0, "history": history,
              "params": sum(p.numel() for p in model.parameters())}
    if diverged:
        result["diverged"] = diverged
    if has_val:
        result["val"] = evaluate(model, _eval_loader(val, config.batch_size), task, device)
    if test is not None and len(test):
        result["test"] = evaluate(model, _eval_loader(test, config.batch_size), task, device)
    # InputForm.of is None for a canonical form of the user's own, which cannot be saved
    run_folder.finish(log_dir, history, model, InputForm.of(train) if log_dir else None, result)
    return result


def loss_check_interval(device) -> int:
    """Steps between the checks that the train loss is finite: every step on a CPU (where reading
    the loss costs nothing); every 32 on a GPU, where reading it waits for the step to finish and
    so stalls the queue of kernels (and the CPU-side loading of the next batch behind it)."""
    return 32 if torch.device(device).type == "cuda" else 1


def _train_epoch(model, loader, opt, sched, task: str, device, grad_clip, epoch: int):
    """One epoch of updates: ``(mean train loss, the last step's lr, diverged)``, ``diverged``
    ``{"epoch", "step"}`` when a train loss was not finite (the run stops before that step's
    update) or the epoch's last update left non-finite weights, else None.

    The losses stay on the device and are read every :func:`loss_check_interval` steps.  Where
    that is more than one step, the steps after a non-finite loss run until the next check; their
    weights are never kept (a diverged run restores its best finished epoch), and the mean loss, the
    step and the lr reported are those of checking at every step."""
    model.train()
    check_every = loss_check_interval(device)
    losses, sizes, lrs = [], [], []
    for step, (w, y) in enumerate(loader):
        w, y = w.to(device), y.to(device)
        loss = _loss(task, model(w), y)
        losses.append(loss.detach())
        sizes.append(len(y))
        lrs.append(opt.param_groups[0]["lr"])
        if (step + 1) % check_every == 0 and not bool(torch.isfinite(torch.stack(losses[-check_every:])).all()):
            break
        optimizer_step(loss, opt, sched, model.parameters(), grad_clip)
    values = torch.stack(losses).tolist() if losses else []  # each float(loss), read at once
    good = next((k for k, v in enumerate(values) if not math.isfinite(v)), len(values))
    total = 0.0
    for v, n in zip(values[:good], sizes):
        total += v * n
    mean = total / max(sum(sizes[:good]), 1)
    lr = lrs[max(good - 1, 0)] if lrs else opt.param_groups[0]["lr"]
    if good < len(values):
        return mean, lr, {"epoch": epoch, "step": good}
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return mean, lr, {"epoch": epoch, "step": len(values) - 1}  # the last update overflowed the weights
    return mean, lr, None


def _report_divergence(diverged: dict, kept, lr: float) -> None:
    """A warning that the run stopped at a non-finite loss, or an error if no finished epoch is kept."""
    where = (f"diverged at epoch {diverged['epoch']}, step {diverged['step']} "
             f"(the train loss or the weights are not finite; lr {lr:.3g})")
    if kept is None:
        raise InrforgeError(f"training {where}, before any finished epoch (with a finite val loss) to keep; "
                            f"lower --lr or check the INRs")
    warnings.warn(f"training {where}: stopped, keeping the best finished epoch's weights", stacklevel=3)


def _check_patience(config: TrainConfig, val, what: str) -> None:
    """An :class:`InrforgeError` when ``config.patience`` is set but ``val`` holds no INR: early
    stopping watches the val score, so the option would be silently ignored."""
    if config.patience is not None and (val is None or len(val) == 0):
        raise InrforgeError(f"--patience stops on the val score, but {what} has no val INRs to score; "
                            f"leave --patience out")


@dataclass
class TrainingRun:
    """Everything :func:`fit_model` needs for one run on a store, built and checked up front."""

    model: torch.nn.Module
    train: WeightDataset
    val: WeightDataset
    test: WeightDataset
    config: TrainConfig
    task: str
    describe: dict

    @property
    def label(self) -> str:
        """The run's name as the pipelines spell it: model, then ``align``, then the augmentations,
        joined by ``+`` (``mlp+align``, ``dwsnet+perm+mixup-align``)."""
        d = self.describe
        return "+".join([d["model"], *(["align"] if d["align"] else []), *d["augment"]])

    def fit(self, log_dir=None, progress: bool | None = None, checkpoint: bool = False, resume: bool = False) -> dict:
        """:func:`fit_model` on this run's model and datasets (``checkpoint``, ``resume``: see there)."""
        return fit_model(self.model, self.train, self.val, self.test, self.config, self.task, log_dir=log_dir,
                         progress=progress, desc=self.label, describe=self.describe, checkpoint=checkpoint,
                         resume=resume)


def prepare_training(store, model: str = "dwsnet", augment=(), views: int | None = None,
                     normalize: str | None = "symmetric", config: TrainConfig | None = None,
                     model_kwargs: dict | None = None, cache: bool = True, align: bool = False) -> TrainingRun:
    """Open ``store`` and build its datasets, transform and model; every argument is checked here,
    before anything is trained or written.

    ``align=True`` first aligns every INR of every split to one train INR (the first whose view 0
    is usable) by weight matching (the DWSNets "MLP + alignment" baseline); ``normalize="entry"``
    then standardises each entry of the aligned forms (statistics of the aligned train split).
    """
    from .augment import AlignTo
    from .store import open_store

    store = store if isinstance(store, INRStore) else open_store(store)
    config = TrainConfig() if config is None else config
    _require_config(config)
    if augment is not None and (isinstance(augment, str) or not isinstance(augment, (list, tuple))):
        raise InrforgeError(f"augment must be a list of augmentation names, e.g. ['perm', 'negate'], got {augment!r}")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise InrforgeError(f"model_kwargs must be a dict of model options, got {model_kwargs!r}")
    misplaced = sorted({"batch_size", "device"} & set(model_kwargs or {}))
    if misplaced:
        raise InrforgeError(f"{', '.join(misplaced)} in model_kwargs: training settings go in the TrainConfig")
    check_device(config.device)
    task, n_out = task_of(store)
    augment = [n for n in (augment or []) if n and n != "none"]
    transform = build_transform(augment, store.arch, n_out if task == "classification" else None)
    torch.manual_seed(config.seed)  # the init is the seed's, whatever ran before in this process
    # refused before any data is read; a DWSNet whose training steps cannot fit, before it is built
    net = build_model(model, store.arch, n_out, batch_size=config.batch_size, device=config.device,
                      **(model_kwargs or {}))
    canon = None
    if align:
        train_ids = store.split("train")
        usable = train_ids[store.usable()[train_ids, 0]]
        if len(usable) == 0:
            raise InrforgeError(f"{store.path}: no train INR with a usable view 0 to align to")
        canon = AlignTo(store.read(usable[:1], view=0)[0])
    done = store.done()  # one snapshot for the three splits and their statistics (a fit may be finishing shards)
    train = WeightDataset(store, "train", views=views, transform=transform, normalize=normalize, cache=cache,
                          seed=config.seed, canonical=canon, done=done)
    val = WeightDataset(store, "val", normalize=normalize, cache=cache, canonical=canon, done=done)
    test = WeightDataset(store, "test", normalize=normalize, cache=cache, canonical=canon, done=done)
    if len(train) == 0:
        raise InrforgeError(f"{store.path}: the train split has no fitted INRs")
    if canon is not None and normalize == "entry":  # per-entry statistics of the aligned forms, not the stored ones
        stats = train.canonical_stats("entry")
        train, val, test = (d.with_stats(*stats) for d in (train, val, test))
    _check_patience(config, val, store.path)
    _warn_left_out(store.path, {"train": train, "val": val, "test": test})
    check_batch_norm(net, len(train), config.batch_size)
    describe = describe_training(store, model, model_kwargs, n_out, task, train, val, test, augment=augment,
                                 align=align)
    return TrainingRun(net, train, val, test, config, task, describe)


def describe_training(store: INRStore, model: str, model_kwargs: dict | None, out_features: int, task: str,
                      train: WeightDataset, val: WeightDataset, test: WeightDataset, augment=(),
                      align: bool = False) -> dict:
    """What a run on ``store``'s INRs learns from and how its model is built: the ``describe``
    record :func:`fit_model` writes into ``run.json`` and ``result.json``, from which
    :func:`~inrforge.predict.load_run` rebuilds the model and against which ``resume`` checks a
    run.  The store is recorded as an absolute path (a relative one means nothing once the cwd is
    gone), with how its INRs were fitted (seed, steps, batch size, compile, versions: they decide
    the INRs' last bits), and the names of its labels (classes or targets; ``load_run``'s
    predictions on a store that names them otherwise are not scored)."""
    return {"store": location(store.path), "store_fit": store.fit_settings, "model": model,
            "model_kwargs": dict(model_kwargs or {}), "out_features": out_features, "augment": list(augment),
            "align": align, "views": train.n_views, "normalize": train.normalize, "task": task,
            "n_train": len(train), "n_val": len(val), "n_test": len(test), "skipped": train.skipped,
            "label_names": store.source.get("label_names")}


def _warn_left_out(path: str, datasets: dict) -> None:
    """One warning line when objects of some split have no usable INR (a shard not yet fitted, or
    every view failed): the run trains and scores on fewer objects than the store's splits hold."""
    left = {name: ds.skipped for name, ds in datasets.items() if ds.skipped}
    if left:
        parts = ", ".join(f"{n} of {n + len(datasets[name])} {name}" for name, n in left.items())
        warnings.warn(f"{path}: {parts} objects have no usable INR (unfinished shards or failed fits) and are "
                      f"left out", stacklevel=3)


def train_on_store(store, model: str = "dwsnet", augment=(), views: int | None = None, normalize: str | None = "symmetric",
                   config: TrainConfig | None = None, model_kwargs: dict | None = None, log_dir=None,
                   progress: bool | None = None, cache: bool = True, align: bool = False, resume: bool = False) -> dict:
    """:func:`prepare_training` then train; returns :func:`fit_model`'s result, which also says
    what was trained (store, model and its arguments, augmentations, views, split sizes).
    ``resume``: a finished run of the same record in ``log_dir`` is reused, not trained again
    (:func:`fit_model`)."""
    run = prepare_training(store, model=model, augment=augment, views=views, normalize=normalize, config=config,
                           model_kwargs=model_kwargs, cache=cache, align=align)
    return run.fit(log_dir=log_dir, progress=progress, resume=resume)

