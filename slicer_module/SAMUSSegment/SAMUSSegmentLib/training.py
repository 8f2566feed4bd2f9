"""Readable training progress from MONAI Label's /train/ task record and the trainer's own statistics.

The task record (GET /train/) holds `status` (SUBMITTED, RUNNING, DONE, ERROR, STOPPED) and `details`, the
last lines the training process printed, shown as they are. The progress comes from the SAMUS trainer's
structured record, which MONAI Label serves as /info/'s `train_stats` (train_stats.json: `status`,
`epoch` (1-based, 0 before the first step), `total_epochs`, `step` and `steps` of the epoch).
"""
from __future__ import annotations

from .client import TRAINER

TEXTS = {"SUBMITTED": "Training queued", "RUNNING": "Training", "DONE": "Training finished",
         "ERROR": "Training failed", "STOPPED": "Training stopped"}


def _number(record: dict, key: str) -> float | None:
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def progress_of(stats: dict | None) -> float | None:
    """The fraction done (0..1) of a running trainer's record; None without a record of a running run."""
    if not isinstance(stats, dict) or str(stats.get("status", "")).upper() != "RUNNING":
        return None  # no record, or the record of an earlier run (this one has not written yet)
    epoch, total = _number(stats, "epoch"), _number(stats, "total_epochs")
    if epoch is None or not total or total <= 0:
        return None
    step, steps = _number(stats, "step"), _number(stats, "steps")
    done = epoch - 1 + step / steps if epoch >= 1 and step is not None and steps else epoch
    return min(1.0, max(0.0, done / total))


def describe_training(task: dict | None, stats: dict | None = None) -> tuple[str, float | None, str]:
    """Returns (status, fraction done or None, one line for the user) of the task record `task` and the
    trainer's record `stats` (None where the server has none)."""
    if not task:
        return "NONE", None, "No training has run on this server yet."
    status = str(task.get("status", "UNKNOWN")).upper()
    lines = [str(x) for x in (task.get("details") or []) if str(x).strip()]
    fraction = 1.0 if status == "DONE" else progress_of(stats) if status == "RUNNING" else None
    last = lines[-1].strip() if lines else ""
    if len(last) > 160:
        last = last[:157] + "..."
    text = TEXTS.get(status, f"Training {status.lower()}")
    if fraction is not None and status == "RUNNING":
        text += f" ({fraction:.0%})"
    return status, fraction, f"{text}: {last}" if last else text


def read_training(client, trainer: str = TRAINER) -> tuple[str, float | None, str]:
    """describe_training of the server's latest training task; the trainer's record is read while it runs."""
    task = client.train_status()
    running = bool(task) and str(task.get("status", "")).upper() == "RUNNING"
    return describe_training(task, client.train_stats(trainer) if running else None)
