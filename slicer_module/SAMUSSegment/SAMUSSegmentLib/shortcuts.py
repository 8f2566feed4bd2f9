"""Keyboard shortcuts of the module (one table, so the help text and README stay in sync)."""

SHORTCUTS = {
    "nextFrame": ("]", "next frame"),
    "previousFrame": ("[", "previous frame"),
    "positiveMode": ("Ctrl+1", "place positive points"),
    "negativeMode": ("Ctrl+2", "place negative points"),
    "boxMode": ("Ctrl+3", "draw a box on this frame (two opposite corners)"),
    "propagate": ("Ctrl+Shift+P", "propagate the current mask over the next N frames"),
    "undo": ("Ctrl+Z", "undo the last AI update"),
}


def help_lines() -> list[str]:
    return [f"{key}: {text}" for key, text in SHORTCUTS.values()]
