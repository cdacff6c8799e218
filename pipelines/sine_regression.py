"""Sine-frequency regression from INR weights: DWSNet vs flat MLP vs MLP + permutation augmentation
(DWSNets paper, sine-wave regression: test MSE against the number of training INRs).

Fits (or resumes) one store of 1-D SIRENs (1->32->32->1, the DWSNets init ``siren-dwsnets``) to ``sin(b x)`` on
[-pi, pi) with ``b ~ U(0.5, 10)``, then, for each training-set size, trains each model on the first
``n`` INRs of a fixed random order of the train split (nested subsets) and evaluates the best-val
model on the whole test split.  Every run gets the same number of gradient steps (``--train-steps``;
epochs = steps / batches per epoch), so small training sets are not simply under-trained.

The target ``b`` is standardised with the train-split mean/std for training; MSEs are reported in
the original units of ``b`` (so predicting the mean scores about var(b) = 7.5).  Metrics go to
OUT/results.json, the log-x curve to OUT/results.png, per-run logs to OUT/<model>/n<size>/seed<k>/:
each is a run folder that ``inrforge predict`` and ``inrforge.load_run`` read (predicting b in its own
units), and that ``--resume`` reuses when an interrupted invocation is run again.

    python pipelines/sine_regression.py --out runs/sine_regression            # full: 100 ... 5,000
    python pipelines/sine_regression.py --small --out runs/sine_regression_small
"""

from __future__ import annotations

from inrforge.launch import quiet_interrupts

quiet_interrupts("sine_regression.py")  # before torch loads: a Ctrl-C then is one line

import math
import time
from pathlib import Path

import numpy as np
import torch

from inrforge import open_store
from inrforge.arch import PRESETS, make_arch
from inrforge.augment import build_transform
from inrforge.checks import check_device
from inrforge.data import WeightDataset, usable_split_sizes
from inrforge.errors import InrforgeError
from inrforge.experiments import open_or_fit
from inrforge.files import location
from inrforge.fitjob import make_splits
from inrforge.models import build_model
from inrforge.script import (ArgumentParser, add_results_arguments, add_resume_argument, check_resume, fraction, mean_std, names_from, nonnegative_int,
                             parse_with_small, path_arg, positive_float, positive_int, positive_ints, psnr_fields,
                             pyplot, refuse_given, refuse_unused, require_fit_splits, results_dir, results_versions, run_pipeline,
                             run_script, save_figure, write_results)
from inrforge.store import summary_line
from inrforge.train import TrainConfig, describe_training, fit_model, require_task

# name -> (model, augmentations, lr)
CONFIGS = {
    "dwsnet": ("dwsnet", [], None),
    "mlp": ("mlp", [], 1e-3),
    "mlp+perm": ("mlp", ["perm"], 1e-3),
}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=path_arg, help="an existing sines store (otherwise fit one into OUT/inrs.zarr)")
    p.add_argument("--n", type=positive_int, default=7000, help="sine INRs to fit (train split is ~81%% of them)")
    p.add_argument("--n-points", type=positive_int, default=1000, help="sample points on [-pi, pi)")
    p.add_argument("--preset", default="siren-dwsnets", choices=PRESETS,
                   help="INR arch preset (1->32->32->1); with Sitzmann's 'siren' init b is not readable from the "
                        "weights (see docs/results_pipelines.md)")
    p.add_argument("--fit-steps", type=positive_int, default=1000)
    p.add_argument("--fit-lr", type=positive_float, default=1e-3)
    p.add_argument("--test-fraction", type=fraction, default=0.1)
    p.add_argument("--sizes", type=positive_ints, default="100,200,500,1000,2000,5000", help="comma list of training-set sizes")
    p.add_argument("--models", type=names_from(CONFIGS, "model configs"), default="dwsnet,mlp,mlp+perm",
                   help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--train-steps", type=positive_int, default=3000, help="gradient steps per run")
    p.add_argument("--min-epochs", type=positive_int, default=5,
                   help="epochs at least, however few steps --train-steps gives a large training set")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=3e-3, help="DWSNet learning rate (MLPs use 1e-3)")
    p.add_argument("--hidden", type=positive_int, default=16, help="DWSNet channels")
    p.add_argument("--depth", type=positive_int, default=3, help="DWSNet layers")
    p.add_argument("--seeds", type=positive_int, default=1, help="training seeds per (model, size)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="data seed (sines, splits, INR inits, subset order)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: all cores of this process)")
    p.add_argument("--device", default="cpu")
    add_resume_argument(p)
    add_results_arguments(p, "runs/sine_regression")
    p.add_argument("--small", action="store_true",
                   help="a ~1-minute setting (smoke test): defaults --n 700 --n-points 200 --fit-steps 200 "
                        "--test-fraction 0.2 --sizes 50,150,400 --train-steps 300 --min-epochs 3")
    a = parse_with_small(p, argv, {"n": 700, "n_points": 200, "fit_steps": 200, "test_fraction": 0.2,
                                   "sizes": (50, 150, 400), "train_steps": 300, "min_epochs": 3})
    check_resume(p, a)
    refuse_unused(p, argv, a, "--store", ("--n", "--n-points", "--preset", "--fit-steps", "--fit-lr", "--test-fraction",
                                          "--allow-version-change"), "the INRs are the store's")
    if not any(CONFIGS[name][0] == "dwsnet" for name in a.models):
        refuse_given(p, argv, ("--lr", "--hidden", "--depth"), f"only for DWSNet, and --models {','.join(a.models)} "
                                                               f"trains none")
    return a


