"""Self-supervised INR embeddings of sine waves: SimCLR (NT-Xent) with weight-space views, DWSNet vs
flat-MLP encoder (DWSNets paper, self-supervised learning on INRs of ``a sin(b x)``).

Fits (or resumes) a store of 1-D SIRENs (1->32->32->1, ``siren-dwsnets`` init) to ``a sin(b x)``
on [-pi, pi) with ``a, b ~ U(0, 10)``.  Each encoder is trained contrastively on the train split
(labels unused): two views per INR from Permute + SirenNegate + GaussianNoise + WeightDropout
(``inrforge.contrastive``).  Then, on the encoder's embedding (before the projection head):

* a linear probe (ridge, alpha chosen by CV on train) fitted on train embeddings and scored on the
  test split: R^2 for a and for b;
* a 2-D t-SNE of the test embeddings, coloured by a and by b (OUT/tsne.png).

Reference rows: the same probe on the normalised raw weights, and on an untrained (random-init)
encoder.  Metrics go to OUT/results.json.  Each trained encoder is a run folder, OUT/<encoder>/
(loss per epoch in metrics.csv, the encoder in best.pt): ``inrforge predict OUT/dwsnet STORE --out
emb.csv`` and ``inrforge.load_run`` give the embedding of any INRs of the same widths, and
``--resume`` reuses it when an interrupted invocation is run again.

    python pipelines/ssl_sines.py --out runs/ssl_sines
    python pipelines/ssl_sines.py --small --out runs/ssl_sines_small
"""

from __future__ import annotations

from inrforge.launch import quiet_interrupts

quiet_interrupts("ssl_sines.py")  # before torch loads: a Ctrl-C then is one line

import time
from pathlib import Path

import numpy as np
import torch

from inrforge import open_store
from inrforge.arch import make_arch
from inrforge.checks import check_device
from inrforge.contrastive import ContrastiveModel, default_views_transform, embed, make_normalizer, train_contrastive
from inrforge.data import WeightDataset
from inrforge.errors import InrforgeError
from inrforge.experiments import open_or_fit
from inrforge.files import location
from inrforge.models import build_model
from inrforge.predict import EMBEDDING, InputForm
from inrforge.script import (ArgumentParser, add_results_arguments, add_resume_argument, check_resume, dropout_rate, fraction, int_at_least, names_from,
                             nonnegative_float, nonnegative_int, parse_with_small, path_arg, positive_float,
                             positive_int, psnr_fields, pyplot, refuse_given, refuse_unused, require_fit_splits, results_dir,
                             results_versions, run_pipeline, run_script, save_figure, write_results)
from inrforge.train import require_task

ENCODERS = ("dwsnet", "mlp")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=path_arg, help="an existing sines store with labels (a, b) (otherwise fit OUT/inrs.zarr)")
    p.add_argument("--n", type=positive_int, default=5000, help="sine INRs to fit")
    p.add_argument("--n-points", type=positive_int, default=2000)
    p.add_argument("--fit-steps", type=positive_int, default=1500)
    p.add_argument("--fit-lr", type=positive_float, default=1e-3)
    p.add_argument("--test-fraction", type=fraction, default=0.2)
    p.add_argument("--encoders", type=names_from(ENCODERS, "encoders"), default="dwsnet,mlp",
                   help=f"comma list of {', '.join(ENCODERS)}")
    p.add_argument("--emb-dim", type=positive_int, default=32, help="size of the embedding the probes read")
    p.add_argument("--epochs", type=positive_int, default=100, help="contrastive training epochs")
    p.add_argument("--batch-size", type=int_at_least(2), default=128,
                   help="INRs per contrastive batch (at least 2: NT-Xent contrasts the INRs of a batch)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate of the contrastive training")
    p.add_argument("--temperature", type=positive_float, default=0.1)
    p.add_argument("--noise", type=nonnegative_float, default=0.1, help="GaussianNoise rel_std of the views")
    p.add_argument("--dropout", type=dropout_rate, default=0.05, help="WeightDropout p of the views")
    p.add_argument("--hidden", type=positive_int, default=16, help="DWSNet channels")
    p.add_argument("--depth", type=positive_int, default=3, help="DWSNet layers")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, help="torch threads (default: all cores of this process)")
    p.add_argument("--device", default="cpu")
    add_resume_argument(p)
    add_results_arguments(p, "runs/ssl_sines")
    p.add_argument("--small", action="store_true",
                   help="a ~1-minute setting (smoke test): defaults --n 800 --n-points 200 --fit-steps 200 "
                        "--fit-lr 3e-3 --epochs 30")
    a = parse_with_small(p, argv, {"n": 800, "n_points": 200, "fit_steps": 200, "fit_lr": 3e-3, "epochs": 30})
    check_resume(p, a)
    refuse_unused(p, argv, a, "--store", ("--n", "--n-points", "--fit-steps", "--fit-lr", "--test-fraction",
                                          "--allow-version-change"), "the INRs are the store's")
    if "dwsnet" not in a.encoders:
        refuse_given(p, argv, ("--hidden", "--depth"), f"only for the DWSNet encoder, and --encoders "
                                                       f"{','.join(a.encoders)} has none")
    return a


