"""Readable training progress from MONAI Label's /train/ task record."""
from __future__ import annotations

import re

_EPOCH = re.compile(r"epoch\D{0,3}(\d+)\s*(?:/|of)\s*(\d+)", re.IGNORECASE)


def describe_training(task: dict | None) -> tuple[str, float | None, str]:
    """Returns (status, fraction done or None, one line for the user).

    The task record holds `status` (SUBMITTED, RUNNING, DONE, ERROR, STOPPED) and `details`,
    the last lines the training process printed; the newest "epoch n/m" gives the progress.
    """
    if not task:
        return "NONE", None, "No training has run on this server yet."
    status = str(task.get("status", "UNKNOWN")).upper()
    lines = [str(x) for x in (task.get("details") or []) if str(x).strip()]
    fraction = None
    for line in reversed(lines):
        match = _EPOCH.search(line)
        if match and int(match.group(2)) > 0:
            fraction = min(1.0, int(match.group(1)) / int(match.group(2)))
            break
    if status == "DONE":
        fraction = 1.0
    last = lines[-1].strip() if lines else ""
    if len(last) > 160:
        last = last[:157] + "..."
    text = {"SUBMITTED": "Training queued", "RUNNING": "Training", "DONE": "Training finished",
            "ERROR": "Training failed", "STOPPED": "Training stopped"}.get(status, f"Training {status.lower()}")
    if fraction is not None and status == "RUNNING":
        text += f" ({fraction:.0%})"
    return status, fraction, f"{text}: {last}" if last else text
