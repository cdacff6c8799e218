"""INR classification: DWSNet vs flat MLP vs MLP + permutation augmentation (DWSNets, Table 1).

Fits (or resumes) a store of INRs of a source, then trains each model on it for each seed and
prints a table of test accuracy (mean +- std over seeds).  Metrics go to OUT/results.json, a bar
chart to OUT/results.png, per-run logs to OUT/<model>/seed<k>/.

    python pipelines/classify_inrs.py --source digits --views 2 --out runs/digits
    python pipelines/classify_inrs.py --store demo_out/digits.zarr --epochs 30 --models dwsnet,mlp
"""

from __future__ import annotations

from inrforge.launch import quiet_interrupts

quiet_interrupts("classify_inrs.py")  # before torch loads: a Ctrl-C then is one line

import time
from dataclasses import replace

from inrforge.checks import check_device
from inrforge.experiments import (RunSpec, add_classifier_arguments, add_source_arguments, classification_input, dwsnet_kwargs, open_or_fit,
                                  refuse_dwsnet_options, train_seeds)
from inrforge.files import location
from inrforge.script import (ArgumentParser, add_results_arguments, add_resume_argument, check_resume, mean_std,
                             names_from, parse_with_small, path_arg, positive_float, positive_int, psnr_fields, pyplot,
                             refuse_unused, require_fit_splits, results_dir, results_versions, run_script, save_figure,
                             set_threads, write_results)
from inrforge.train import TrainConfig

# name -> what to train (lr None: --lr, the DWSNet learning rate)
CONFIGS = {
    "dwsnet": RunSpec("dwsnet"),
    "dwsnet+perm": RunSpec("dwsnet", ("perm",)),
    "mlp": RunSpec("mlp", lr=1e-3),
    "mlp+perm": RunSpec("mlp", ("perm",), lr=1e-3),
    "mlp+align": RunSpec("mlp", align=True, lr=1e-3),
    "dwsnet+mixup-align": RunSpec("dwsnet", ("perm", "mixup-align")),
}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=path_arg, help="an existing store (otherwise fit --source into OUT/inrs.zarr)")
    add_source_arguments(p)  # --source --data --source-opt --limit
    p.add_argument("--views", type=positive_int, default=2, help="views fitted per object")
    p.add_argument("--train-views", type=positive_int, help="views used in training (default: all fitted)")
    p.add_argument("--fit-steps", type=positive_int, default=500, help="Adam steps per INR of the fit")
    p.add_argument("--fit-lr", type=positive_float, default=1e-3)
    p.add_argument("--shared-init", action="store_true",
                   help="fit every object's view v from the same init (inrforge fit --shared-init): both models "
                        "score far higher on such INRs (docs/benchmarks.md)")
    p.add_argument("--models", type=names_from(CONFIGS, "model configs"), default="dwsnet,mlp,mlp+perm,mlp+align",
                   help=f"comma list of {', '.join(CONFIGS)}")
    add_classifier_arguments(p)  # --epochs --batch-size --lr --hidden --depth --norm
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="training seeds per model (init, batch order, views and augmentations; the INRs stay)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: all cores of this process)")
    p.add_argument("--device", default="cpu")
    add_resume_argument(p)
    add_results_arguments(p, "runs/classify")
    p.add_argument("--small", action="store_true",
                   help="a minute-long setting (smoke test): defaults --limit 400 --fit-steps 200 --epochs 30 "
                        "--batch-size 32 (330 gradient steps)")
    a = parse_with_small(p, argv, {"limit": 400, "fit_steps": 200, "epochs": 30, "batch_size": 32})
    check_resume(p, a)
    refuse_unused(p, argv, a, "--store", ("--source", "--data", "--source-opt", "--limit", "--views", "--fit-steps", "--fit-lr",
                                          "--shared-init", "--allow-version-change"), "the INRs are the store's")
    refuse_dwsnet_options(p, argv, a, CONFIGS)
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    # Everything that can be checked is checked before --out is created and before any fitting.
    check_device(a.device)
    store, _, n_classes, src = classification_input(a.store, source=a.source, data=a.data, limit=a.limit,
                                                    source_opt=a.source_opt, views=a.views,
                                                    views_needed=a.train_views or 1, who="classify_inrs")
    # every model is scored on the test split (open_or_fit: seed 0, 10 % test)
    require_fit_splits(store, src, 0, 0.1, {"train": 1, "test": 1}, "classify_inrs", "fit more objects (--limit)")
    set_threads(a.threads)
    names = a.models
    started = time.time()  # logs older than this, left by an earlier run, go at the end
    out = results_dir(a.out, a.overwrite, files=() if a.resume else ("results.json", "results.png"),
                      folders=CONFIGS)  # with --resume, the files of the interrupted run, rewritten at the end
    if not a.store:
        store = open_or_fit(None, source=src, out=out / "inrs.zarr", views=a.views, steps=a.fit_steps, lr=a.fit_lr,
                            shared_init=a.shared_init, device=a.device, overwrite=a.overwrite,
                            allow_version_change=a.allow_version_change)
    info = store.info()

    results = {}
    for name in names:
        spec = CONFIGS[name]
        if spec.model == "dwsnet":
            spec = replace(spec, model_kwargs=dwsnet_kwargs(a.hidden, a.depth, a.norm))
        cfg = TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, device=a.device)
        r = train_seeds(store, spec, a.seeds, cfg, views=a.train_views, log_dir=out / name, name=name,
                        resume=a.resume)
        results[name] = {**{k: r[k] for k in ("test_acc", "mean", "std", "best_epoch", "train_time_s", "params")},
                         "model": spec.model, "augment": list(spec.augment), "align": spec.align, "lr": spec.lr or a.lr}
    setting = {"store": location(store.path), "source": info["source"], "objects": info["objects"],
               "views_fitted": info["views"],
               "views": a.train_views or info["views"], "splits": info["splits"], "n_classes": n_classes,
               **psnr_fields(info), **store.fit_summary(),
               "epochs": a.epochs, "seeds": a.seeds, "batch_size": a.batch_size, "dwsnet_lr": a.lr,
               "dwsnet_hidden": a.hidden, "dwsnet_depth": a.depth, "dwsnet_norm": a.norm, "device": a.device,
               "small": bool(a.small), "versions": results_versions()}
    doc = {"setting": setting, "results": results}
    write_results(out, doc, started, CONFIGS)  # results.json; then stale logs, only in its own log folders
    print(format_table(doc))
    save_figure(make_figure(doc), out / "results.png")
    return 0


