"""The classification experiments' shared parts: what a pipeline trains, on what, over which seeds.

The scripts under ``pipelines/`` (``classify_inrs``, ``views_augment_sweep``) compare model
configurations (:class:`RunSpec`: model, augmentations, alignment, learning rate) on one store,
each trained over several seeds (:func:`train_seeds`), with the recipe of
:func:`add_classifier_arguments`.  Their store is given or fitted here (:func:`classification_input`
checks it before anything is written, :func:`open_or_fit` opens or fits it).  Training itself is
:mod:`inrforge.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .arch import make_arch
from .data import usable_split_sizes
from .errors import InrforgeError
from .fitjob import fit_inrs
from .script import path_arg, positive_float, positive_int, refuse_given
from .sources import load_source, parse_source_options
from .store import INRStore, open_store, summary_line
from .train import TrainConfig, require_task, train_on_store


@dataclass(frozen=True)
class RunSpec:
    """One classifier configuration of an experiment: model, augmentations, alignment, learning rate.

    ``lr=None`` means the caller's default (the pipelines give DWSNet its own lr, MLPs 1e-3);
    ``model_kwargs`` go to :func:`~inrforge.models.build_model` (for DWSNet, typically ``dwsnet_kwargs(...)``).
    """

    model: str
    augment: tuple[str, ...] = ()
    align: bool = False
    lr: float | None = None
    model_kwargs: dict = field(default_factory=dict, hash=False, compare=False)


def dwsnet_kwargs(hidden: int = 16, depth: int = 3, norm: str | None = "batch") -> dict:
    """DWSNet constructor arguments as the pipelines' ``--hidden/--depth/--norm`` flags give them."""
    return {"hidden": hidden, "depth": depth, "norm": None if norm in (None, "none") else norm}


def add_source_arguments(parser) -> None:
    """What a classification pipeline fits when no ``--store`` is given, as options: ``--source``
    (default digits), ``--data`` (its files' folder), ``--source-opt KEY=VALUE`` (repeatable, as
    ``inrforge fit``'s) and ``--limit``; :func:`classification_input` takes them."""
    parser.add_argument("--source", default="digits", help="what to fit (default digits): a source of inrforge fit")
    parser.add_argument("--data", type=path_arg, help="source files folder (mnist IDX, fashion-mnist, ...)")
    parser.add_argument("--source-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="source option, as inrforge fit's, e.g. size=28x28 for image-folder (repeatable)")
    parser.add_argument("--limit", type=positive_int, help="fit only the source's first N objects")


def add_classifier_arguments(parser) -> None:
    """The classification pipelines' training recipe as options: ``--epochs --batch-size --lr
    --hidden --depth --norm`` (DWSNet with 16 channels, 3 layers and batch norm at lr 3e-3;
    the MLPs keep lr 1e-3). The defaults are those measured in docs/results_pipelines.md."""
    parser.add_argument("--epochs", type=positive_int, default=160,
                        help="training epochs per run (at 40 DWSNet is undertrained and MixUp costs "
                             "accuracy; docs/results_pipelines.md)")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="DWSNet learning rate (MLPs use 1e-3)")
    parser.add_argument("--hidden", type=positive_int, default=16, help="DWSNet channels")
    parser.add_argument("--depth", type=positive_int, default=3, help="DWSNet layers")
    parser.add_argument("--norm", default="batch", choices=("batch", "layer", "none"), help="DWSNet normalisation")


def refuse_dwsnet_options(parser, argv, a, specs: dict) -> None:
    """An argument error (one line, status 2) when a DWSNet-only option of
    :func:`add_classifier_arguments` (``--lr --hidden --depth --norm``) is given explicitly but no
    model chosen in ``a.models`` (names in ``specs``, a name -> :class:`RunSpec` map) is a DWSNet:
    it would be accepted and ignored."""
    if not any(specs[name].model == "dwsnet" for name in a.models):
        refuse_given(parser, argv, ("--lr", "--hidden", "--depth", "--norm"),
                     f"only for DWSNet, and --models {','.join(a.models)} trains none")