def encoder_spec(name: str, a) -> tuple[str, dict]:
    """The model and :func:`~inrforge.models.build_model` options of the encoder ``name`` (its
    run's record holds them: ``load_run`` rebuilds the encoder from them)."""
    if name == "dwsnet":
        return "dwsnet", {"hidden": a.hidden, "depth": a.depth, "head_hidden": [128]}
    if name == "mlp":
        return "mlp", {"mlp_hidden": [256, 256]}
    raise InrforgeError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")


def build_encoder(name: str, arch, a) -> torch.nn.Module:
    model, kwargs = encoder_spec(name, a)
    return build_model(model, arch, a.emb_dim, **kwargs)


def linear_probe(x_train, y_train, x_test, y_test) -> list[float]:
    """Test R^2 per target of a ridge regression (alpha by CV on train) on standardised inputs."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    m.fit(x_train, y_train)
    return [float(r) for r in r2_score(y_test, m.predict(x_test), multioutput="raw_values")]


# at least 2 train INRs (a contrastive batch, the probe) and 2 test INRs (R², t-SNE)
NEEDED_SPLITS = {"train": 2, "test": 2}


def sines_source(a):
    """The sines a sin(b x), a, b ~ U(0, 10), that the pipeline fits (unless --store is given)."""
    from inrforge.sources import load_source

    return load_source("sines", n=a.n, a_range=(0.0, 10.0), b_range=(0.0, 10.0), n_points=a.n_points, seed=a.seed)


def fit_store(a, src, out: Path):
    """The sines ``src`` fitted (or resumed) into ``out/inrs.zarr``: one view each, every INR taking
    every --fit-steps step (no early stop: their weights are what is learned from)."""
    arch = make_arch("siren-dwsnets", in_features=1, out_features=1, hidden=32, depth=2)
    return open_or_fit(source=src, out=out / "inrs.zarr", arch=arch, steps=a.fit_steps, lr=a.fit_lr, target_psnr=None,
                       seed=a.seed, device=a.device, test_fraction=a.test_fraction, overwrite=a.overwrite,
                       allow_version_change=a.allow_version_change, echo=None)


def check_store(store) -> None:
    """A given --store must hold the (a, b) float targets of a sines store (without fixed_amplitude)."""
    n = require_task(store, "regression", "ssl_sines")
    if store.labels.ndim != 2 or n != 2:
        raise InrforgeError(f"{store.path} holds {n} float target(s) per INR; ssl_sines needs the two targets "
                            f"(a, b) of a sines store fitted without fixed_amplitude")
    if store.source.get("name") != "sines":
        raise InrforgeError(f"{store.path} holds INRs of {store.source.get('name')!r}; ssl_sines needs a store of "
                            f"'sines' (fitted without fixed_amplitude)")


def run(a) -> dict:
    names = a.encoders
    # Everything that can be checked is checked before --out is created and before any fitting.
    check_device(a.device)
    store = open_store(a.store) if a.store else None
    if store is not None:
        check_store(store)
    src = None if store is not None else sines_source(a)  # the split sizes are known before fitting
    # NEEDED_SPLITS of a store's usable INRs, or of those the sines would be fitted into
    require_fit_splits(store, src, a.seed, a.test_fraction, NEEDED_SPLITS, "ssl_sines",
                       "fit more --n or a larger --test-fraction")
    started = time.time()  # logs older than this, left by an earlier run, go at the end
    out = results_dir(a.out, a.overwrite, files=() if a.resume else ("results.json", "tsne.png"),
                      folders=ENCODERS)  # with --resume, the files of the interrupted run, rewritten at the end
    if store is None:
        store = fit_store(a, src, out)
    info = store.info()
    # PSNR is against a peak of 1; against the wave's own peak a it is PSNR + 20 log10(a)
    psnr = store.metric("psnr")[:, 0]
    rel = psnr + 20 * np.log10(np.maximum(store.labels[:, 0], 1e-3))
    rel = rel[np.isfinite(rel)]
    print(f"# store {store.path}: {info['objects']} objects, median PSNR {info['psnr_median']:.1f} dB "
          f"(p5 {info['psnr_p5']:.1f}), relative to the amplitude {np.median(rel):.1f} dB (p5 "
          f"{np.percentile(rel, 5):.1f}); splits {info['splits']}", flush=True)
    arch = store.arch
    raw_train = WeightDataset(store, "train", normalize=None, cache=True, seed=a.seed)
    train = WeightDataset(store, "train", cache=True, view_policy="first")  # probes and t-SNE use view 0
    test = WeightDataset(store, "test", cache=True)
    transform = default_views_transform(arch, a.noise, a.dropout)
    normalize = make_normalizer(store)

    x_tr = store.read_flat(train.objects, view=0)  # the raw weights the probe reads: view 0, as the datasets serve
    x_te = store.read_flat(test.objects, view=0)
    mean, std = (t.numpy() for t in (train.mean, train.std))
    y_tr, y_te = train.labels.numpy(), test.labels.numpy()
    results = {"raw weights": {"r2": linear_probe((x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te)}}
    embeddings = {}
    for name in names:
        torch.manual_seed(a.seed)
        enc = build_encoder(name, arch, a)
        e_tr, _ = embed(enc, train)
        e_te, _ = embed(enc, test)
        results[f"{name} (untrained)"] = {"r2": linear_probe(e_tr, y_tr, e_te, y_te)}
        model = ContrastiveModel(enc, a.emb_dim)
        kind, kwargs = encoder_spec(name, a)
        # what load_run rebuilds the encoder from and --resume checks; its inputs are train's (view 0, normalised)
        describe = {"store": location(store.path), "store_fit": store.fit_settings, "model": kind,
                    "model_kwargs": kwargs, "out_features": a.emb_dim, "task": EMBEDDING, "views": repr(transform),
                    "normalize": train.normalize, "n_train": len(raw_train)}
        res = train_contrastive(model, raw_train, transform, normalize, epochs=a.epochs, lr=a.lr,
                                batch_size=a.batch_size, temperature=a.temperature, seed=a.seed, device=a.device,
                                log_dir=out / name, describe=describe, form=InputForm.of(train), resume=a.resume)
        e_tr, _ = embed(enc, train)
        e_te, _ = embed(enc, test)
        embeddings[name] = e_te
        h = res["history"]
        results[name] = {"r2": linear_probe(e_tr, y_tr, e_te, y_te), "loss_first": h[0]["loss"], "loss_last": h[-1]["loss"],
                         "train_time_s": res["train_time_s"], "params": sum(p.numel() for p in enc.parameters())}
        print(f"  {name:6s}: NT-Xent {h[0]['loss']:.3f} -> {h[-1]['loss']:.3f} in {len(h)} epochs "
              f"({res['train_time_s']:.0f} s{', reused' if res.get('reused') else ''}); probe R2 a "
              f"{results[name]['r2'][0]:.3f}, b {results[name]['r2'][1]:.3f}", flush=True)

    setting = {"store": location(store.path), "objects": info["objects"], "splits": info["splits"],
               **psnr_fields(info),
               "psnr_rel_amplitude_median": float(np.median(rel)), "psnr_rel_amplitude_p5": float(np.percentile(rel, 5)),
               **store.fit_summary(), "encoders": list(names), "epochs": a.epochs, "batch_size": a.batch_size,
               "lr": a.lr, "temperature": a.temperature, "emb_dim": a.emb_dim, "views": repr(transform),
               "dwsnet_hidden": a.hidden, "dwsnet_depth": a.depth, "seed": a.seed, "device": a.device,
               "small": bool(a.small), "versions": results_versions("sklearn")}
    doc = {"setting": setting, "results": results}
    if embeddings:  # the t-SNE coordinates go into results.json, so that the figure can be redrawn from it
        doc["tsne"] = {"labels": y_te.tolist(), "test_objects": test.objects.tolist(),
                       "xy": {name: tsne(e, a.seed).tolist() for name, e in embeddings.items()}}
    write_results(out, doc, started, ENCODERS)  # results.json; then stale logs, only in its own log folders
    print(format_table(doc))
    if embeddings:
        save_figure(make_figure(doc), out / "tsne.png")
    return doc


def _row_name(name: str) -> str:
    return name if name == "raw weights" or name.endswith("(untrained)") else f"{name}, NT-Xent"


def format_table(doc) -> str:
    """The markdown table of linear-probe R², from ``doc`` (results.json) alone."""
    s, res = doc["setting"], doc["results"]
    lines = [f"\nLinear-probe test R² (ridge fitted on {s['splits']['train']} train embeddings, scored on "
             f"{s['splits']['test']} test INRs); {s['objects']} INRs of a sin(b x), a, b ~ U(0, 10) "
             f"({s['n_points']} points, {s['fit_steps']} fit steps); NT-Xent {s['epochs']} epochs, batch "
             f"{s['batch_size']}; 1 seed ({s['seed']})",
             "\n| embedding | linear-probe R² (a) | linear-probe R² (b) |", "|---|---|---|"]
    for name, r in res.items():
        lines.append(f"| {_row_name(name)} | {r['r2'][0]:.3f} | {r['r2'][1]:.3f} |")
    return "\n".join(lines)


def tsne(e, seed: int):
    """2-D t-SNE coordinates of the embeddings ``e`` (one row per test INR), started from their
    first two principal components (from random points for a 1-D embedding, which has one)."""
    from sklearn.manifold import TSNE

    init = "pca" if e.shape[1] >= 2 else "random"
    return TSNE(2, perplexity=min(30.0, (len(e) - 1) / 3), init=init, random_state=seed).fit_transform(e)


def make_figure(doc):
    """t-SNE of the test embeddings, one row per encoder, coloured by a and by b; from ``doc`` (results.json) alone."""
    plt = pyplot()
    s, t, results = doc["setting"], doc["tsne"], doc["results"]
    labels = np.asarray(t["labels"])
    fig, axes = plt.subplots(len(t["xy"]), 2, figsize=(7, 3.2 * len(t["xy"]) + 0.5), squeeze=False)
    for row, (name, xy) in enumerate(t["xy"].items()):
        xy = np.asarray(xy)
        for col, lab in enumerate("ab"):
            ax = axes[row, col]
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels[:, col], s=6, cmap="viridis")
            fig.colorbar(sc, ax=ax, label=f"{lab} ({'amplitude' if lab == 'a' else 'frequency'})")
            ax.set_title(f"{name}, NT-Xent: coloured by {lab} (probe R² {results[name]['r2'][col]:.2f})", fontsize=8)
            ax.set_xlabel("t-SNE 1 (no units)", fontsize=7)
            ax.set_ylabel("t-SNE 2 (no units)", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"t-SNE of the {len(labels)} test embeddings; {s['objects']} sine INRs, "
                 f"{s['epochs']} NT-Xent epochs, seed {s['seed']}", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    return run_pipeline(parse_args, run, argv)


if __name__ == "__main__":
    run_script("ssl_sines.py", main)
