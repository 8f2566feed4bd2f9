"""Click and box prompts kept per segment and per frame.

A point is stored as in-frame voxel indices (i, j); the frame number is the key. For a
stacked volume the frame is K, for a cine sequence it is the browser's item number; the
server sees both as [i, j, frame] in the uploaded stack. A frame has at most one box
(i0, j0, i1, j1), inclusive voxel corners, sent as the app's `roi` [x0, y0, x1, y1] with
the frame as `slice` (SAM's decoder takes one box per prompt).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlacedPrompts:
    """The clicks (IJK) and box a user placed for one segment on one frame."""

    positive: tuple = ()
    negative: tuple = ()
    box: tuple | None = None  # (i0, j0, i1, j1), i0 <= i1 and j0 <= j1

    def __bool__(self):
        return bool(self.positive or self.negative or self.box)

    @property
    def segmentable(self) -> bool:
        """A positive point or a box: something the model can segment (negatives alone cannot)."""
        return bool(self.positive or self.box)

    def server_points(self, frame: int) -> tuple[list, list]:
        """foreground/background lists of [i, j, frame] as the app expects them."""
        return ([[i, j, frame] for i, j in self.positive], [[i, j, frame] for i, j in self.negative])


def normalize_box(box) -> tuple | None:
    """(i0, j0, i1, j1) with the corners sorted, or None; a box must cover at least 2 x 2 pixels."""
    if box is None:
        return None
    if len(box) != 4:
        raise ValueError(f"a box needs (i0, j0, i1, j1), got {box!r}")
    i0, j0, i1, j1 = (int(round(float(v))) for v in box)
    i0, i1 = sorted((i0, i1))
    j0, j1 = sorted((j0, j1))
    if i1 - i0 < 1 or j1 - j0 < 1:
        raise ValueError(f"the box ({i0}, {j0}) - ({i1}, {j1}) is too small: draw it over the structure")
    return (i0, j0, i1, j1)


def _points(points) -> tuple:
    out = []
    for p in points:
        if len(p) < 2:
            raise ValueError(f"a prompt point needs (i, j), got {p!r}")
        out.append((int(p[0]), int(p[1])))
    return tuple(out)


@dataclass
class PromptStore:
    _data: dict = field(default_factory=dict)  # (segment_id, frame) -> PlacedPrompts

    def get(self, segment_id: str, frame: int) -> PlacedPrompts:
        return self._data.get((segment_id, int(frame)), PlacedPrompts())

    def set(self, segment_id: str, frame: int, positive=(), negative=(), box=None) -> PlacedPrompts:
        """Replaces the points and the box of one frame; returns what was there before."""
        key = (segment_id, int(frame))
        before = self._data.get(key, PlacedPrompts())
        new = PlacedPrompts(_points(positive), _points(negative), normalize_box(box))
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
        """{segment: {frame: {"positive": [[i,j],...], "negative": [...], "box": [i0,j0,i1,j1]}}} (saved in
        the scene; "box" only where the frame has one)."""
        out: dict = {}
        for (segment, frame), p in sorted(self._data.items()):
            entry = {"positive": [list(x) for x in p.positive], "negative": [list(x) for x in p.negative]}
            if p.box is not None:
                entry["box"] = list(p.box)
            out.setdefault(segment, {})[str(frame)] = entry
        return out

    @classmethod
    def from_json(cls, data: dict) -> "PromptStore":
        store = cls()
        for segment, frames in (data or {}).items():
            for frame, p in frames.items():
                store.set(segment, int(frame), p.get("positive", ()), p.get("negative", ()), p.get("box"))
        return store
