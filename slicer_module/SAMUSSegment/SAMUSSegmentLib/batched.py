"""A mask store that talks to the scene once per batch, however many frames the batch touches.

Reading or writing a segment in Slicer is expensive (a whole-volume export or import, or for a
cine, work on every item), so `BatchedMasks` keeps what it read in a cache for the duration of a
batch and writes everything back at its end: one export and one import per segment per batch
(a propagation result, an undo step, a submission), instead of one per frame.

The scene side is a *layer* with:
- n_frames, frame_shape;
- whole_segments: True when the layer can only export and import complete segments (a volume's
  segmentation); False when it can do any set of frames (the items of a cine);
- export(segment_id, frames) -> array [len(frames), rows, cols], non-zero inside the segment;
- import_(segment_id, frames, masks): makes those frames of the segment exactly the bool masks.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .frames import check_frame


class BatchedMasks:
    """The mask-store interface of `frames.ArrayMaskStore` over a scene layer."""

    def __init__(self, layer):
        self.layer = layer
        self.n_frames = int(layer.n_frames)
        self.frame_shape = tuple(int(s) for s in layer.frame_shape)
        self._depth = 0
        self._cache: dict = {}  # segment id -> {frame: bool mask}
        self._dirty: dict = {}  # segment id -> frames changed in this batch

    @contextlib.contextmanager
    def batch(self):
        """Reads and writes inside share one export and one import per segment.

        The writes reach the scene when the outermost batch ends without an error; after an
        error nothing is written, so a failed step leaves the scene as it was.
        """
        self._depth += 1
        ok = False
        try:
            yield self
            ok = True
        finally:
            self._depth -= 1
            if self._depth == 0:
                try:
                    if ok:
                        self._flush()
                finally:
                    self._cache.clear()
                    self._dirty.clear()

    def _load(self, segment_id: str, frames) -> dict:
        cache = self._cache.setdefault(segment_id, {})
        if not frames:
            return cache
        wanted = range(self.n_frames) if self.layer.whole_segments else frames
        missing = [f for f in wanted if f not in cache]
        if missing:
            exported = np.asarray(self.layer.export(segment_id, missing))
            if exported.shape != (len(missing), *self.frame_shape):
                raise ValueError(f"the scene returned masks of shape {exported.shape} for {len(missing)} frames "
                                 f"of shape {self.frame_shape}")
            cache.update(zip(missing, exported > 0))
        return cache

    def _flush(self) -> None:
        for segment_id, dirty in self._dirty.items():
            if not dirty:
                continue
            cache = self._cache[segment_id]
            frames = list(range(self.n_frames)) if self.layer.whole_segments else sorted(dirty)
            self.layer.import_(segment_id, frames, np.stack([cache[f] for f in frames]))

    def _frames(self, frames) -> list[int]:
        return [check_frame(f, self.n_frames) for f in frames]

    def read_frames(self, segment_id: str, frames) -> dict:
        """{frame: bool mask} of the given frames."""
        frames = self._frames(frames)
        with self.batch():
            cache = self._load(segment_id, frames)
            return {f: cache[f].copy() for f in frames}

    def write_frames(self, segment_id: str, masks: dict) -> list[int]:
        """Makes each given frame exactly its mask; returns the frames that changed."""
        new = {}
        for frame, mask in masks.items():
            mask = np.asarray(mask) > 0
            if mask.shape != self.frame_shape:
                raise ValueError(f"mask shape {mask.shape} does not match the frame shape {self.frame_shape}")
            new[check_frame(frame, self.n_frames)] = mask
        with self.batch():
            cache = self._load(segment_id, list(new))
            changed = [f for f, mask in new.items() if not np.array_equal(cache[f], mask)]
            for f in changed:
                cache[f] = new[f]
            self._dirty.setdefault(segment_id, set()).update(changed)
        return sorted(changed)

    def read_frame(self, segment_id: str, frame: int) -> np.ndarray:
        return self.read_frames(segment_id, [frame])[check_frame(frame, self.n_frames)]

    def write_frame(self, segment_id: str, frame: int, mask) -> bool:
        return bool(self.write_frames(segment_id, {frame: mask}))

    def segment_volume(self, segment_id: str) -> np.ndarray:
        """[frames, rows, cols] uint8 with 1 inside the segment (a copy)."""
        masks = self.read_frames(segment_id, range(self.n_frames))
        return np.stack([masks[f] for f in range(self.n_frames)]).astype(np.uint8)
