"""The click -> mask workflow for one image, independent of Slicer.

Each public step is meant for one thread:
- main thread: set_points / propagate / submit_labels build a Job from the current state;
- worker thread: execute(job) does the network calls and decoding, touching no shared state
  except the upload cache;
- main thread: apply(result) writes masks into the mask store and records undo history.
Results that were overtaken by newer clicks on the same frame (or by an undo) are dropped.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .client import INTERACTIVE_MODEL, PROPAGATION_MODEL, ServerError
from .models import with_model
from .frames import check_frame, frame_from_result, merge_segments, non_empty_frames
from .nifti import read_label
from .nrrd import write_nrrd
from .prompts import PlacedPrompts, PromptStore
from .undo import PackedMask, UndoEntry, UndoStack
from .upload import FrameStack, ImageUploader

DIRECTIONS = ("forward", "backward", "both")
RESULT_EXTENSION = ".nii.gz"  # the app compresses label files only in this format (see nifti.py)


@dataclass
class Job:
    kind: str                 # "interactive", "clear", "propagate" or "submit"
    segment_id: str
    frame: int
    stack: FrameStack
    params: dict = field(default_factory=dict)
    generation: int = 0
    payload: object = None    # submit: (label array, save params)
    group: int | None = None  # propagate: the chunked propagation this request is a part of

    @property
    def description(self) -> str:
        if self.kind == "propagate" and self.group is not None:
            first, last = self.params["frames"]
            return f"propagating from frame {self.frame} (frames {first}..{last})"
        return {"interactive": f"segmenting frame {self.frame}", "clear": f"clearing frame {self.frame}",
                "propagate": f"propagating from frame {self.frame}",
                "submit": "submitting labels"}[self.kind]


@dataclass
class JobResult:
    job: Job
    masks: dict = field(default_factory=dict)  # frame -> bool [j, i]
    meta: dict = field(default_factory=dict)   # the server's JSON answer


def interactive_params(prompts: PlacedPrompts, frame: int) -> dict:
    """The app's params for one frame's prompts: clicks as [i, j, frame], the box as `roi` [x0, y0, x1, y1]."""
    foreground, background = prompts.server_points(frame)
    params = {"foreground": foreground, "background": background, "slice": int(frame),
              "result_extension": RESULT_EXTENSION, "result_dtype": "uint8"}
    if prompts.box is not None:
        params["roi"] = list(prompts.box)
    return params


def frame_range(frame: int, n_frames: int, count: int | None, direction: str) -> list[int]:
    """[first, last] frames a propagation covers; count None means up to the ends of the loop."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if count is not None and count < 1:
        raise ValueError(f"the number of frames to propagate over must be at least 1, got {count}")
    reach = n_frames if count is None else int(count)
    first = frame if direction == "forward" else max(0, frame - reach)
    last = frame if direction == "backward" else min(n_frames - 1, frame + reach)
    return [first, last]