def _caption(s) -> str:
    several = s["seeds"] > 1
    shared = " (shared init)" if s.get("fit_shared_init") else ""  # far easier INRs: docs/benchmarks.md
    return (f"{s['source'] or 'INRs'}{shared}: {s['objects']} objects x {s['views']} training view(s), "
            f"splits {s['splits']}; "
            f"{s['epochs']} epochs, batch {s['batch_size']}; {'mean ± std over ' if several else ''}"
            f"{s['seeds']} training seed(s)")


def format_table(doc) -> str:
    """The markdown table of test accuracy per model (DWSNets Table 1's shape), from ``doc`` (results.json) alone."""
    s, res = doc["setting"], doc["results"]
    lines = [f"\nTest accuracy (%), {_caption(s)}; chance {100 / s['n_classes']:.1f} %",
             "\n| model | test accuracy (%) | params |", "|---|---|---|"]
    for name, r in res.items():
        lines.append(f"| {name} | {mean_std(r, s['seeds'] > 1, scale=100)} | {r['params']:,} |")
    return "\n".join(lines)


def make_figure(doc):
    """One bar per model (error bars: ± std over seeds), from ``doc`` (results.json) alone."""
    from matplotlib.patches import Patch

    plt = pyplot()
    s, results = doc["setting"], doc["results"]
    names = list(results)
    several = s["seeds"] > 1
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 3.2, 3.2))
    colours = ["C0" if n.startswith("dwsnet") else "C1" for n in names]
    ax.bar(names, [100 * results[n]["mean"] for n in names], color=colours,
           yerr=[100 * results[n]["std"] for n in names] if several else None, capsize=4)
    chance = ax.axhline(100 / s["n_classes"], color="gray", ls=":", lw=1)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("model (+ augmentation or alignment)")
    ax.set_title(_caption(s).replace("; ", "\n", 1), fontsize=8)
    handles = [Patch(color=c, label=lab) for c, lab in (("C0", "DWSNet"), ("C1", "flat MLP")) if c in colours]
    ax.legend(handles + [chance], [h.get_label() for h in handles] + ["chance"], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # outside the axes: it covers no bar
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_script("classify_inrs.py", main)
