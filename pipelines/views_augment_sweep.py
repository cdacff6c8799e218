"""Neural views and weight-space augmentations for INR classification (Shamsian et al. 2024).

Fits (or resumes) one store with ``--views`` (default 10) INRs per object, then two sweeps, each
for DWSNet and the flat MLP and each over ``--seeds`` training seeds (test accuracy mean +- std):

(a) views: train on the first k views of every train object (k in ``--view-counts``, default
    1,2,5,10; each epoch draws one of them at random per object, the loader's view policy), no
    augmentation.  Same epochs, hence the same number of gradient steps, for every k.
(b) augmentation at a fixed ``--aug-views`` (default 1): none, hidden-neuron permutation, SIREN
    negation, input-space (rotation + scaling + translation of the INR's input, all exact),
    MixUp vanilla / with a randomly permuted partner / with a weight-matched partner.

Val and test always use view 0 and no augmentation.  Metrics go to OUT/results.json, the
two-panel figure (accuracy vs views; accuracy per augmentation) to OUT/results.png, per-run
logs to OUT/views/<model>/k<k>/seed<s>/ and OUT/augment/<model>/<aug>/seed<s>/.

    python pipelines/views_augment_sweep.py --out runs/views_digits                  # all digits, ~70 min (2 threads)
    python pipelines/views_augment_sweep.py --epochs 40 --out runs/views_digits_40   # ~25 min; MixUp then hurts
    python pipelines/views_augment_sweep.py --source mnist --limit 2000 --fit-steps 500 --out runs/views_mnist
    python pipelines/views_augment_sweep.py --store STORE --aug-views 10 --view-counts 10 --out runs/cross
    python pipelines/views_augment_sweep.py --small --out runs/views_small           # 900 digits, views 1 and 10

With ``--store`` the views, splits and PSNR are the store's.  On a CPU the fit runs inrforge's
fused kernel wherever it builds (a C++ compiler), else the eager step.
"""

from __future__ import annotations

from inrforge.launch import quiet_interrupts

quiet_interrupts("views_augment_sweep.py")  # before torch loads: a Ctrl-C then is one line

import time
from dataclasses import replace

from inrforge.augment import build_transform
from inrforge.checks import check_device
from inrforge.errors import InrforgeError
from inrforge.experiments import (RunSpec, add_classifier_arguments, add_source_arguments, classification_input, dwsnet_kwargs, open_or_fit,
                                  refuse_dwsnet_options, train_seeds)
from inrforge.files import location
from inrforge.script import (ArgumentParser, add_results_arguments, add_resume_argument, check_resume, fraction,
                             mean_std, names_from, nonnegative_int, parse_with_small, path_arg, positive_float,
                             positive_int, positive_ints, psnr_fields, pyplot, refuse_unused, require_fit_splits,
                             results_dir, results_versions, run_pipeline, run_script, save_figure, write_results)
from inrforge.train import TrainConfig

VIEW_COUNTS = "1,2,5,10"
MODELS = {"dwsnet": RunSpec("dwsnet"), "mlp": RunSpec("mlp", lr=1e-3)}  # lr None: --lr
LOG_FOLDERS = ("views", "augment")  # OUT/views/<model>/k<K>/, OUT/augment/<model>/<aug>/
# row of sweep (b) -> augmentations (inrforge.augment.AUGMENTATIONS names, applied in this order)
AUGMENTATIONS = {
    "none": (),
    "perm": ("perm",),
    "negate": ("negate",),
    "input": ("rotate", "scale", "translate"),
    "mixup": ("mixup",),
    "mixup-perm": ("mixup-perm",),
    "mixup-align": ("mixup-align",),
}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=path_arg, help="an existing store (otherwise fit --source into OUT/inrs.zarr)")
    add_source_arguments(p)  # --source --data --source-opt --limit
    p.add_argument("--views", type=positive_int, default=10, help="views fitted per object")
    p.add_argument("--fit-steps", type=positive_int, default=400)
    p.add_argument("--fit-lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=nonnegative_int, default=0, help="data seed: INR inits and splits of the fitted store")
    p.add_argument("--test-fraction", type=fraction, default=0.1, help="test split of the fitted store")
    p.add_argument("--view-counts", type=positive_ints, default=VIEW_COUNTS, help="sweep (a): numbers of training views (--small: 1,10)")
    p.add_argument("--aug-views", type=positive_int, default=1, help="sweep (b): training views per object")
    p.add_argument("--augs", type=names_from(AUGMENTATIONS, "augmentations"), default=",".join(AUGMENTATIONS),
                   help=f"sweep (b): comma list of {', '.join(AUGMENTATIONS)}")
    p.add_argument("--models", type=names_from(MODELS, "models"), default="dwsnet,mlp",
                   help=f"comma list of {', '.join(MODELS)}")
    add_classifier_arguments(p)  # --epochs --batch-size --lr --hidden --depth --norm
    p.add_argument("--seeds", type=positive_int, default=3, help="training seeds per cell")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: all cores of this process)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (fit and training)")
    add_resume_argument(p)
    add_results_arguments(p, "runs/views_augment")
    p.add_argument("--small", action="store_true",
                   help="a minutes-long setting (smoke test): defaults --limit 900 --fit-steps 150 --test-fraction "
                        "0.25 --epochs 40 --batch-size 64 --seeds 1 --view-counts 1,10")
    # About 2 minutes on one thread for sweep (a).  Fewer objects or epochs than this and the
    # seed-to-seed spread (several points) hides the effect of views: at 20 epochs one data seed in
    # three reversed it; at 40 views gain 9-16 points on each (docs/results_pipelines.md).
    a = parse_with_small(p, argv, {"limit": 900, "fit_steps": 150, "test_fraction": 0.25, "epochs": 40,
                                   "batch_size": 64, "seeds": 1, "view_counts": (1, 10)})
    check_resume(p, a)
    refuse_unused(p, argv, a, "--store", ("--source", "--data", "--source-opt", "--limit", "--views", "--fit-steps", "--fit-lr",
                                          "--seed", "--test-fraction", "--allow-version-change"),
                  "the INRs are the store's")
    refuse_dwsnet_options(p, argv, a, MODELS)
    return a