def _standardise(ds: WeightDataset, mean: float, std: float) -> WeightDataset:
    """``ds`` serving its targets b standardised with the train split's ``mean`` and ``std``."""
    return ds.with_labels((ds.labels.float() - mean) / std)


def sines_source(a):
    """The sines sin(b x), b ~ U(0.5, 10), that the pipeline fits (unless --store is given)."""
    from inrforge.sources import load_source

    return load_source("sines", n=a.n, a_range=(1.0, 1.0), b_range=(0.5, 10.0), fixed_amplitude=1.0,
                       n_points=a.n_points, seed=a.seed)


def fit_store(a, src, out: Path):
    """The sines ``src`` fitted (or resumed) into ``out/inrs.zarr``: one view each, every INR taking
    every --fit-steps step (no early stop: their weights are what is learned from)."""
    arch = make_arch(a.preset, in_features=1, out_features=1, hidden=32, depth=2)
    return open_or_fit(source=src, out=out / "inrs.zarr", arch=arch, steps=a.fit_steps, lr=a.fit_lr, target_psnr=None,
                       seed=a.seed, device=a.device, test_fraction=a.test_fraction, overwrite=a.overwrite,
                       allow_version_change=a.allow_version_change, echo=None)


def _check_splits(a, sizes, store, src) -> None:
    """Before anything is fitted: the test split of ``store`` (its usable INRs) or of the sines
    ``src`` would be fitted into is not empty (it is scored), and the training-set sizes fit in the
    train split."""
    require_fit_splits(store, src, a.seed, a.test_fraction, {"test": 1}, "sine_regression",
                       "fit more --n or a larger --test-fraction")
    train = (usable_split_sizes(store) if store is not None
             else {k: len(v) for k, v in make_splits(src, a.seed, test_fraction=a.test_fraction).items()})["train"]
    _check_sizes(sizes, train)


def _check_sizes(sizes, n_train: int):
    if sizes[-1] > n_train:
        raise InrforgeError(f"--sizes must lie in [1, {n_train}] (the train split), got {','.join(map(str, sizes))}")


def check_store(store) -> None:
    """A given --store must be a sines store with one float target per INR (b: fitted with fixed_amplitude)."""
    n = require_task(store, "regression", "sine_regression")
    if store.source.get("name") != "sines":
        raise InrforgeError(f"{store.path} holds INRs of {store.source.get('name')!r}; sine_regression needs a store "
                            f"of 'sines' (fitted with fixed_amplitude)")
    if n != 1:
        raise InrforgeError(f"{store.path} holds {n} float targets per INR; sine_regression needs exactly one, "
                            f"the frequency b (a sines store fitted with fixed_amplitude)")


