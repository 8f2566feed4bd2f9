"""Bounded undo history of AI updates (what a frame's mask and prompts were before)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


class PackedMask:
    """A binary frame mask stored at 1 bit per pixel; propagation can touch hundreds of frames."""

    __slots__ = ("shape", "bits")

    def __init__(self, mask):
        mask = np.asarray(mask) > 0
        self.shape = mask.shape
        self.bits = np.packbits(mask, axis=None)

    def unpack(self) -> np.ndarray:
        n = int(np.prod(self.shape))
        return np.unpackbits(self.bits, count=n).reshape(self.shape).astype(bool)


@dataclass
class UndoEntry:
    description: str
    segment_id: str
    masks_before: dict = field(default_factory=dict)    # frame -> PackedMask
    prompts_before: dict = field(default_factory=dict)  # frame -> PlacedPrompts

    @property
    def frames(self) -> list[int]:
        return sorted(set(self.masks_before) | set(self.prompts_before))


class UndoStack:
    def __init__(self, depth: int = 30):
        if depth < 1:
            raise ValueError("undo depth must be at least 1")
        self._entries: deque = deque(maxlen=depth)

    def push(self, entry: UndoEntry) -> None:
        self._entries.append(entry)

    def pop(self) -> UndoEntry | None:
        return self._entries.pop() if self._entries else None

    def contains(self, entry: UndoEntry) -> bool:
        return any(e is entry for e in self._entries)

    def peek(self) -> UndoEntry | None:
        return self._entries[-1] if self._entries else None

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self):
        return len(self._entries)
