"""The ``inrforge`` command line: fit | info | render | train | predict | import-dws | export-dws.

User errors (an :class:`InrforgeError`) are printed as one line on stderr with exit status 1;
argument errors are one line too and exit with status 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .checks import usable_cores
from .errors import RESUMES, InrforgeError
from .script import (ArgumentParser, add_fit_arguments, check_failures, check_fit_arguments, check_resume, dropout_rate,
                     fit_options, image_size, nonnegative_float, nonnegative_int, path_arg, positive_float, positive_int,
                     refuse_options, report_errors, results_dir, set_threads, store_out_arg)
from .version import __version__


def build_parser() -> argparse.ArgumentParser:
    from .augment import AUGMENTATIONS
    from .data import NORMALIZE_MODES
    from .models import MODELS

    p = ArgumentParser(prog="inrforge", description="Fit INRs in batches, store them in Zarr, learn on their weights.")
    p.add_argument("--version", action="version", version=f"inrforge {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fit", help="fit INRs to a source and write (or resume) a store")
    add_fit_arguments(f, out_help="store path (a folder, or an fsspec URL)",
                      data_help="folder with the source's files (mnist IDX, fashion-mnist, cifar10, image-folder)")
    f.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    f.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: all cores; with --scheduler: per task, default 1)")
    f.add_argument("--scheduler", type=path_arg, metavar="ADDRESS",
                   help="fit as Dask tasks, one per shard: a running scheduler's address (tcp://host:8786), "
                        "or local:N for a local cluster of N single-threaded worker processes")
    f.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="summarise a store")
    i.add_argument("store", type=path_arg, help="store path or fsspec URL")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.add_argument("--verify", action="store_true",
                   help="also read every finished shard back (the whole store) and fail on one that is missing or "
                        "damaged")
    i.add_argument("--reproduce", type=nonnegative_int, metavar="SHARD",
                   help="also refit this finished shard from its inits with the recorded settings (as long as its "
                        "fit took) and fail unless it equals the stored one bit for bit")
    i.add_argument("--threads", type=positive_int, help="torch threads for --reproduce (default: all cores)")
    i.add_argument("--device", help="device for --reproduce (default: the one the store was fitted on)")

    r = sub.add_parser("render", help="draw ground truth beside reconstructions")
    r.add_argument("store", type=path_arg, help="store path or fsspec URL")
    r.add_argument("--out", type=path_arg, required=True, help="image to write (.png, .pdf, .svg, ...)")
    r.add_argument("--n", type=positive_int,
                   help="objects to draw (default: up to 16; a warning says when the split has fewer than asked)")
    r.add_argument("--view", type=nonnegative_int, default=0, help="which neural view to draw")
    r.add_argument("--split", choices=("train", "val", "test"),
                   help="objects drawn from this split (default test; all objects when the store has no test split)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing file at --out (never a folder)")

    t = sub.add_parser("train", help="train a weight-space model (DWSNet or flat MLP) on a store")
    t.add_argument("store", type=path_arg, help="store path or fsspec URL")
    t.add_argument("--model", default="dwsnet", choices=MODELS, help="DWSNet or flat-MLP baseline")
    t.add_argument("--augment", default="", help=f"comma list: {', '.join(AUGMENTATIONS)}")
    t.add_argument("--align", action="store_true",
                   help="first align every INR to one train INR by weight matching (DWSNets' MLP + alignment "
                        "baseline; a canonical form, computed once per INR)")
    t.add_argument("--views", type=positive_int, help="use the first N views of each train object (default all)")
    t.add_argument("--epochs", type=positive_int, default=100, help="passes over the train split")
    t.add_argument("--lr", type=positive_float, default=5e-3, help="AdamW peak learning rate")
    t.add_argument("--weight-decay", type=nonnegative_float, default=5e-4, help="AdamW weight decay")
    t.add_argument("--batch-size", type=positive_int, default=512, help="INRs per training batch")
    t.add_argument("--warmup-epochs", type=nonnegative_float, default=1.0,
                   help="linear learning-rate warm-up, in epochs (may be fractional)")
    t.add_argument("--patience", type=positive_int, help="stop once N epochs in a row bring no better val score")
    # None: not given (a DWSNet option given with --model mlp is refused, not ignored)
    t.add_argument("--hidden", type=positive_int, help="DWSNet channels (default 32)")
    t.add_argument("--depth", type=positive_int, help="DWSNet equivariant layers (default 4)")
    t.add_argument("--dropout", type=dropout_rate, default=0.0, help="dropout probability in the model")
    t.add_argument("--norm", choices=("batch", "layer", "none"),
                   help="DWSNet normalisation (equivariant: statistics pooled over permuted axes; default batch)")
    t.add_argument("--normalize", default="symmetric", choices=(*NORMALIZE_MODES, "none"),
                   help="input normalisation from train-split statistics: pooled over each entry's "
                        "permutation orbit (commutes with neuron permutations), per flat entry (DWSNets), or none")
    t.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    t.add_argument("--seed", type=nonnegative_int, default=0, help="seed for init, shuffling and augmentations")
    t.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader workers")
    t.add_argument("--threads", type=positive_int, help="torch threads (default: all cores of this process; the numbers "
                                                        "depend on it, see README)")
    t.add_argument("--out", type=path_arg, help="folder for the run's files: run.json, metrics.jsonl/csv, checkpoint.pt "
                                                "(while it runs), best.pt, inputs.pt, result.json")
    t.add_argument("--overwrite", action="store_true", help="replace an earlier run's results in --out")
    t.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last finished epoch, as it would have gone "
                        "on (the same arguments are required); a finished run is reported, not retrained")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    pr = sub.add_parser("predict", help="apply a trained run (inrforge train --out RUN) to a store's INRs")
    pr.add_argument("run", type=path_arg, help="the folder a finished inrforge train --out wrote")
    pr.add_argument("store", type=path_arg, help="store path or fsspec URL (INRs with the run's widths)")
    pr.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                    help="objects to predict (default all)")
    pr.add_argument("--view", type=nonnegative_int, default=0,
                    help="which neural view of each object (default 0, the one a run's evaluation scores)")
    pr.add_argument("--out", type=path_arg,
                    help="CSV file to write: one row per INR (object, split, label, prediction and, for classes, "
                         "their probabilities)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing file at --out (never a folder)")
    pr.add_argument("--batch-size", type=positive_int, default=256, help="INRs per forward pass")
    pr.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    pr.add_argument("--threads", type=positive_int, help="torch threads (default: all cores)")

    im = sub.add_parser("import-dws", help="convert a DWSNets-style folder of .pth INRs into a store")
    im.add_argument("data", type=path_arg, help="folder of per-INR state dicts (seq.{i}.weight / seq.{i}.bias)")
    im.add_argument("--out", type=store_out_arg, required=True, help="store to create")
    im.add_argument("--splits", type=path_arg, help="DWSNets splits JSON ({split: {path: [...], label: [...]}}); default DIR/splits.json if present")
    im.add_argument("--arch", default=None, choices=("siren-dwsnets", "siren", "relu"),
                    help="family/offset/init of INRs whose splits JSON records no arch (default siren-dwsnets; shapes "
                         "are read from the files); an export-dws folder's recorded arch, relu-fourier included, "
                         "is used as is")
    im.add_argument("--w0", type=positive_float, default=None,
                    help="SIREN w0 of INRs whose splits JSON records no arch (default 30)")
    im.add_argument("--image-size", type=image_size, help="HxW grid the INRs were fitted on (e.g. 28x28), for render")
    im.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")

    ex = sub.add_parser("export-dws", help="write a store as one DWSNets-style .pth per INR plus splits.json")
    ex.add_argument("store", type=path_arg, help="store path or fsspec URL")
    ex.add_argument("out", type=path_arg, help="empty folder to write")
    ex.add_argument("--view", type=nonnegative_int, default=0, help="which neural view to export")
    ex.add_argument("--overwrite", action="store_true", help="replace an earlier export-dws folder (nothing else)")
    for command in (f, i, r, t, pr, im, ex):
        command.set_defaults(parser=command)  # for argument errors found after parsing (refuse_options)
    return p


def cmd_fit(a) -> int:
    from .fitjob import fit_inrs
    from .sources import load_source, parse_source_options
    from .store import psnr_summary

    check_fit_arguments(a.parser, a)
    if a.scheduler:  # a misspelt scheduler is refused before the source is loaded
        from .distributed import check_scheduler, local_workers

        check_scheduler(a.scheduler)
        n_local = local_workers(a.scheduler)
        if n_local and n_local > 1 and a.device.startswith("cuda"):
            a.parser.error(f"argument --device: {a.device} with --scheduler {a.scheduler} starts {n_local} worker "
                           f"processes that would all fit on one GPU at once; use --scheduler local:1, or the address "
                           f"of a scheduler whose workers each own a GPU (docs/cluster.md)")
    source = load_source(a.source, path=a.data, limit=a.limit, **parse_source_options(a.source_opt))
    kwargs = dict(fit_options(a, source), device=a.device, progress=False if a.quiet else None)
    if a.scheduler:
        from .distributed import fit_inrs_distributed

        report = fit_inrs_distributed(a.scheduler, source, a.out, threads=a.threads, **kwargs)
        print(report.summary())
        store = report.store
    else:
        store = fit_inrs(source, a.out, threads=a.threads or usable_cores(), **kwargs)
    info = store.info()
    # the path as given (a --scheduler run opens the store at its absolute path, for the workers)
    print(f"{a.out}: {info['objects']} objects x {info['views']} view{'s' if info['views'] > 1 else ''}, "
          f"done {info['done_fraction']:.0%}, "
          f"{psnr_summary(info)}, failed {info['failed']}")
    return check_failures(info, "inrforge fit")


def _human(n) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def _arch_line(arch: dict) -> str:
    """The arch as info prints it: the family and widths, from the coordinates through any Fourier
    features; w0 only for SIRENs (a ReLU MLP has none)."""
    widths = "->".join(map(str, arch["widths"]))
    fourier = arch.get("fourier")
    if fourier:
        features = f"({fourier['n_features']} Fourier features, sigma {fourier['sigma']})"
        widths = f"{fourier['in_features']}->{features}->{widths}"
    w0 = f", w0={arch['w0']}" if arch["family"] == "siren" else ""
    return f"{arch['family']} {widths}{w0}, offset={arch['output_offset']}, init={arch['init']}"


def cmd_info(a) -> int:
    from .store import open_store

    for option in ("threads", "device"):  # before any work
        if getattr(a, option) is not None and a.reproduce is None:
            a.parser.error(f"argument --{option}: only used with --reproduce")
    store = open_store(a.store)
    info = store.info()
    if a.verify:
        bad = store.damaged_shards()
        if bad:
            raise InrforgeError(f"{store.path}: {store.describe_shards(bad)} cannot be read back whole; "
                                f"`inrforge fit` with the store's arguments and --repair refits them")
        info["verified_shards"] = store.n_shards - len(store.pending_shards())
    if a.reproduce is not None:
        set_threads(a.threads)
        info["reproduced_shard"] = _reproduce(store, a.reproduce, a.device)
    if a.json:  # strict JSON: a statistic with nothing to summarise is null, not NaN
        print(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in info.items()}, indent=2))
        return 0
    print(f"store        {info['path']}")
    print(f"source       {info['source']}")
    print(f"objects      {info['objects']} x {info['views']} view{'s' if info['views'] > 1 else ''} = {info['inrs']} INRs")
    print(f"arch         {_arch_line(info['arch'])}, {info['params_per_inr']} params")
    print(f"splits       train {info['splits']['train']}, val {info['splits']['val']}, test {info['splits']['test']}")
    print(f"done         {info['done_fraction']:.1%} ({info['shards']} shards)")
    if not math.isnan(info["psnr_median"]):
        print(f"PSNR (dB)    mean {info['psnr_mean']:.2f}, median {info['psnr_median']:.2f}, "
              f"5th pct {info['psnr_p5']:.2f}")
    else:  # NaN: nothing fitted yet, or imported INRs whose fit quality was never recorded
        print("PSNR (dB)    none recorded")
    print(f"failed       {info['failed']}")
    fit = info["fit"] or {}
    if "steps" in fit:  # a fit's settings (an import records none)
        target = "no early stop" if fit.get("target_psnr") is None else f"early stop at {fit['target_psnr']:g} dB"
        print(f"fit          {fit['steps']} steps, lr {fit.get('lr'):g} {_lr_line(fit)}, {target}, "
              f"batch {fit.get('batch_size')}, {fit.get('device')}{_compiled(fit)}, "
              f"seed {fit.get('seed')}{', shared init' if fit.get('shared_init') is True else ''}")
    if fit.get("versions"):
        mixed = "".join(f"; resumed with {_software(v)}" for v in fit.get("resumed_with") or [])
        print(f"software     {_software(fit['versions'])}{mixed}")
    print(f"size         {_human(info['size_bytes'])}")
    if a.verify:
        print(f"verified     all {info['verified_shards']} finished shards read back whole")
    if a.reproduce is not None:
        print(f"reproduced   shard {a.reproduce}: refitted bit for bit")
    return 0


def _cpu_kernel(fit: dict) -> str | None:
    """The compiled CPU step a recorded fit used (a store that records no kernel compiled with
    Inductor); None for an eager or a GPU fit."""
    from .fit import with_legacy
    from .fitjob import compiles_on_cpu

    return with_legacy(fit)["kernel"] if compiles_on_cpu(fit) else None


def _software(versions: dict) -> str:
    """``inrforge A, torch B`` from recorded versions, and ``, C++ compiler C`` where they name one."""
    cxx = f", C++ {versions['cxx']}" if versions.get("cxx") else ""
    return f"inrforge {versions.get('inrforge')}, torch {versions.get('torch')}{cxx}"


def _compiled(fit: dict) -> str:
    """``, compiled (kernel)`` for a recorded fit whose step was compiled, else nothing."""
    if not fit.get("compile"):
        return ""
    kernel = _cpu_kernel(fit)
    return f", compiled ({kernel})" if kernel else ", compiled"


def _lr_line(fit: dict) -> str:
    """How the recorded learning rate is used: its schedule, and the first layer's factor (a store
    that records neither was fitted with a constant lr for every layer)."""
    from .fit import with_legacy

    fit = with_legacy(fit)
    first = fit["first_layer_lr"]
    first = f", first layer x{first:.4g}" if isinstance(first, (int, float)) and first != 1 else ""
    return f"({fit['lr_schedule']}{first})"


def _device_type(device: str) -> str:
    """``cpu`` or ``cuda`` for a device string such as ``cuda:1`` (its spelling when torch cannot read it)."""
    import torch

    try:
        return torch.device(device).type
    except (RuntimeError, TypeError):
        return str(device)


def _reproduce(store, k: int, device: str | None) -> int:
    """Refit finished shard ``k`` (:func:`~inrforge.fitjob.refit_shard`) and compare it with the store:
    ``k``, or an :class:`InrforgeError` saying what differs and what may explain it (other software,
    a store that mixes versions, or the same software on another CPU type / rewritten source files)."""
    import numpy as np

    from .fitjob import refit_shard, software_changes
    from .store import METRICS

    start, stop = store.shard_range(k)
    if not store.done()[start]:
        raise InrforgeError(f"{store.path}: shard {k} is not finished; nothing to reproduce")
    data = refit_shard(store, k, device=device)
    stored = store.read_flat(slice(start, stop), view=None)
    metrics = [m for m in METRICS
               if not np.array_equal(getattr(data, m), store.metric(m)[start:stop], equal_nan=True)]
    if np.array_equal(data.params, stored, equal_nan=True) and not metrics:
        return k
    diff = np.abs(np.nan_to_num(data.params.astype(np.float64)) - np.nan_to_num(stored))  # failed INRs: NaN
    what = (f"max |param difference| {diff.max():.3g}, in {int((diff > 0).sum())} of {diff.size} numbers"
            if diff.any() else f"the same parameters, other {', '.join(metrics)}")
    software = software_changes(store)
    fitted_on = _device_type(store.fit_settings.get("device") or "cpu")
    here = _device_type(device or store.fit_settings.get("device") or "cpu")
    if software:
        why = f"the software differs ({', '.join(software)})"
    elif fitted_on != here:
        why = f"it was fitted on {fitted_on} and refitted on {here}, whose kernels round differently"
    elif store.fit_settings.get("resumed_with"):
        why = "the store mixes software versions (fit.resumed_with): this shard may come from another one"
    else:
        unrecorded = _cpu_kernel(store.fit_settings) and "cxx" not in (store.fit_settings.get("versions") or {})
        other = "another CPU type or C++ compiler (the step is built here)" if unrecorded else "another CPU type"
        why = (f"same software: {other} rounds differently (was the store fitted elsewhere?), "
               f"or the source's files were rewritten since the fit")
    raise InrforgeError(f"{store.path}: shard {k} refitted here differs from the stored one ({what}); {why}")


def cmd_render(a) -> int:
    from .figures import check_image_path, render_grid
    from .files import output_path
    from .store import open_store

    out = output_path(a.out)
    check_image_path(out, a.overwrite)  # before opening the store: a bad path or an existing file fails fast
    render_grid(open_store(a.store), out, n=a.n, view=a.view, split=a.split, overwrite=a.overwrite)
    print(f"wrote {out}")
    return 0


def cmd_train(a) -> int:
    from .checks import check_device
    from .files import local_path
    from .run_folder import LOG_FILES
    from .train import TrainConfig, prepare_training

    if a.model != "dwsnet":
        refuse_options(a.parser, a, ["hidden", "depth", "norm"], "DWSNet", f"--model {a.model}")
    if a.resume and not a.out:
        a.parser.error("--resume continues the run in --out: give --out")
    check_resume(a.parser, a)
    check_device(a.device)
    set_threads(a.threads)
    augment = [x.strip() for x in a.augment.split(",") if x.strip()]
    config = TrainConfig(epochs=a.epochs, lr=a.lr, weight_decay=a.weight_decay, batch_size=a.batch_size,
                         warmup_epochs=a.warmup_epochs, patience=a.patience, device=a.device, seed=a.seed,
                         num_workers=a.workers)
    kwargs = {"dropout": a.dropout}
    if a.model == "dwsnet":
        norm = a.norm or "batch"
        kwargs.update(hidden=a.hidden or 32, depth=a.depth or 4, norm=None if norm == "none" else norm)
    run = prepare_training(a.store, model=a.model, augment=augment, views=a.views,
                           normalize=None if a.normalize == "none" else a.normalize, config=config,
                           model_kwargs=kwargs, align=a.align)
    # Only once everything above is known to be right: a refused run leaves no folder. Any file
    # the run writes there that exists is refused, or with --overwrite deleted before training.
    # With --resume the files are the interrupted run's own (fit_model checks that they are).
    begun = ("run.json", "checkpoint.pt", "result.json")
    if a.resume and not any((Path(local_path(a.out)) / f).is_file() for f in begun):
        print(f"{a.out} holds no run to resume: starting it", file=sys.stderr)
    out = results_dir(a.out, a.overwrite, files=() if a.resume else LOG_FILES) if a.out else None
    res = run.fit(log_dir=out, progress=False if a.quiet else None, checkpoint=bool(out), resume=a.resume)
    if res.get("reused"):
        print(f"{a.out} holds this run, finished; nothing to train")
    metric = "acc" if res["task"] == "classification" else "loss"
    show = (lambda d: f"{100 * d[metric]:.2f}%") if metric == "acc" else (lambda d: f"{d[metric]:.4g} MSE")
    scores = [f"{split} {show(res[split])}" for split in ("test", "val") if split in res]
    print(f"{run.label}: {', '.join(scores) or 'no val or test split'} "
          f"(best epoch {res['best_epoch']}, {res['params']} params, {res['train_time_s']:.0f} s)")
    return 0


def cmd_predict(a) -> int:
    import csv

    from .files import check_file_path, write_file
    from .predict import describe_score, load_run
    from .run_folder import LOG_FILES
    from .store import open_store

    # a bad --out fails before any work; a run folder's own files (its metrics.csv) are never replaced
    out = (check_file_path(a.out, a.overwrite, (".csv",), "CSV file", "a file name such as predictions.csv")
           if a.out else None)
    if out and Path(out).name in LOG_FILES and (Path(out).parent / "run.json").is_file():
        raise InrforgeError(f"--out {a.out} is a file of the training run in {Path(out).parent}; write the "
                            f"predictions elsewhere")
    set_threads(a.threads)
    run = load_run(a.run, device=a.device)
    store = open_store(a.store)
    pred = run.predict_store(store, split=a.split, view=a.view, batch_size=a.batch_size)
    rec = run.record
    where = ("" if a.split == "all" else f", {a.split} split") + (f", view {a.view}" if a.view else "")
    skipped = f"; {pred.skipped} without a usable view {a.view} left out" if pred.skipped else ""
    print(f"{a.run} ({rec['model']}, {rec['task']}, {run.inputs.describe()}) on {store.path}{where}: "
          f"{len(pred)} INRs{skipped}, {describe_score(pred)}")
    if out:
        head, rows = pred.rows()

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(head)
                w.writerows(rows)

        write_file(out, write, overwrite=a.overwrite)
        print(f"wrote {out}")
    return 0


def cmd_import_dws(a) -> int:
    from .interop import import_dws

    if a.arch == "relu":
        refuse_options(a.parser, a, ["w0"], "SIREN", "--arch relu")
    store = import_dws(a.data, a.out, splits_file=a.splits, preset=a.arch, w0=a.w0, overwrite=a.overwrite,
                       image_size=a.image_size)
    print(f"{store.path}: imported {len(store)} INRs, widths {list(store.arch.widths)}")
    return 0


def cmd_export_dws(a) -> int:
    from .interop import export_dws, exportable
    from .store import open_store

    store = open_store(a.store)
    splits_file = export_dws(store, a.out, view=a.view, overwrite=a.overwrite)
    spec = json.loads(splits_file.read_text())
    n = sum(len(spec[name]["path"]) for name in ("train", "val", "test"))
    left_out = exportable(store, a.view)[1]
    print(f"wrote {splits_file}: {n} INR{'s' if n != 1 else ''} of view {a.view}"
          + (f" ({left_out} left out)" if left_out else ""))
    return 0


COMMANDS = {"fit": cmd_fit, "info": cmd_info, "render": cmd_render, "train": cmd_train, "predict": cmd_predict,
            "import-dws": cmd_import_dws, "export-dws": cmd_export_dws}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # fit resumes where an interrupted run stopped, and train with --out given --resume; the others start over.
    resumes = None
    if args.command == "fit" or (args.command == "train" and args.resume):
        resumes = RESUMES
    elif args.command == "train" and args.out:
        resumes = "add --resume to the same command to continue"
    return report_errors(f"inrforge {args.command}", lambda: COMMANDS[args.command](args), resumes=resumes)


if __name__ == "__main__":
    sys.exit(main())
