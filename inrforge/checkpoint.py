"""A training run's checkpoint: what ``inrforge train --resume`` continues an interrupted run from.

At the end of every finished epoch :func:`~inrforge.train.fit_model` (with ``checkpoint=True``)
replaces ``checkpoint.pt`` in the run's folder, whole or not at all: the model, the AdamW state,
the learning-rate schedule's position, the best epoch kept so far, the metrics history, torch's
global random state, and the run's record (``run.json``'s: the store, the model, the
augmentations, the config).  Everything else a run draws is a pure function of (seed, epoch):
each epoch's views, its shuffle and every batch's augmentations.  So a run resumed from the
checkpoint of epoch ``e`` computes epochs ``e + 1, ...`` exactly as the uninterrupted run would
have, with the same thread count and software: its ``best.pt`` is the same bit for bit (tested
with a real SIGKILL).  The finished run deletes the checkpoint; resuming it again reuses its
``result.json`` (:func:`finished_result`), so that a pipeline resumed after an interruption trains
only the runs that had not finished.

A checkpoint is only ever resumed by the same run: a record that differs in anything but torch's
thread count or the library versions is refused, naming the difference.  Those two change the last
bits of every update, so a resume under others is allowed, warned about and recorded in
``result.json`` (``resumed``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .checks import record_differences
from .errors import InrforgeError
from .files import write_file
from .optim import BestKeeper

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
UNCHECKED = ("threads", "versions")  # a resume may change these (recorded), not the rest of the record


def save_checkpoint(folder: Path, epoch: int, run: dict, model, optimizer, scheduler, best: BestKeeper,
                    history: list) -> None:
    """Replace ``folder/checkpoint.pt`` with the state at the end of ``epoch`` (written whole or not at all)."""
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "run": json.dumps(run, sort_keys=True),
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "best": {"score": best.score, "state": best.state, "epoch": best.epoch, "since": best.since},
             "history": json.dumps(history), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
    write_file(folder / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp), overwrite=True)


def load_checkpoint(folder: Path, run: dict) -> dict | None:
    """The checkpoint in ``folder``, after checking it is ``run``'s; None without one (the run
    stopped before its first checkpoint, and starts afresh, after checking that the ``run.json``
    it may have left is ``run``'s).  A damaged or unreadable record, or another run's, is an
    :class:`InrforgeError`."""
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        if (folder / "run.json").exists():
            try:
                earlier = json.loads((folder / "run.json").read_text())
            except (OSError, ValueError):
                earlier = None
            if not isinstance(earlier, dict):
                raise InrforgeError(f"{folder}/run.json is unreadable: pass --overwrite to start the run afresh")
            check_same_run(earlier, run, folder / "run.json")
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        ok = isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT
        saved = json.loads(ck["run"]) if ok else None
    except Exception as e:  # unpickling and JSON errors come in many types
        raise InrforgeError(f"{path} is damaged ({type(e).__name__}); start the run again with --overwrite") from None
    if not ok:
        raise InrforgeError(f"{path} is not an inrforge training checkpoint (format {CHECKPOINT_FORMAT})")
    check_same_run(saved, run, path)
    changed = _changed(saved, run)
    if changed:
        warnings.warn(f"resuming with other {' and '.join(changed)} than the run began with: from here its numbers "
                      f"differ in the last bits from an uninterrupted run's (recorded in result.json)", stacklevel=4)
    ck["run"] = saved
    return ck


def finished_result(folder: Path, run: dict, files) -> dict | None:
    """The result of the finished run in ``folder`` (its ``result.json``, with ``history`` read back
    from ``metrics.jsonl`` and ``reused`` True), or None when it holds none; a finished run of
    another record is an :class:`InrforgeError`.  The times of its ``files`` (the names a run
    writes) are set to now: they are this run's results (a pipeline's clean-up removes only log
    folders left from before it started); nothing else in the folder is touched."""
    path = folder / "result.json"
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise InrforgeError(f"{folder} holds a damaged finished run ({e}); pass --overwrite to train it again") from None
    if not isinstance(saved, dict):
        raise InrforgeError(f"{path} is not a run's result; pass --overwrite to train it again")
    check_same_run({k: v for k, v in saved.items() if k in run}, run, path)  # the record, not the scores
    changed = _changed(saved, run)
    if changed:
        warnings.warn(f"{folder}: reusing a finished run made with other {' and '.join(changed)}", stacklevel=4)
    for name in files:
        f = folder / name
        if f.is_file() and not f.is_symlink():
            os.utime(f)
    return {**saved, "history": history, "reused": True}


def _changed(saved: dict, run: dict) -> list[str]:
    """The :data:`UNCHECKED` entries of ``run`` that differ from the ``saved`` record's."""
    return [k for k in UNCHECKED if saved.get(k) != json.loads(json.dumps(run.get(k)))]


def check_same_run(saved: dict, run: dict, path) -> None:
    """An :class:`InrforgeError` naming the differences unless the record ``saved`` in ``path`` is
    ``run``'s, apart from :data:`UNCHECKED` and the record of earlier resumes."""
    ignore = (*UNCHECKED, "resumed")
    now = json.loads(json.dumps(run, sort_keys=True))  # tuples as lists, as the saved record has them
    diff = record_differences({k: v for k, v in saved.items() if k not in ignore},
                              {k: v for k, v in now.items() if k not in ignore})
    kind = [d for d in diff if d.split(":")[0] in ("task", "model")]  # another kind of run: said first
    diff = kind + [d for d in diff if d not in kind]
    if diff:
        raise InrforgeError(f"{path} is another run's ({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); "
                            f"resume with the same arguments, or pass --overwrite to start afresh")


def restore_checkpoint(ck: dict, model, optimizer, scheduler, best: BestKeeper) -> tuple[int, list]:
    """Load ``ck`` into the model, optimizer, schedule, best keeper and torch's random state;
    returns the first epoch still to run and the history so far."""
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    b = ck["best"]
    best.score, best.state, best.epoch, best.since = b["score"], b["state"], b["epoch"], b["since"]
    torch.set_rng_state(ck["rng"])
    if ck["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ck["cuda_rng"])
    return ck["epoch"] + 1, json.loads(ck["history"])