class InteractiveSession:
    """Prompts, masks and undo history of one image on one server."""

    def __init__(self, client, masks, stack: FrameStack, uploader: ImageUploader | None = None,
                 model: str = INTERACTIVE_MODEL, propagate_model: str = PROPAGATION_MODEL, undo_depth: int = 30):
        self.client = client
        self.masks = masks
        self.uploader = uploader or ImageUploader(client)
        self.model = model                      # infer task of clicks
        self.propagate_model = propagate_model  # infer task of propagation
        # The server's model choice (`variant` param, e.g. "accurate" / "fast") per task; None: not sent.
        self.model_choice: str | None = None
        self.propagate_choice: str | None = None
        self._groups: dict = {}  # chunked propagation id -> its one undo entry
        self.prompts = PromptStore()
        self.undo_stack = UndoStack(undo_depth)
        self.stack = None
        self.set_stack(stack)
        self.last_meta: dict = {}
        self._counter = itertools.count(1)
        self._latest: dict = {}      # (segment, frame) -> generation of the newest job
        self._undo_base: dict = {}   # (segment, frame) -> prompts before the first not yet applied change

    def set_stack(self, stack: FrameStack) -> None:
        """Takes a new snapshot of the image (e.g. after the volume was edited); geometry must match."""
        if (stack.n_frames, stack.frame_shape) != (self.masks.n_frames, self.masks.frame_shape):
            raise ValueError(f"image has {stack.n_frames} frames of {stack.frame_shape} but the masks have "
                             f"{self.masks.n_frames} frames of {self.masks.frame_shape}")
        self.stack = stack

    # -- main thread: build jobs -------------------------------------------------------------
    def set_points(self, segment_id: str, frame: int, positive, negative, box=None) -> Job | None:
        """Records a frame's points and box; returns the job that recomputes its mask (None if unchanged)."""
        frame = check_frame(frame, self.stack.n_frames)
        for i, j in list(positive) + list(negative):
            if not (0 <= i < self.stack.frame_shape[1] and 0 <= j < self.stack.frame_shape[0]):
                raise ValueError(f"point ({i}, {j}) is outside the frame "
                                 f"({self.stack.frame_shape[1]} x {self.stack.frame_shape[0]} pixels)")
        if box is not None:
            i0, j0, i1, j1 = box
            rows, cols = self.stack.frame_shape
            box = (max(0, min(i0, i1)), max(0, min(j0, j1)), min(cols - 1, max(i0, i1)), min(rows - 1, max(j0, j1)))
        before = self.prompts.set(segment_id, frame, positive, negative, box)
        now = self.prompts.get(segment_id, frame)
        if now == before:
            return None
        key = (segment_id, frame)
        self._undo_base.setdefault(key, before)
        self._latest[key] = generation = next(self._counter)
        if not now.segmentable:
            # Without a positive point or a box there is nothing to segment: clear the frame locally.
            return Job("clear", segment_id, frame, self.stack, generation=generation)
        params = with_model(interactive_params(now, frame), self.model_choice)
        return Job("interactive", segment_id, frame, self.stack, params, generation)

    def propagate(self, segment_id: str, frame: int, count: int | None = None, direction: str = "forward",
                  min_area: int | None = None, min_score: float | None = None, window=None,
                  group: int | None = None) -> Job:
        """Job that runs the app's propagation from this frame's points (and box) over the next frames.

        Points the user placed on other frames of the range go along as extra seeds, so the
        propagation follows the user's corrections; those frames keep their own masks. `window`
        ([first, last]) replaces the range of `count` / `direction`: one request of a chunked
        propagation (chunks.py), whose results `apply` merges into one undo step per `group`.
        """
        frame = check_frame(frame, self.stack.n_frames)
        prompts = self.prompts.get(segment_id, frame)
        if not prompts.segmentable:
            raise ValueError(f"place at least one positive point or a box on frame {frame} before propagating")
        first, last = frame_range(frame, self.stack.n_frames, count, direction) if window is None else window
        if not 0 <= first <= frame <= last < self.stack.n_frames:
            raise ValueError(f"the propagation range {first}..{last} must contain frame {frame}")
        params = interactive_params(prompts, frame)
        # The app takes one box per request (on `slice`); other frames' boxes cannot go along.
        for other in self.prompts.frames(segment_id):
            seed = self.prompts.get(segment_id, other)
            if other != frame and first <= other <= last and seed.positive:
                foreground, background = seed.server_points(other)
                params["foreground"] += foreground
                params["background"] += background
        params.update(frames=[int(first), int(last)], direction=direction)
        params = with_model(params, self.propagate_choice)
        # Stop criteria of the app: propagation ends where the mask gets smaller / less certain than this.
        if min_area is not None:
            params["min_area"] = int(min_area)
        if min_score is not None:
            params["min_score"] = float(min_score)
        return Job("propagate", segment_id, frame, self.stack, params, next(self._counter), group=group)

    def submit_labels(self, segments: list, only_labelled_frames: bool = True) -> Job:
        """Job that saves the segments as the image's final label; segments: [(segment_id, name)].

        The label is a volume with value n+1 for the n-th segment. The labelled frames (with a
        mask or with points) are listed in the label info so training can skip untouched frames.
        """
        if not segments:
            raise ValueError("there is no segment to submit")
        with self.masks.batch():
            volumes = [np.array(self.masks.segment_volume(s), copy=True) for s, _ in segments]
        label = merge_segments(volumes)
        frames = set(non_empty_frames(label))
        for s, _ in segments:
            frames.update(self.prompts.frames(s))
        if not frames:
            raise ValueError("all frames are empty: segment something before submitting")
        params = {"label_info": [{"name": name, "idx": n + 1} for n, (_, name) in enumerate(segments)],
                  "labelled_frames": sorted(frames), "only_labelled_frames": bool(only_labelled_frames),
                  "client": "3D Slicer SAMUSSegment"}
        return Job("submit", segments[0][0], 0, self.stack, params, next(self._counter), payload=label)

    def group_entry(self, group: int):
        """The undo entry of a chunked propagation (None before its first answer)."""
        return self._groups.get(group)

    def is_stale(self, job: Job) -> bool:
        """True when a newer click (or an undo) on the same frame made this job pointless."""
        return job.kind in ("interactive", "clear") and self._latest.get((job.segment_id, job.frame)) != job.generation

    # -- worker thread -----------------------------------------------------------------------
    def execute(self, job: Job) -> JobResult:
        shape = job.stack.frame_shape
        if self.is_stale(job):
            return JobResult(job, {}, {"skipped": "superseded by a newer click"})
        if job.kind == "clear":
            return JobResult(job, {job.frame: np.zeros(shape, dtype=bool)})
        image_id = self.uploader.ensure(job.stack)
        if job.kind == "submit":
            # Always NRRD in the stack's geometry; the app stores labels of 2D (PNG) images as PNG itself.
            data = write_nrrd(job.payload, job.stack.ijk_to_ras, compress=True)
            meta = self.client.save_label(image_id, data, f"{image_id}.nrrd", job.params)
            return JobResult(job, {}, meta or {})
        model = self.model if job.kind == "interactive" else self.propagate_model
        data, meta = self.client.infer(model, image_id, job.params)
        if data is None:
            raise ServerError(f"the server's '{model}' task returned no mask (answer: {meta})")
        result = read_label(data)
        if job.kind == "interactive":
            return JobResult(job, {job.frame: frame_from_result(result, job.frame, shape)}, meta)
        first, last = job.params["frames"]
        frames = meta.get("frames")
        if frames is None:  # fall back to what the label volume shows
            frames = [f for f in non_empty_frames(result if result.ndim == 3 else result[None])]
        masks = {int(f): frame_from_result(result, int(f), shape) for f in frames if first <= int(f) <= last}
        return JobResult(job, masks, meta)

    # -- main thread: apply results ------------------------------------------------------------
    def apply(self, result: JobResult) -> list[int]:
        """Writes a result into the masks; returns the frames written ([] for a stale result)."""
        job = result.job
        self.last_meta = result.meta
        if job.kind == "submit":
            return []
        if job.kind in ("interactive", "clear"):
            key = (job.segment_id, job.frame)
            if self._latest.get(key) != job.generation:
                return []  # a newer click on this frame (or an undo) is on its way
            before_prompts = {job.frame: self._undo_base.pop(key, self.prompts.get(*key))}
            targets = {job.frame: result.masks[job.frame]}
            description = f"AI update of frame {job.frame}"
        else:
            # Frames the user prompted keep their own result; the source frame is already done.
            own = set(self.prompts.frames(job.segment_id))
            targets = {f: m for f, m in result.masks.items() if f != job.frame and f not in own}
            before_prompts = {}
            description = f"propagation from frame {job.frame}"
            if job.group is not None:
                return self._apply_chunk(job, targets, own, description)
        entry = UndoEntry(description, job.segment_id)
        # One batch: the scene is read once and written once, however many frames the result has.
        with self.masks.batch():
            before = self.masks.read_frames(job.segment_id, list(targets))
            entry.masks_before = {f: PackedMask(m) for f, m in before.items()}
            entry.prompts_before = before_prompts
            self.masks.write_frames(job.segment_id, targets)
        self.undo_stack.push(entry)
        return sorted(targets)

    def _apply_chunk(self, job: Job, targets: dict, own: set, description: str) -> list[int]:
        """One request of a chunked propagation: all its requests make one undo step.

        Each request recomputes its whole window, so a frame an earlier request of this propagation
        wrote but this one did not return (e.g. it now belongs to a seed whose chain stops before it)
        goes back to its state before the propagation, as the one-shot result would leave it.
        """
        entry = self._groups.get(job.group)
        if entry is None:
            entry = self._groups[job.group] = UndoEntry(description, job.segment_id)
            self.undo_stack.push(entry)
        elif not self.undo_stack.contains(entry):
            return []  # the propagation was undone (or fell off the history) meanwhile
        first, last = job.params["frames"]
        for f, packed in entry.masks_before.items():
            if first <= f <= last and f not in targets and f != job.frame and f not in own:
                targets[f] = packed.unpack()
        with self.masks.batch():
            new = [f for f in targets if f not in entry.masks_before]
            for f, m in self.masks.read_frames(job.segment_id, new).items():
                entry.masks_before[f] = PackedMask(m)
            changed = self.masks.write_frames(job.segment_id, targets)
        return sorted(changed)

    def undo(self) -> UndoEntry | None:
        """Reverts the last applied AI update (masks and points); None when there is nothing to undo."""
        entry = self.undo_stack.pop()
        if entry is None:
            return None
        self.masks.write_frames(entry.segment_id, {f: p.unpack() for f, p in entry.masks_before.items()})
        for frame, prompts in entry.prompts_before.items():
            self.prompts.set(entry.segment_id, frame, prompts.positive, prompts.negative, prompts.box)
            key = (entry.segment_id, frame)
            self._latest[key] = next(self._counter)  # drop results still in flight for this frame
            self._undo_base.pop(key, None)
        return entry