def run(a) -> dict:
    models, augs = a.models, a.augs
    counts = list(a.view_counts)  # sorted, without repeats (positive_ints)
    shown = ",".join(map(str, counts))
    # Everything that can be checked is checked before --out is created and before any fitting or
    # training: the store's task and views, and every augmentation of sweep (b) against the arch.
    check_device(a.device)
    store, arch, n_classes, src = classification_input(
        a.store, source=a.source, data=a.data, limit=a.limit, source_opt=a.source_opt, views=a.views,
        views_needed=max(counts + [a.aug_views]), needed_as=f"view counts {shown} / --aug-views {a.aug_views}:",
        who="views_augment_sweep")
    for name in augs:
        try:
            build_transform(AUGMENTATIONS[name], arch, n_classes)
        except InrforgeError as e:
            raise InrforgeError(f"--augs {name} does not apply to the INRs "
                                f"{'of ' + a.store if a.store else 'fitted from ' + repr(a.source)}: {e}") from None
    require_fit_splits(store, src, a.seed, a.test_fraction, {"train": 1, "test": 1}, "views_augment_sweep")
    started = time.time()  # logs older than this, left by an earlier run, go at the end
    out = results_dir(a.out, a.overwrite, files=() if a.resume else ("results.json", "results.png"),
                      folders=LOG_FOLDERS)  # with --resume, the files of the interrupted run, rewritten at the end
    if not a.store:
        store = open_or_fit(None, source=src, out=out / "inrs.zarr", views=a.views,
                            steps=a.fit_steps, lr=a.fit_lr, seed=a.seed, device=a.device,
                            test_fraction=a.test_fraction, overwrite=a.overwrite,
                            allow_version_change=a.allow_version_change)
    info = store.info()
    config = TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, device=a.device)
    specs = {m: replace(MODELS[m], model_kwargs=dwsnet_kwargs(a.hidden, a.depth, a.norm)) if m == "dwsnet"
             else MODELS[m] for m in models}

    def cell(r):
        return {k: r[k] for k in ("test_acc", "mean", "std", "best_epoch", "train_time_s", "params")}

    views_res = {m: {} for m in models}
    aug_res = {m: {} for m in models}
    for m in models:
        print(f"# (a) views, {m}", flush=True)
        for k in counts:
            views_res[m][str(k)] = cell(train_seeds(store, specs[m], a.seeds, config, views=k,
                                                    log_dir=out / "views" / m / f"k{k}", name=f"{m} k={k}",
                                                    resume=a.resume))
    for m in models:
        print(f"# (b) augmentations at {a.aug_views} view(s), {m}", flush=True)
        for name in augs:
            if name == "none" and str(a.aug_views) in views_res[m]:  # the same runs as sweep (a)
                aug_res[m][name] = views_res[m][str(a.aug_views)]
                continue
            spec = replace(specs[m], augment=AUGMENTATIONS[name])
            aug_res[m][name] = cell(train_seeds(store, spec, a.seeds, config, views=a.aug_views,
                                                log_dir=out / "augment" / m / name, name=f"{m}+{name}",
                                                resume=a.resume))

    setting = {"store": location(store.path), "source": info["source"],
               "objects": info["objects"], "views_fitted": store.views, "splits": info["splits"],
               **psnr_fields(info), **store.fit_summary(),
               "view_counts": counts, "aug_views": a.aug_views, "augmentations": {n: list(AUGMENTATIONS[n]) for n in augs},
               "epochs": a.epochs, "batch_size": a.batch_size, "seeds": a.seeds,
               "dwsnet_hidden": a.hidden, "dwsnet_depth": a.depth, "dwsnet_norm": a.norm, "dwsnet_lr": a.lr,
               "mlp_lr": MODELS["mlp"].lr, "n_classes": n_classes, "device": a.device, "small": bool(a.small),
               "versions": results_versions()}
    doc = {"setting": setting, "views": views_res, "augment": aug_res}
    write_results(out, doc, started, LOG_FOLDERS)  # results.json; then stale logs, only in its own log folders
    print(format_tables(doc))
    save_figure(make_figure(doc), out / "results.png")
    return doc


