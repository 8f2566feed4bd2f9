"""Click prompts kept per segment and per frame.

A point is stored as in-frame voxel indices (i, j); the frame number is the key. For a
stacked volume the frame is K, for a cine sequence it is the browser's item number; the
server sees both as [i, j, frame] in the uploaded stack.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FramePrompts:
    positive: tuple = ()
    negative: tuple = ()

    def __bool__(self):
        return bool(self.positive or self.negative)

    def server_points(self, frame: int) -> tuple[list, list]:
        """foreground/background lists of [i, j, frame] as the app expects them."""
        return ([[i, j, frame] for i, j in self.positive], [[i, j, frame] for i, j in self.negative])


def _points(points) -> tuple:
    out = []
    for p in points:
        if len(p) < 2:
            raise ValueError(f"a prompt point needs (i, j), got {p!r}")
        out.append((int(p[0]), int(p[1])))
    return tuple(out)


@dataclass
class PromptStore:
    _data: dict = field(default_factory=dict)  # (segment_id, frame) -> FramePrompts

    def get(self, segment_id: str, frame: int) -> FramePrompts:
        return self._data.get((segment_id, int(frame)), FramePrompts())

    def set(self, segment_id: str, frame: int, positive=(), negative=()) -> FramePrompts:
        """Replaces the points of one frame; returns what was there before."""
        key = (segment_id, int(frame))
        before = self._data.get(key, FramePrompts())
        new = FramePrompts(_points(positive), _points(negative))
        if new:
            self._data[key] = new
        else:
            self._data.pop(key, None)
        return before

    def frames(self, segment_id: str) -> list[int]:
        return sorted(f for s, f in self._data if s == segment_id)

    def segments(self) -> list[str]:
        return sorted({s for s, _ in self._data})

    def clear_segment(self, segment_id: str) -> None:
        for key in [k for k in self._data if k[0] == segment_id]:
            del self._data[key]

    def to_json(self) -> dict:
        """{segment: {frame: {"positive": [[i,j],...], "negative": [...]}}} (for saving in the scene)."""
        out: dict = {}
        for (segment, frame), p in sorted(self._data.items()):
            out.setdefault(segment, {})[str(frame)] = {"positive": [list(x) for x in p.positive],
                                                      "negative": [list(x) for x in p.negative]}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "PromptStore":
        store = cls()
        for segment, frames in (data or {}).items():
            for frame, p in frames.items():
                store.set(segment, int(frame), p.get("positive", ()), p.get("negative", ()))
        return store
