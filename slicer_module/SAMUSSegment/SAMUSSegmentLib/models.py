"""The server's model choices ("accurate", "fast", ...) as offered in GET /info, and which one to use.

MONAI Label shows an infer task's options in `info["models"][task]["config"]`; the SAMUS app lists the
model choices of a task there under "variant", its default for that task first (e.g. clicks
["accurate", "fast"], propagation ["fast", "accurate"]). A request picks one with the `variant` param
(`model` is MONAI Label's own name for the infer task); a request without it gets the default. Servers
from before the choice existed have no "variant" key: then the module hides its selector and sends no
`variant` param, so it keeps working with them.
"""
from __future__ import annotations

MODEL_PARAM = "variant"
# Rough seconds per frame of each choice on the server's first pass over a frame (encoder + decoder),
# only to tell the user what a long propagation with the accurate model would cost (README, app section).
SECONDS_PER_FRAME = {"accurate": 0.7, "fast": 0.06}
LONG_PROPAGATION_FRAMES = 50  # beyond this many frames, suggest the fast model for propagation


def model_choices(info: dict, task: str) -> list[str]:
    """The task's model choices, default first; [] when the server offers none (older servers)."""
    model = ((info or {}).get("models") or {}).get(task) or {}
    config = model.get("config") if isinstance(model, dict) else None
    choices = config.get(MODEL_PARAM) if isinstance(config, dict) else None
    if isinstance(choices, str):
        choices = [choices]
    if not isinstance(choices, (list, tuple)):
        return []
    out = []
    for choice in choices:
        if isinstance(choice, str) and choice and choice not in out:
            out.append(choice)
    return out


def choose(choices: list[str], remembered: str | None) -> str | None:
    """The remembered choice when the server still offers it, else the server's default; None without choices."""
    if not choices:
        return None
    return remembered if remembered in choices else choices[0]


def with_model(params: dict, choice: str | None) -> dict:
    """Request params with `model` set to the choice, or left out when there is no choice to make."""
    out = dict(params)
    if choice:
        out[MODEL_PARAM] = choice
    else:
        out.pop(MODEL_PARAM, None)
    return out


def propagation_hint(choice: str | None, choices: list[str], n_frames: int) -> str:
    """A note for the status line when a long propagation runs with a slow model ('' otherwise)."""
    if not choice or n_frames <= LONG_PROPAGATION_FRAMES:
        return ""
    fast = [c for c in choices if SECONDS_PER_FRAME.get(c, 1.0) < SECONDS_PER_FRAME.get(choice, 1.0)]
    if not fast:
        return ""
    seconds = n_frames * SECONDS_PER_FRAME.get(choice, 1.0)
    return (f" The '{choice}' model needs about {seconds:.0f} s for {n_frames} new frames; "
            f"'{fast[0]}' is suggested for long propagations.")