def format_tables(doc) -> str:
    """The two markdown tables: accuracy per number of views, per augmentation (with the change vs none)."""
    s, views, aug = doc["setting"], doc["views"], doc["augment"]
    models, several = list(views), s["seeds"] > 1
    lines = [f"\nTest accuracy (%), {_setting_line(s)}, splits {s['splits']}, batch {s['batch_size']}; "
             f"chance {100 / s['n_classes']:.1f} %",
             "\n| train views | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for k in s["view_counts"]:
        lines.append(f"| {k} | " + " | ".join(mean_std(views[m][str(k)], several, scale=100, digits=1) for m in models) + " |")
    lines += [f"\n| augmentation ({s['aug_views']} view(s)) | " + " | ".join(models) + " |",
              "|---|" + "---|" * len(models)]
    for name in s["augmentations"]:
        cells = []
        for m in models:
            r, base = aug[m][name], aug[m].get("none")
            delta = f" ({100 * (r['mean'] - base['mean']):+.1f})" if base is not None and name != "none" else ""
            cells.append(mean_std(r, several, scale=100, digits=1) + delta)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _setting_line(s) -> str:
    return (f"{'mean ± std over ' if s['seeds'] > 1 else ''}{s['seeds']} training seed(s); {s['source'] or 'INRs'}: "
            f"{s['objects']} objects x {s['views_fitted']} fitted views, {s['epochs']} epochs")


def make_figure(doc):
    """(a) accuracy against training views, (b) one bar per augmentation; from ``doc`` (results.json) alone."""
    import numpy as np

    plt = pyplot()
    s, views, aug = doc["setting"], doc["views"], doc["augment"]
    models, augs = list(views), list(s["augmentations"])
    several = s["seeds"] > 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ks = s["view_counts"]
    chance = 100 / s["n_classes"]
    for i, m in enumerate(models):
        mean = np.array([100 * views[m][str(k)]["mean"] for k in ks])
        std = np.array([100 * views[m][str(k)]["std"] for k in ks])
        ax1.errorbar(ks, mean, yerr=std if several else None, fmt="o-", color=f"C{i}", capsize=3, label=m)
    ax1.axhline(chance, color="gray", ls=":", lw=1, label="chance")
    ax1.set_xscale("log")
    ax1.set_xticks(ks, [str(k) for k in ks])
    ax1.minorticks_off()
    ax1.set_xlabel("training views per object (log scale)")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("(a) neural views, no augmentation", fontsize=9)
    width = 0.8 / len(models)
    x = np.arange(len(augs))
    for i, m in enumerate(models):
        ax2.bar(x + (i - (len(models) - 1) / 2) * width, [100 * aug[m][n]["mean"] for n in augs], width,
                yerr=[100 * aug[m][n]["std"] for n in augs] if several else None, color=f"C{i}", capsize=2)
    ax2.axhline(chance, color="gray", ls=":", lw=1)
    ax2.set_xticks(x, augs, rotation=20, fontsize=8)
    ax2.set_xlabel("augmentation")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title(f"(b) augmentation, {s['aug_views']} training view(s)", fontsize=9)
    # one legend for both panels, outside them: it covers no data
    fig.legend(*ax1.get_legend_handles_labels(), loc="upper right", ncol=len(models) + 1, fontsize=8)
    fig.suptitle("Test accuracy, " + _setting_line(s), fontsize=9, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def main(argv=None) -> int:
    return run_pipeline(parse_args, run, argv)


if __name__ == "__main__":
    run_script("views_augment_sweep.py", main)