def train_seeds(store, spec: RunSpec, seeds, config: TrainConfig, views: int | None = None, log_dir=None,
                name: str | None = None, echo=print, resume: bool = False) -> dict:
    """Train ``spec`` on ``store`` once per training seed (``seeds``: a count or a list of seeds).

    Every seed changes the model init, the batch order, the views drawn and the augmentation draws
    (:class:`TrainConfig` ``seed``); the store (INRs, splits) is fixed.  Returns the per-seed test
    accuracies (or test losses for regression) with their mean and population std:
    ``{"test_acc": [...], "mean", "std", "best_epoch": [...], "train_time_s": [...], "params", "views"}``.
    ``resume`` (with ``log_dir``): a seed whose run finished there with the same record is reused,
    not trained again (:func:`inrforge.train.fit_model`).
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise InrforgeError("need at least one training seed")
    name = name or spec.model
    st = store if isinstance(store, INRStore) else open_store(store)
    if usable_split_sizes(st)["test"] == 0:  # before any seed trains, not after the first
        raise InrforgeError(f"{st.path}: the test split has no INR whose view 0 is usable to score {name} on")
    scores, best_epochs, times, res = [], [], [], None
    for seed in seeds:
        cfg = replace(config, seed=seed, lr=spec.lr or config.lr)
        res = train_on_store(store, model=spec.model, augment=list(spec.augment), align=spec.align, views=views,
                             config=cfg, model_kwargs=spec.model_kwargs,
                             log_dir=Path(log_dir) / f"seed{seed}" if log_dir else None, progress=False,
                             resume=resume and bool(log_dir))
        score = res["test"]["acc"] if res["task"] == "classification" else res["test"]["loss"]
        scores.append(score)
        best_epochs.append(res["best_epoch"])
        times.append(res["train_time_s"])
        if echo:
            what = f"test {100 * score:.2f}%" if res["task"] == "classification" else f"test loss {score:.4g}"
            echo(f"  {name:18s} seed {seed}: {what}  (views {res['views']}, best epoch {res['best_epoch']}, "
                 f"{res['params']:,} params, {res['train_time_s']:.0f} s{', reused' if res.get('reused') else ''})",
                 flush=True)
    return {"test_acc": scores, "mean": float(np.mean(scores)), "std": float(np.std(scores)), "best_epoch": best_epochs,
            "train_time_s": times, "params": res["params"], "views": res["views"]}


def classification_input(store=None, *, source: str = "digits", data=None, limit: int | None = None,
                         views: int = 1, views_needed: int = 1, needed_as: str = "--train-views",
                         who: str = "this experiment", source_opt=()):
    """What a classification pipeline will train on, checked before it writes or fits anything:
    ``(store or None, arch, n_classes, source or None)``.  A given ``store`` must hold class ids and
    at least ``views_needed`` views; otherwise ``source`` (loaded here once: pass it on to
    :func:`open_or_fit`) must have class ids and ``views`` (the views to be fitted) must cover
    ``views_needed``, and the arch is the one :func:`open_or_fit` fits.  ``source_opt``: the
    source's options as ``--source-opt`` gives them (``["size=28x28", ...]``)."""
    if store is not None:
        st = open_store(store)
        n_classes = require_task(st, "classification", who)
        if views_needed > st.views:
            raise InrforgeError(f"{needed_as} {views_needed} exceeds the {st.views} views per object of {st.path}")
        return st, st.arch, n_classes, None
    src = load_source(source, path=data, limit=limit, **parse_source_options(source_opt))
    if not np.issubdtype(src.labels.dtype, np.integer):
        raise InrforgeError(f"source {source!r} has float targets, a regression task; {who} needs class ids")
    if views_needed > views:
        raise InrforgeError(f"{needed_as} {views_needed} exceeds --views {views} (the views fitted per object)")
    arch = make_arch("siren-dwsnets", in_features=src.in_features, out_features=src.out_features)
    return None, arch, int(src.labels.max()) + 1, src


def open_or_fit(store=None, *, source="digits", data=None, limit: int | None = None, out=None,
                views: int = 1, steps: int = 500, lr: float = 1e-3, seed: int = 0, device: str = "cpu",
                test_fraction: float = 0.1, overwrite: bool = False, allow_version_change: bool = False,
                task: str | None = None, arch=None, target_psnr: float | None = 40.0, shared_init: bool = False,
                echo=print) -> INRStore:
    """The pipelines' store: ``store`` opened if given, else ``source`` (a name, loaded with ``data``
    and ``limit``, or a loaded :class:`~inrforge.sources.Source`) fitted (or resumed) into ``out``.

    The fit is :func:`inrforge.fit_inrs` of ``arch`` (default: the source's default INR) with a
    ``target_psnr`` early stop (default 40 dB; None: every INR takes every step) and ``shared_init``
    (:class:`~inrforge.fitjob.FitRequest`'s), its step compiled where that repays the compile
    time (``compile=None``: on a CPU the native kernel, whenever it builds; on a GPU, fits of 10^8
    (INR, point, step) triples or more); ``overwrite``
    replaces a store fitted there with other arguments (or begun with other software), and
    ``allow_version_change`` resumes one begun with another inrforge or torch instead.  A given
    store whose labels are not ``task``'s (``"classification"`` or ``"regression"``) is refused.
    Prints one line about the store.
    """
    if store is not None:
        st = open_store(store)
        if task is not None:
            require_task(st, task)
    else:
        if out is None:
            raise InrforgeError("give a store or an output path to fit one into")
        src = load_source(source, path=data, limit=limit) if isinstance(source, str) else source
        st = fit_inrs(src, out, arch=arch, views=views, steps=steps, lr=lr, target_psnr=target_psnr, seed=seed,
                      shared_init=shared_init, device=device, compile=None,
                      test_fraction=test_fraction, overwrite=overwrite, allow_version_change=allow_version_change,
                      progress=None)
    info = st.info()
    if echo:
        echo(f"# store {summary_line(st.path, info)}", flush=True)
    return st
