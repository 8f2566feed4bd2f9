"""Propagation in chunks: one request per growing window of frames, outward from the clicked frame.

A long propagation (hundreds of frames, seconds to minutes with the accurate model) is sent as several
requests so that the user sees the masks arrive and can stop it between two requests.

Why every window starts at the clicked frame: the app's propagation carries the user's clicks from
frame to frame along the measured motion (lib/samus/propagate.py), and its answer holds only masks, not
the carried clicks. A request that started at the end of the previous chunk would have to seed that
frame with something else (its mask), and the chain would then differ from the one-shot result. So
every request covers a window that contains the clicked frame and grows outward (one side only for a
forward or backward propagation), and the app recomputes the frames before it from the same seeds: the
result of the last request is exactly the one-shot result (the app's `frames` range and its seeds are
all that decide it), and each earlier request is a prefix of it. The frames computed before cost no
encoder pass the second time (the app's embedding cache), only the decoder and the motion estimate,
about 18 ms a frame with the fast model (README, app benchmarks). To bound that repeated work, a window
grows by half its size (at least `chunk_frames`, at most 4 x `chunk_frames` new frames per request):
300 frames in chunks of 16 take 9 requests and recompute about 960 frames (constant chunks of 16 would
recompute about 2,700). The app's embedding cache holds 64 frames by default (`--conf cache_size`): frames
of a longer window that fell out of it are encoded again.

A server may avoid the recomputation: when its answer carries `resume` (a token for the chain states it
kept at the window's edges), the next request sends that token back as `resume`, with the same seeds
and a window that again contains the previous one. Such a server computes only the new frames but
still lists (and returns the masks of) every frame of the window that has a mask, so the answer stays
the one-shot result for that window; a token it no longer knows makes it recompute from the seeds.
Then the windows grow by a constant `chunk_frames`, as the repeated work is gone. (A server could also
keep the chain states for requests with the same image, model, seeds and options without any token:
these windows only ever grow, so it could continue from the previous window's edges.)

A side of the window stops growing when it reached the end of the range, or when the answer has no
mask on the window's edge (the chain lost the object before it, as the one-shot run would) and no
frame beyond it has the user's own points (those seed further chains).
"""
from __future__ import annotations

import itertools
import math

from .session import frame_range

DEFAULT_CHUNK_FRAMES = 16
_GROUPS = itertools.count(1)


class ChunkPlan:
    """The windows of one propagation, grown one request at a time."""

    def __init__(self, frame: int, n_frames: int, count: int | None, direction: str,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES):
        if chunk_frames < 1:
            raise ValueError(f"a chunk must cover at least one frame, got {chunk_frames}")
        self.frame = int(frame)
        self.direction = direction
        self.first, self.last = frame_range(self.frame, n_frames, count, direction)
        self.lo = self.hi = self.frame
        self.forward = direction in ("forward", "both") and self.frame < self.last
        self.backward = direction in ("backward", "both") and self.frame > self.first
        self.chunk_frames = int(chunk_frames)
        self.requests = 0
        self.resumable = False  # the server keeps the chains between requests (see the module docstring)

    def _step(self) -> int:
        """New frames on each growing side: half the window so far, within [chunk, 4 x chunk] in all."""
        covered = self.hi - self.lo + 1
        if self.resumable:
            new = self.chunk_frames
        else:
            new = min(4 * self.chunk_frames, max(self.chunk_frames, covered // 2))
        return max(1, math.ceil(new / 2)) if self.forward and self.backward else new

    @property
    def done(self) -> bool:
        return not (self.forward or self.backward)

    def next_window(self) -> list[int] | None:
        """[first, last] of the next request, None when the propagation is complete."""
        if self.done:
            return None
        step = self._step()
        if self.forward:
            self.hi = min(self.last, self.hi + step)
        if self.backward:
            self.lo = max(self.first, self.lo - step)
        self.requests += 1
        window = [self.lo, self.hi]
        # A side at the end of the range is complete once this request answers.
        self.forward = self.forward and self.hi < self.last
        self.backward = self.backward and self.lo > self.first
        return window

    def record(self, window, returned_frames, seeded_frames) -> None:
        """Updates which sides grow further from the answer to `window` (its `frames`) and the frames that
        carry the user's own points (seeds beyond the window restart a chain there)."""
        lo, hi = window
        returned, seeded = set(int(f) for f in returned_frames), set(int(f) for f in seeded_frames)
        if self.forward and hi not in returned and not any(hi < f <= self.last for f in seeded):
            self.forward = False
        if self.backward and lo not in returned and not any(self.first <= f < lo for f in seeded):
            self.backward = False

    def progress(self) -> tuple[int, int]:
        """(frames covered so far, frames in the range)."""
        return self.hi - self.lo + 1, self.last - self.first + 1


class ChunkedPropagation:
    """Drives one chunked propagation over an InteractiveSession (main thread; no Slicer).

    start() and on_result() return the next Job to run (None when finished or stopped); the caller
    runs jobs on its worker and hands each result back to on_result(), which writes the masks at once.
    stop() ends it between two requests: no further request is made and the answer of a request
    still running is dropped.
    """

    def __init__(self, session, segment_id: str, frame: int, count: int | None, direction: str,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES, min_area: int | None = None,
                 min_score: float | None = None):
        self.session, self.segment_id, self.frame = session, segment_id, int(frame)
        self.plan = ChunkPlan(frame, session.stack.n_frames, count, direction, chunk_frames)
        self.min_area, self.min_score = min_area, min_score
        self.group = next(_GROUPS)
        self.stopped = False
        self.frames_done: set = set()  # frames with a propagated mask so far
        self.stopped_at: list = []
        self.current = None  # the job waiting for its answer
        self.resume = None  # the server's token for the chains it kept, sent back with the next request

    @property
    def finished(self) -> bool:
        return self.stopped or (self.current is None and self.plan.done)

    def start(self):
        return self._next()

    def _next(self):
        window = None if self.stopped else self.plan.next_window()
        if window is None:
            self.current = None
            return None
        self.current = self.session.propagate(self.segment_id, self.frame, direction=self.plan.direction,
                                              min_area=self.min_area, min_score=self.min_score, window=window,
                                              group=self.group)
        if self.resume is not None:
            self.current.params["resume"] = self.resume
        return self.current

    def stop(self) -> None:
        self.stopped = True
        self.current = None

    def owns(self, job) -> bool:
        return job is not None and job.group == self.group

    def on_result(self, result):
        """(frames written into the masks, next job or None). A stale or stopped answer writes nothing."""
        job = result.job
        if self.stopped or job is not self.current:
            return [], None
        written = self.session.apply(result)
        window = job.params["frames"]
        returned = [int(f) for f in result.meta.get("frames", sorted(result.masks))]
        self.frames_done = {f for f in self.frames_done if not window[0] <= f <= window[1]} | set(returned)
        stopped = result.meta.get("stopped_at")
        self.stopped_at = [stopped] if isinstance(stopped, int) else list(stopped or [])
        self.plan.record(window, returned, self.session.prompts.frames(self.segment_id))
        self.resume = result.meta.get("resume") or None
        self.plan.resumable = self.resume is not None
        return written, self._next()

    def describe(self) -> str:
        covered, total = self.plan.progress()
        state = "stopped" if self.stopped else ("done" if self.finished else "running")
        where = f", lost at frame {', '.join(str(f + 1) for f in self.stopped_at)}" if self.stopped_at else ""
        return f"Propagation {state}: {covered} of {total} frames covered, {len(self.frames_done)} with a mask{where}."
