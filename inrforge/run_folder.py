"""The folder a training run writes: what is trained, its metrics, and at the end its model.

A run folder (``inrforge train --out``, the pipelines' ``OUT/<model>/...``, the contrastive
encoders of ``ssl_sines.py``) holds :data:`LOG_FILES`, written in this order:

* ``run.json`` first: the run's record (what is trained and how; :func:`begin`), so that an
  interrupted run's logs still say what they are the logs of;
* ``metrics.jsonl``, one JSON row per finished epoch (:func:`log_epoch`), and ``checkpoint.pt``
  where the run keeps one (:mod:`inrforge.checkpoint`);
* at the end (:func:`finish`) ``metrics.csv``, ``best.pt`` (the model's state dict, CPU tensors),
  ``inputs.pt`` (the :class:`~inrforge.predict.InputForm` of what the model's inputs went through)
  and last ``result.json``, which marks a finished run: :func:`~inrforge.predict.load_run` (and
  :func:`~inrforge.adapt.load_mapper`, for a mapper's run) reads the folder back
  (:func:`read_result`, :func:`load_best`), and a resumed pipeline reuses it
  (:func:`~inrforge.checkpoint.finished_result`).

docs/format.md documents each file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from .checkpoint import CHECKPOINT_FILE, finished_result
from .errors import InrforgeError, first_line
from .files import local_path, output_path, write_json
from .fitjob import library_versions

INPUTS_FILE = "inputs.pt"
LOG_FILES = ("run.json", "result.json", "best.pt", INPUTS_FILE, "metrics.csv", "metrics.jsonl", CHECKPOINT_FILE)


def record(describe: dict | None, **settings) -> dict:
    """A run's record, what decides its numbers (``run.json``, and ``result.json`` with the scores):
    ``describe`` (what it learns from, how its model is built), its ``settings``, torch's thread
    count and the library versions (which a resume may change: :data:`~inrforge.checkpoint.UNCHECKED`)."""
    return {**(describe or {}), **settings, "threads": torch.get_num_threads(), "versions": library_versions()}


def reuse(log_dir, run: dict, model: torch.nn.Module) -> dict | None:
    """:func:`finished`'s result of the finished run of ``run`` in ``log_dir``, its ``best.pt``
    loaded into ``model``; None when none finished there."""
    folder, done = finished(log_dir, run)
    if done is not None:
        load_best(folder, model)
    return done


def finished(log_dir, run: dict) -> tuple[Path, dict | None]:
    """A resume's first look: ``(folder, result)``, ``result`` the finished run of the record ``run``
    in ``log_dir`` (:func:`~inrforge.checkpoint.finished_result`: its ``result.json`` and history,
    ``reused`` True; another record's is an :class:`InrforgeError`) or None when none finished
    there.  A resume without a ``log_dir`` is an :class:`InrforgeError`."""
    if not log_dir:
        raise InrforgeError("resume needs the log_dir of the run to continue")
    folder = Path(output_path(log_dir, "log_dir"))
    return folder, finished_result(folder, run, LOG_FILES)


def begin(log_dir, run: dict | None = None, history: list | None = None) -> Path | None:
    """``log_dir`` made ready for a run's :data:`LOG_FILES`, or None without one: an earlier run's
    files there are deleted (a run that stops early must not sit beside them; nothing else in the
    folder is touched), ``metrics.jsonl`` starts empty and ``run.json`` holds the record ``run``.
    ``history``: a run resumed from its checkpoint, whose files stay; its ``metrics.jsonl`` is
    rewritten with the checkpoint's rows (an epoch finished after the checkpoint runs again)."""
    if not log_dir:
        return None
    log_dir = Path(output_path(log_dir, "log_dir"))
    if (log_dir / "zarr.json").exists():
        raise InrforgeError(f"log_dir {log_dir} is a Zarr store; write the logs to a folder of their own")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        if history is not None:
            (log_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
            return log_dir
        for name in LOG_FILES:
            if (log_dir / name).is_file():
                (log_dir / name).unlink()
        (log_dir / "metrics.jsonl").write_text("")
    except OSError as e:
        raise InrforgeError(f"cannot write the logs to {log_dir}: {e.strerror or e}") from None
    if run is not None:
        write_json(log_dir / "run.json", run)
    return log_dir


def log_epoch(log_dir: Path | None, row: dict) -> None:
    """Append one epoch's metrics ``row`` to ``log_dir/metrics.jsonl`` (nothing without a folder)."""
    if log_dir:
        with open(log_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def finish(log_dir: Path | None, history: list, model: torch.nn.Module, form, result: dict) -> None:
    """End a run in ``log_dir`` (nothing without one): ``metrics.csv`` of ``history``, ``best.pt``
    (``model``'s state dict, on the CPU: it loads anywhere), ``inputs.pt`` (``form.save``; None: a
    form that cannot be saved, and no file), then ``result.json`` (``result`` without its
    ``history``); the run's checkpoint, no more needed, is deleted."""
    if not log_dir:
        return
    keys = sorted({k for r in history for k in r}, key=lambda k: (k != "epoch", k))
    with open(log_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, log_dir / "best.pt")
    if form is not None:
        form.save(log_dir / INPUTS_FILE)
    write_json(log_dir / "result.json", {k: v for k, v in result.items() if k != "history"})
    (log_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


def read_result(path, what: str = "inrforge train --out") -> tuple[Path, dict]:
    """``(folder, record)``: the folder ``path`` and the ``result.json`` of the finished run in it;
    a one-line :class:`InrforgeError` for a path that is not a folder, a Zarr store (a store given
    where a run was meant), a folder without ``result.json`` (no finished run: ``what`` names who
    writes one) or an unreadable one."""
    folder = Path(local_path(path))
    if not folder.is_dir():
        raise InrforgeError(f"{path}: no such run folder" if not folder.exists() else f"{path} is not a run folder")
    if (folder / "zarr.json").exists():
        raise InrforgeError(f"{path} is a Zarr store, not a run folder: give the run first, then the store")
    try:
        record = json.loads((folder / "result.json").read_text())
    except FileNotFoundError:
        raise InrforgeError(f"{path} holds no finished run (no result.json); pass the folder a finished "
                            f"{what} wrote") from None
    except (OSError, ValueError) as e:
        raise InrforgeError(f"{path}/result.json is unreadable: {e}"[:300]) from None
    if not isinstance(record, dict):
        raise InrforgeError(f"{path}/result.json is not a run's result")
    return folder, record


def load_best(folder: Path, model: torch.nn.Module, path=None) -> None:
    """Load the run's ``best.pt`` in ``folder`` into ``model``; a missing file or one that does not
    hold ``model``'s weights is a one-line :class:`InrforgeError` (``path``: the folder as given)."""
    path = folder if path is None else path
    try:
        model.load_state_dict(torch.load(folder / "best.pt", map_location="cpu", weights_only=True))
    except FileNotFoundError:
        raise InrforgeError(f"{path} has no best.pt: its model's weights are gone") from None
    except Exception as e:  # a damaged file, or weights of another model
        why = f"{type(e).__name__}: {first_line(e)}"
        raise InrforgeError(f"{path}/best.pt does not hold this run's model ({why})"[:300]) from None