def run(a) -> dict:
    names = a.models
    sizes = list(a.sizes)  # sorted, without repeats (positive_ints)
    # Everything that can be checked is checked before --out is created and before any fitting.
    check_device(a.device)
    store = open_store(a.store) if a.store else None
    if store is not None:
        check_store(store)
    src = None if store is not None else sines_source(a)  # the split sizes are known before fitting
    _check_splits(a, sizes, store, src)  # a store's unfinished or failed INRs left out
    started = time.time()  # logs older than this, left by an earlier run, go at the end
    out = results_dir(a.out, a.overwrite, files=() if a.resume else ("results.json", "results.png"),
                      folders=CONFIGS)  # with --resume, the files of the interrupted run, rewritten at the end
    if store is None:
        store = fit_store(a, src, out)
    info = store.info()
    print(f"# store {summary_line(store.path, info)}", flush=True)

    train_full = {}  # augmentation tuple -> full train dataset
    val = WeightDataset(store, "val", cache=True)
    test = WeightDataset(store, "test", cache=True)
    n_train = len(WeightDataset(store, "train", normalize=None))
    _check_sizes(sizes, n_train)
    order = np.random.default_rng([a.seed, 7]).permutation(n_train)  # nested subsets: first n of one order
    y_all = WeightDataset(store, "train", normalize=None).labels.float()
    mu, sd = float(y_all.mean()), float(y_all.std())
    val_s, test_s = _standardise(val, mu, sd), _standardise(test, mu, sd)

    results = {name: {} for name in names}
    for name in names:
        model, aug, lr = CONFIGS[name]
        kwargs = {"hidden": a.hidden, "depth": a.depth} if model == "dwsnet" else {}
        for n in sizes:
            mses, best_epochs = [], []
            for seed in range(a.seeds):
                key = (tuple(aug), seed)
                if key not in train_full:
                    train_full[key] = WeightDataset(store, "train", cache=True, seed=seed,
                                                    transform=build_transform(aug, store.arch, None))
                train = _standardise(train_full[key].subset(order[:n]), mu, sd)
                batches = math.ceil(n / a.batch_size)
                epochs = max(a.min_epochs, math.ceil(a.train_steps / batches))
                cfg = TrainConfig(epochs=epochs, lr=lr or a.lr, batch_size=a.batch_size, seed=seed, device=a.device)
                torch.manual_seed(seed)
                net = build_model(model, store.arch, 1, **kwargs)
                # what load_run rebuilds the model from and --resume checks, with the subset and the
                # standardisation of b (load_run's predictions come back in units of b)
                describe = {**describe_training(store, model, kwargs, 1, "regression", train, val_s, test_s,
                                                augment=aug),
                            "subset_seed": a.seed, "target_scale": {"mean": [mu], "std": [sd]}}
                res = fit_model(net, train, val_s, test_s, cfg, "regression", log_dir=out / name / f"n{n}" / f"seed{seed}",
                                progress=False, desc=name, describe=describe, resume=a.resume)
                mse = res["test"]["loss"] * sd**2  # back to units of b
                mses.append(mse)
                best_epochs.append(res["best_epoch"])
                print(f"  {name:9s} n={n:5d} seed {seed}: test MSE {mse:.4f}  ({epochs} epochs, best {res['best_epoch']}, "
                      f"{res['params']:,} params, {res['train_time_s']:.0f} s{', reused' if res.get('reused') else ''})",
                      flush=True)
            results[name][str(n)] = {"test_mse": mses, "mean": float(np.mean(mses)), "std": float(np.std(mses)),
                                     "epochs": epochs, "best_epoch": best_epochs, "params": res["params"]}

    setting = {"store": location(store.path), "objects": info["objects"], "splits": info["splits"],
               **psnr_fields(info), **store.fit_summary(),
               "sizes": sizes, "train_steps": a.train_steps, "min_epochs": a.min_epochs, "batch_size": a.batch_size,
               "seeds": a.seeds, "subset_seed": a.seed, "dwsnet_hidden": a.hidden, "dwsnet_depth": a.depth,
               "dwsnet_lr": a.lr, "mlp_lr": CONFIGS["mlp"][2], "label_mean": mu, "label_std": sd,
               "test_mse_of_mean": float(((test.labels.float() - mu) ** 2).mean()), "device": a.device,
               "small": bool(a.small), "versions": results_versions()}
    doc = {"setting": setting, "results": results}
    write_results(out, doc, started, CONFIGS)  # results.json; then stale logs, only in its own log folders
    print(format_table(doc))
    save_figure(make_figure(doc), out / "results.png")
    return doc


def main(argv=None) -> int:
    return run_pipeline(parse_args, run, argv)


def format_table(doc) -> str:
    """The markdown table of test MSE per model and training-set size, from ``doc`` (results.json) alone."""
    s, res = doc["setting"], doc["results"]
    sizes, several = s["sizes"], s["seeds"] > 1
    psnr = "n/a" if s["psnr_median"] is None else f"{s['psnr_median']:.1f} dB"  # null: imported INRs
    lines = [f"\nTest MSE of b (in units of b²), {'mean ± std over ' if several else ''}{s['seeds']} training "
             f"seed(s); {s['objects']} sine INRs ({s['n_points']} points, {s['fit_steps']} fit steps, median PSNR "
             f"{psnr}), splits {s['splits']}, data seed {s['data_seed']}; "
             f"{s['train_steps']} gradient steps per run, batch {s['batch_size']}",
             "\n| model | " + " | ".join(f"n={n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for name, r in res.items():
        cells = [mean_std(r[str(n)], several, digits=3) for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"(predicting the train mean scores {s['test_mse_of_mean']:.3f})")
    return "\n".join(lines)


def make_figure(doc):
    """Test MSE against the number of training INRs (log-log), from ``doc`` (results.json) alone."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    plt = pyplot()
    s, results = doc["setting"], doc["results"]
    sizes, several = s["sizes"], s["seeds"] > 1
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    for k, (name, r) in enumerate(results.items()):
        m = np.array([r[str(n)]["mean"] for n in sizes])
        sd = np.array([r[str(n)]["std"] for n in sizes])
        if several:  # error bars: ± std over the training seeds
            ax.errorbar(sizes, m, yerr=sd, fmt="o-", color=f"C{k}", capsize=3, label=name)
        else:
            ax.plot(sizes, m, "o-", color=f"C{k}", label=name)
    ax.axhline(s["test_mse_of_mean"], color="gray", ls=":", lw=1, label="predict the mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # the sizes themselves as the x ticks, in plain numbers (no overlapping minor labels of a log axis)
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.set_xticklabels([str(n) for n in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 1, 2, 5 rather than 5x10^-1, 10^0, ...
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("training INRs (log scale)")
    ax.set_ylabel("test MSE of b (units of b², log scale)")
    ax.set_title(f"sin(b x), b ~ U(0.5, 10): {s['objects']} INRs, {s['train_steps']} steps/run, {s['seeds']} "
                 f"seed(s){' (mean ± std)' if several else ''}", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # outside: covers nothing
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_script("sine_regression.py", main)
