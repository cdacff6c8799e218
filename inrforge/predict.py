"""A finished training run applied to other INRs: rebuild its model, load its best weights, and put
new INRs through what its inputs went through.

A run folder (``inrforge train --out RUN``, or :func:`inrforge.train.fit_model`'s ``log_dir``)
holds ``best.pt`` (the model's state dict), ``result.json`` (what was trained: the model, its
arguments, the task and number of outputs) and ``inputs.pt``, the :class:`InputForm`: the INR
architecture and the map every INR went through before the model,

    theta  ->  c(theta)  ->  (flatten(c(theta)) - mean) / std,

``c`` the run's canonical form (alignment by weight matching to one reference INR,
:class:`~inrforge.augment.AlignTo`, or none) and ``(mean, std)`` the train split's normalisation
statistics (or none).  Both are functions of one INR alone, and the run's own test INRs, read in
the batches of its evaluation, get the very outputs it scored (in other batch sizes the model's
matrix products may round differently, in the last bits).  The random augmentations are part of
training only, never of this map.

A regression run may have learned standardised targets ``(y - m) / s`` (``result.json`` then
records ``target_scale`` = ``{"mean": m, "std": s}``, one entry per target): its outputs are put
back into the targets' own units, ``out * s + m``, so that predictions and their MSE are in the units
of the store's labels.  A contrastive encoder's run (task ``"embedding"``) predicts embeddings,
which are not scored.

A store of INRs with the run's widths can be read however it was fitted (the models are built for
widths alone); other differences of architecture (family, w0, output offset, Fourier features)
give a warning, since the weights then describe other functions than the model learned from.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .arch import INRSpec
from .augment import AlignTo
from .checks import check_count, check_device
from .data import WeightDataset, normalized
from .errors import InrforgeError, first_line
from .models import build_model
from .optim import correct
from .run_folder import INPUTS_FILE, load_best, read_result
from .store import INRStore, open_store
from .weights import Weights

INPUTS_FORMAT = 1
SPLITS = ("train", "val", "test")
EMBEDDING = "embedding"  # the task of an encoder's run (ssl_sines.py's): its outputs are embeddings


@dataclass(frozen=True, eq=False)
class InputForm:
    """What a run did to every INR before its model: the canonical form ``align`` (or None), then
    ``(flat - mean) / std`` (or nothing when ``mean`` is None); ``arch`` is the run's INR
    architecture and ``normalize`` the name of its statistics (``"symmetric"``, ``"entry"``, ...)."""

    arch: INRSpec
    normalize: str | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    align: AlignTo | None = None

    @classmethod
    def of(cls, dataset: WeightDataset) -> "InputForm | None":
        """The form of a run's train ``dataset``, or None when its canonical form is not an
        :class:`~inrforge.augment.AlignTo` (a function of the user's own, which cannot be saved)."""
        canon = dataset.canonical
        if canon is not None and not isinstance(canon, AlignTo):
            return None
        stats = (dataset.mean, dataset.std) if dataset.normalize is not None else (None, None)
        return cls(dataset.arch, dataset.normalize, *stats, canon)

    def __call__(self, weights: Weights) -> Weights:
        """``weights`` (a batch with this form's widths) put through the form."""
        if not isinstance(weights, Weights):
            raise InrforgeError(f"an input form takes a Weights batch, got {type(weights).__name__}")
        self.arch.require_widths(weights.arch, "the run's")
        if self.align is not None:  # with the reference taken as one of the batch's arch (same widths)
            weights = self.align_for(weights.arch)(weights)
        if self.mean is None:
            return weights
        return normalized(weights, self.mean, self.std)

    def align_for(self, arch: INRSpec) -> AlignTo | None:
        """The alignment for INRs of ``arch`` (the same widths): weight matching compares weights
        alone, so the reference is taken as one of ``arch``'s."""
        a = self.align
        if a is None or a.reference.arch == arch:
            return a
        return AlignTo(Weights.from_flat(a.reference.flatten(), arch), max_iter=a.max_iter, seed=a.seed)

    # ----- files --------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the form to ``path`` (torch's format, tensors and plain values only)."""
        a = self.align
        torch.save({"format": INPUTS_FORMAT, "arch": self.arch.to_dict(), "normalize": self.normalize,
                    "mean": self.mean, "std": self.std,
                    "align": None if a is None else {"reference": a.reference.flatten()[0].detach().cpu(),
                                                     "max_iter": a.max_iter, "seed": a.seed}}, path)

    @classmethod
    def load(cls, path) -> "InputForm":
        """The form :meth:`save` wrote to ``path``; anything else is a one-line :class:`InrforgeError`."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:  # unpickling errors come in many types
            why = f"{type(e).__name__}: {first_line(e)}"
            raise InrforgeError(f"{path}: not an inrforge input form ({why})"[:300]) from None
        if not isinstance(d, dict) or d.get("format") != INPUTS_FORMAT:
            raise InrforgeError(f"{path}: not an inrforge input form (format {INPUTS_FORMAT})")
        arch = INRSpec.from_dict(d.get("arch"))
        p = arch.param_count
        mean, std, align = d.get("mean"), d.get("std"), d.get("align")
        if (mean is None) != (std is None) or any(
                t is not None and (not isinstance(t, torch.Tensor) or t.shape != (p,)) for t in (mean, std)):
            raise InrforgeError(f"{path}: damaged input form (its statistics are not two vectors of {p} entries)")
        if align is not None:
            ref = align.get("reference") if isinstance(align, dict) else None
            if not isinstance(ref, torch.Tensor) or ref.shape != (p,):
                raise InrforgeError(f"{path}: damaged input form (its alignment reference is not one INR of {p} entries)")
            align = AlignTo(Weights.from_flat(ref[None].float(), arch), max_iter=align.get("max_iter", 100),
                            seed=align.get("seed", 0))
        return cls(arch, d.get("normalize"), mean, std, align)

    def describe(self) -> str:
        parts = []
        if self.align is not None:
            parts.append("aligned to a reference INR")
        parts.append(f"{self.normalize} normalisation" if self.mean is not None else "no normalisation")
        return ", ".join(parts)


@dataclass
class Predictions:
    """A trained run's outputs for the INRs of a store: ``outputs`` (n, out) float32 for the
    ``objects`` (ids in the store, ascending), one view of each, with its ``split`` name and stored
    ``labels``; ``skipped`` counts objects whose view is not usable (unfitted or failed)."""

    task: str
    objects: np.ndarray
    splits: list[str]
    outputs: torch.Tensor
    labels: torch.Tensor
    skipped: int
    same_labels: bool = True  # False: the store names its classes or targets otherwise than the run's store

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def predicted(self) -> torch.Tensor:
        """The predicted class of each INR (classification), or the outputs (regression, embedding)."""
        return self.outputs.argmax(1) if self.task == "classification" else self.outputs

    def score(self) -> dict | None:
        """``{"acc": ...}`` (an output that is not finite counts as wrong) or ``{"mse": ...}`` over
        all INRs, as a run's evaluation computes them; None when the labels are not the task's
        (class ids outside the run's classes, or another number of targets, or labels that the store
        names otherwise than the run's training store: other classes), for embeddings (an
        encoder's outputs: nothing to score them against) or when there is no INR."""
        y, out = self.labels, self.outputs
        if len(self) == 0 or self.task == EMBEDDING or not self.same_labels:
            return None
        if self.task == "classification":
            if y.dtype.is_floating_point or y.ndim != 1 or int(y.min()) < 0 or int(y.max()) >= out.shape[1]:
                return None
            return {"acc": float(correct(out, y).double().mean())}
        if not y.dtype.is_floating_point or y.reshape(len(y), -1).shape[1] != out.shape[1]:
            return None
        return {"mse": float(torch.nn.functional.mse_loss(out.double(), y.double().reshape(out.shape)))}

    def rows(self) -> tuple[list[str], list[list]]:
        """CSV header and rows: object, split, label(s), prediction(s) (``embedding_k`` for an
        encoder), and for classification the class probabilities (softmax of the outputs)."""
        y = self.labels if self.labels.ndim == 2 else self.labels.reshape(len(self), 1)  # (n, targets); n may be 0
        n_y, n_out = y.shape[1], self.outputs.shape[1]
        label_cols = ["label"] if n_y == 1 else [f"label_{k}" for k in range(n_y)]
        if self.task == "classification":
            head = ["object", "split", *label_cols, "predicted", *(f"p_{k}" for k in range(n_out))]
            probs = torch.softmax(self.outputs.double(), 1)
            tail = [[int(c), *(float(f"{p:.6g}") for p in row)] for c, row in zip(self.predicted.tolist(), probs.tolist())]
        else:
            name = "embedding" if self.task == EMBEDDING else "predicted"
            head = ["object", "split", *label_cols, *([name] if n_out == 1 else [f"{name}_{k}" for k in range(n_out)])]
            tail = self.outputs.tolist()
        labels = y.tolist()
        return head, [[int(o), s, *lab, *t] for o, s, lab, t in zip(self.objects.tolist(), self.splits, labels, tail)]


@dataclass
class TrainedRun:
    """A finished run read back from its folder: ``model`` (in eval mode, on ``device``), its
    :class:`InputForm` ``inputs``, the ``task`` and ``record`` (its ``result.json``)."""

    path: str
    model: torch.nn.Module
    inputs: InputForm
    task: str
    record: dict
    device: torch.device

    @property
    def arch(self) -> INRSpec:
        return self.inputs.arch

    @property
    def target_scale(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean, std)`` of the standardised targets a regression run learned (its outputs are
        mapped back with ``out * std + mean``), or None."""
        scale = self.record.get("target_scale")
        if scale is None:
            return None
        return torch.tensor(scale["mean"], dtype=torch.float32), torch.tensor(scale["std"], dtype=torch.float32)

    @torch.no_grad()
    def predict(self, weights: Weights, batch_size: int = 256) -> torch.Tensor:
        """The model's outputs (B, out) float32 on the CPU for a batch of INRs as stored (the input
        form is applied here), ``batch_size`` at a time; a run that learned standardised targets
        has them put back into the targets' units (:attr:`target_scale`).  INRs of another
        architecture with the run's widths are read as the run's (see :meth:`check_store`), without
        a warning."""
        batch_size = check_count("batch size", batch_size)
        outs = [self.model(self.inputs(weights[lo: lo + batch_size]).to(self.device)).float().cpu()
                for lo in range(0, len(weights), batch_size)]
        out = torch.cat(outs) if outs else torch.empty(0, self.record["out_features"])
        scale = self.target_scale
        return out if scale is None else out * scale[1] + scale[0]

    @torch.no_grad()
    def predict_store(self, store, split: str = "all", view: int = 0, batch_size: int = 256,
                      block: int = 4096) -> Predictions:
        """The outputs for every object of ``split`` (one of train/val/test, or ``all``) of ``store``
        whose ``view`` is usable (its shard finished, its fit not failed; view 0 is the one a run's
        evaluation scores), put through the run's input form and model ``batch_size`` at a time,
        reading ``block`` objects at a time."""
        store = store if isinstance(store, INRStore) else open_store(store)
        if split != "all" and split not in SPLITS:
            raise InrforgeError(f"unknown split {split!r}; choose all, {', '.join(SPLITS)}")
        batch_size, block = check_count("batch size", batch_size), check_count("block", block)
        view = store.check_view(view)
        same_labels = self.check_store(store)
        names = SPLITS if split == "all" else (split,)
        ids = [store.split(name) for name in names]
        objects = np.concatenate(ids)
        splits = np.repeat(np.arange(len(names)), [len(i) for i in ids])
        order = np.argsort(objects, kind="stable")
        objects, splits = objects[order], splits[order]
        usable = store.usable()[objects, view]
        objects, splits = objects[usable], splits[usable]
        outs = [self.predict(Weights.from_flat(torch.from_numpy(store.read_flat(objects[lo: lo + block], view=view)),
                                               store.arch), batch_size)
                for lo in range(0, len(objects), block)]
        out = torch.cat(outs) if outs else torch.empty(0, self.record["out_features"])
        labels = torch.from_numpy(np.ascontiguousarray(store.labels[objects]))
        return Predictions(self.task, objects, [names[k] for k in splits], out, labels, int((~usable).sum()),
                           same_labels)

    def check_store(self, store: INRStore) -> bool:
        """An error unless ``store``'s INRs have the run's widths; a warning when they differ
        otherwise.  Returns whether the store's labels mean what the run's did: False, with a
        warning, when both stores name their classes (or targets) and the names differ (a folder of
        cats and dogs is not scored against digit classes)."""
        if store.arch.widths != self.arch.widths:
            raise InrforgeError(f"{store.path} holds INRs of widths {list(store.arch.widths)}, but {self.path} was "
                                f"trained on widths {list(self.arch.widths)}")
        if store.arch != self.arch:
            mine, theirs = self.arch.to_dict(), store.arch.to_dict()
            diff = ", ".join(f"{k} {theirs[k]!r} instead of {mine[k]!r}" for k in mine if mine[k] != theirs[k])
            warnings.warn(f"{store.path} holds INRs with another architecture than {self.path} was trained on "
                          f"({diff}): the same widths, other functions", stacklevel=4)  # past predict_store's no_grad wrapper
        mine, theirs = self.record.get("label_names"), store.source.get("label_names")
        if mine is None or theirs is None or list(mine) == list(theirs):  # runs before 0.8.0 recorded none
            return True
        warnings.warn(f"{store.path} names its labels {_names(theirs)}, but {self.path} was trained on "
                      f"{_names(mine)}: its predictions are not scored", stacklevel=4)
        return False


def _names(names: list) -> str:
    """A short list of label names for a message."""
    return "[" + ", ".join(map(str, names[:4])) + (f", ... ({len(names)})" if len(names) > 4 else "") + "]"


def load_run(path, device: str = "cpu") -> TrainedRun:
    """The finished run in the folder ``path`` (``inrforge train --out``), its model on ``device``.

    A folder without ``result.json`` holds no finished run; one whose ``result.json`` does not say
    how its model was built (a run of your own :func:`~inrforge.train.fit_model`, or of a pipeline
    with its own loop) or that has no ``inputs.pt`` (a run of inrforge before 0.7.0, or with a
    canonical form other than alignment) cannot be rebuilt: each is a one-line error."""
    dev = check_device(device)
    folder, record = read_result(path)
    if "mapper" in record:
        raise InrforgeError(f"{path} holds a domain-adaptation mapper (weights to weights), not a model of INRs: "
                            f"read it with inrforge.adapt.load_mapper")
    if not {"model", "model_kwargs", "task", "out_features"} <= set(record):
        raise InrforgeError(f"{path}/result.json does not say how its model was built (a run of inrforge train "
                            f"or of prepare_training records it, from inrforge 0.7.0 on)")
    try:
        inputs = InputForm.load(folder / INPUTS_FILE)
    except FileNotFoundError:
        raise InrforgeError(f"{path} has no {INPUTS_FILE} (trained before inrforge 0.7.0, or with a canonical form "
                            f"other than alignment): what its inputs went through is unknown") from None
    _check_target_scale(record, path)
    model = build_model(record["model"], inputs.arch, record["out_features"], **record["model_kwargs"])
    load_best(folder, model, path)
    model.to(dev).eval()
    return TrainedRun(str(path), model, inputs, record["task"], record, dev)


def _check_target_scale(record: dict, path) -> None:
    """A one-line error unless ``record``'s ``target_scale`` is absent, or a regression run's
    ``{"mean", "std"}`` with one finite number per output (the stds positive)."""
    scale = record.get("target_scale")
    if scale is None:
        return
    n = record["out_features"]

    def numbers(key, positive):
        v = scale.get(key) if isinstance(scale, dict) else None
        return (isinstance(v, list) and len(v) == n and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and (x > 0 or not positive)
            for x in v))

    if record["task"] != "regression" or not (numbers("mean", False) and numbers("std", True)):
        raise InrforgeError(f"{path}/result.json has a damaged target_scale (a regression run's mean and positive "
                            f"std, {n} of each)")


def describe_score(pred: Predictions) -> str:
    """``accuracy 32.50 %`` or ``MSE 0.0123`` of ``pred``; why not, without a score."""
    score = pred.score()
    if len(pred) == 0:
        return "nothing to score"
    if pred.task == EMBEDDING:
        return f"{pred.outputs.shape[1]}-d embeddings (not scored)"
    if not pred.same_labels:
        return "not scored (the store's classes are not the run's)"
    if score is None:
        return "not scored (the store's labels are not this run's kind)"
    if "acc" in score:
        return f"accuracy {100 * score['acc']:.2f} %"
    return f"MSE {score['mse']:.4g}" if math.isfinite(score["mse"]) else "MSE not finite"
