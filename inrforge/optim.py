"""What the training loops share (:mod:`inrforge.train`, :mod:`inrforge.adapt`,
:mod:`inrforge.contrastive`): the learning-rate schedule, the optimizer step with its gradient
clipping, the keeper of the best checkpoint, and what counts as a correct classification.

Each loop builds its own ``torch.optim.AdamW(params, lr=..., weight_decay=...)`` (one call, no
scaffolding to share), then :func:`warmup_cosine` on it, calls :func:`optimizer_step` once per
batch, and (train, adapt) offers each epoch's val score to a :class:`BestKeeper`.
"""

from __future__ import annotations

import copy
import math

import torch

from .checks import check_count

__all__ = ["warmup_cosine", "optimizer_step", "BestKeeper", "correct"]


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each row of logits ``out`` puts its top class on the label ``y`` (class
    ids, or soft labels' top class); a row that is not finite counts as wrong (its argmax means nothing)."""
    return (out.argmax(1) == (y.argmax(1) if y.ndim == 2 else y)) & torch.isfinite(out).all(1)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule (call its ``step()`` after every optimizer step): linear warm-up, then
    cosine decay to 0.  At step ``s`` (0 for the first) the learning rate is ``lr * f(s)`` with::

        f(s) = (s + 1) / w                                   if s < w
        f(s) = (1 + cos(pi * min(1, (s - w) / max(1, T - w)))) / 2   otherwise

    ``w`` = ``warmup_steps``, ``T`` = ``total_steps``: the warm-up climbs ``1/w, 2/w, ..., 1``
    over its ``w`` steps, then the factor falls from 1 at step ``w`` to 0 at step ``T`` and stays
    there.  ``warmup_steps=0`` is a cosine decay from the first step.
    """
    warmup_steps = check_count("warmup_steps", warmup_steps, minimum=0)
    total_steps = check_count("total_steps", total_steps, minimum=0)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, parameters,
                   grad_clip: float | None) -> None:
    """One update from ``loss``: zero the gradients, back-propagate, clip their total norm to
    ``grad_clip`` (``None`` or 0: no clipping), step the optimizer, then the scheduler."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    scheduler.step()


class BestKeeper:
    """The best-scoring state of a model over a run's epochs, kept in memory.

    :meth:`offer` each epoch's score: if it beats the best so far (higher, or lower with
    ``higher_better=False``), a deep copy of the model's ``state_dict()`` is kept with the score
    and the epoch.  A score that is not a finite number (NaN, inf) is never the best.  ``since``
    counts the offers since the last improvement (what early stopping's patience compares to).
    :meth:`keep` keeps the current state whatever its score (a run with nothing to score keeps its
    last epoch); :meth:`restore` loads the kept state back.
    """

    def __init__(self, higher_better: bool = True):
        self.higher_better = bool(higher_better)
        self.score: float | None = None
        self.state: dict | None = None
        self.epoch = -1
        self.since = 0

    def offer(self, score: float, model: torch.nn.Module, epoch: int) -> bool:
        """Keep ``model``'s state if ``score`` is finite and better than the best; whether it was."""
        improved = math.isfinite(score) and (
            self.score is None or (score > self.score if self.higher_better else score < self.score))
        if improved:
            self.score, self.epoch, self.since = score, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.since += 1
        return improved

    def keep(self, model: torch.nn.Module, epoch: int) -> None:
        """Keep ``model``'s state as that of ``epoch``, without a score."""
        self.epoch = epoch
        self.state = copy.deepcopy(model.state_dict())

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the kept state into ``model``; whether there was one."""
        if self.state is None:
            return False
        model.load_state_dict(self.state)
        return True
