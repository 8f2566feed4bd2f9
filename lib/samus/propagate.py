"""Frame-by-frame propagation through a cine loop or volume.

The user's clicks segment their frames ("seeds"). Each neighbouring frame is then prompted from the
previous one: by default with the user's own clicks, moved along with the picture (below); optionally with
clicks derived from the previous mask (the deepest interior point, more interior points and negative points
around it), its box, and its 128 x 128 low-res logits as SAM's mask input. A chain stops where the object
disappears (mask smaller than `min_area` pixels or predicted IoU below `min_score`), at the end of the
requested frame range, or half-way to the next seed frame (the rest of the gap is filled from that seed).

Between frames the probe moves: the shift of the picture around the object is measured by phase correlation
of the two frames (a window around the previous mask), and the carried clicks (or, with `track_motion`, the
derived prompt) move by it, so clicks stay on the object when it moves farther than its own size between
labelled frames.

Frames are read through a callable and encoded in batches ahead of the chain, filling the predictor's
embedding cache, so later clicks on propagated frames cost no encoder pass.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .predictor import ImageEmbedding, SamusPredictor
from .geometry import StretchToSquare
from .preprocess import to_unit_grayscale
from .prompts import interior_distance

DIRECTIONS = ("both", "forward", "backward")


@dataclass
class FramePrompt:
    """Clicks (x=column, y=row, original pixels) with labels 1/0, and an optional box x1, y1, x2, y2."""

    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    box: Optional[np.ndarray] = None


@dataclass
class PropagationResult:
    masks: Dict[int, np.ndarray] = field(default_factory=dict)  # frame -> H x W bool
    scores: Dict[int, float] = field(default_factory=dict)
    stopped_at: List[int] = field(default_factory=list)  # where a chain lost the object (seeds: too small to follow)
    seeds: List[int] = field(default_factory=list)
    # (seed, +1 | -1) -> where that chain ended: (frame, carried prompt, low-res logits, mask), or (frame, None,
    # None, None) where it lost the object; `propagate(resume=...)` continues from it exactly
    chain_ends: Dict[Tuple[int, int], tuple] = field(default_factory=dict)

    @property
    def frames(self) -> List[int]:
        return sorted(self.masks)


@dataclass
class PropagationOptions:
    direction: str = "both"
    min_area: int = 20  # pixels, at the original resolution
    min_score: Optional[float] = None  # predicted IoU below which the object counts as lost (None: off)
    use_mask_input: bool = False  # the previous logits are misaligned after motion: costs Dice (bench_propagate)
    positive_clicks: int = 1  # derived from the previous mask
    negative_clicks: int = 0
    box_margin: Optional[float] = None  # also prompt with the previous mask's box, grown by this fraction
    track_motion: bool = True  # move the derived prompt by the measured shift between the two frames
    carry_seed_clicks: bool = True  # prompt with the user's own clicks, carried along by the measured motion
    batch_size: int = 8

    def check(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.min_area < 0 or self.positive_clicks < 1 or self.negative_clicks < 0 or self.batch_size < 1:
            raise ValueError("need min_area >= 0, positive_clicks >= 1, negative_clicks >= 0, batch_size >= 1")


def derived_prompt(low_res_logits: np.ndarray, original_size: Tuple[int, int], positives: int = 1,
                   negatives: int = 0, box_margin: Optional[float] = None, geometry=None) -> FramePrompt:
    """Clicks for the next frame from this frame's low-res logits: the deepest interior point first (the
    place least likely to have left the object after a small motion), then further interior points by
    farthest-point sampling, and negatives on a ring just outside the object. `geometry` is the model's
    canvas (`model.geometry`; default SAMUS's: a stretch to twice the logits' size)."""
    mask = low_res_logits > 0
    size = mask.shape[0]
    if not mask.any():  # the full-size mask had pixels the low-res one lacks: take the most confident one
        mask = low_res_logits >= low_res_logits.max()
    dist = interior_distance(mask)
    picked: List[Tuple[int, int]] = [np.unravel_index(int(np.argmax(dist)), dist.shape)]
    interior = np.argwhere(dist >= max(1.0, 0.5 * dist.max()))
    while len(picked) < positives and len(interior) > len(picked):
        d = np.min([np.hypot(*(interior - p).T) for p in picked], axis=0)
        picked.append(tuple(interior[int(np.argmax(d))]))
    labels = [1] * len(picked)
    if negatives:
        ring = ndimage.binary_dilation(mask, iterations=max(2, size // 32)) & ~ndimage.binary_dilation(mask, iterations=2)
        ring_pts = np.argwhere(ring)
        if len(ring_pts):
            angle = np.arctan2(*(ring_pts - np.mean(np.argwhere(mask), axis=0)).T)
            for a in np.linspace(-np.pi, np.pi, negatives, endpoint=False):
                picked.append(tuple(ring_pts[int(np.argmin(np.abs(np.angle(np.exp(1j * (angle - a))))))]))
                labels.append(0)
    yx = np.array(picked, dtype=np.float64)
    geometry = geometry or StretchToSquare(2 * size)
    cell = geometry.size / size  # canvas pixels per low-res cell (2 for SAMUS, 1 for LiteMedSAM)
    # Low-res grid -> the model's canvas -> original pixels (through the padding, if the model pads).
    points = geometry.original_coords((yx[:, ::-1] + 0.5) * cell - 0.5, original_size)
    h, w = original_size
    points = np.clip(points, 0, [w - 1, h - 1])
    box = None
    if box_margin is not None:
        (y0, x0), (y1, x1) = np.argwhere(mask).min(0), np.argwhere(mask).max(0)
        grow = box_margin * np.array([x1 - x0 + 1, y1 - y0 + 1]) / 2
        corners = np.array([[x0, y0] - grow, [x1, y1] + grow])
        corners = geometry.original_coords((corners + 0.5) * cell - 0.5, original_size)
        box = np.clip(corners, 0, [w - 1, h - 1]).reshape(4)
    return FramePrompt(points, np.array(labels, dtype=np.int64), box)


def frame_motion(previous: np.ndarray, current: np.ndarray, mask: np.ndarray, context: float = 1.0) -> np.ndarray:
    """(dx, dy) in pixels by which the picture around `mask` (H x W bool, on `previous`) moved in `current`.

    Phase correlation (scikit-image) of a window around the mask's box, grown by `context` times its size on
    each side: the object and its surroundings move together with the probe, the far field need not.
    """
    from skimage.registration import phase_cross_correlation

    if np.shape(previous)[:2] != np.shape(current)[:2] or not mask.any():
        return np.zeros(2)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    gy, gx = max(16, context * (ys.ptp() + 1)), max(16, context * (xs.ptp() + 1))
    y0, y1 = int(max(0, ys.min() - gy)), int(min(h, ys.max() + 1 + gy))
    x0, x1 = int(max(0, xs.min() - gx)), int(min(w, xs.max() + 1 + gx))
    window = np.outer(np.hanning(y1 - y0), np.hanning(x1 - x0))  # no wrap-around edges in the spectrum
    # Only the window is converted: the grayscale scaling is affine, which the correlation peak ignores.
    pa = to_unit_grayscale(np.asarray(previous)[y0:y1, x0:x1])
    pb = to_unit_grayscale(np.asarray(current)[y0:y1, x0:x1])
    shift, _, _ = phase_cross_correlation((pa - pa.mean()) * window, (pb - pb.mean()) * window,
                                          normalization=None)
    return -np.asarray(shift[::-1], dtype=np.float64)  # registration shift of `current` -> motion (x, y)


def _moved(prompt: FramePrompt, motion: np.ndarray, original_size: Tuple[int, int]) -> FramePrompt:
    """The prompt moved by `motion` (dx, dy original pixels), clipped to the image."""
    h, w = original_size
    points = np.clip(prompt.points + motion, 0, [w - 1, h - 1])
    box = None if prompt.box is None else np.clip(prompt.box + np.tile(motion, 2), 0, [w - 1, h - 1] * 2)
    return FramePrompt(points, prompt.labels, box)


def _moved_logits(low_res: np.ndarray, motion: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
    per_cell = low_res.shape[0] / max(original_size)  # the logits cover the longest side
    return ndimage.shift(low_res, motion[::-1] * per_cell, order=1, mode="nearest")


def chain_order(seeds: Sequence[int], lo: int, hi: int, direction: str) -> List[Tuple[int, List[int]]]:
    """(seed, frames to visit in order) for every chain; gaps between seeds are split half-way."""
    chains = []
    for n, s in enumerate(seeds):
        prev_seed = seeds[n - 1] if n else None
        next_seed = seeds[n + 1] if n + 1 < len(seeds) else None
        if direction in ("both", "forward"):
            end = hi if next_seed is None else (
                (s + next_seed) // 2 if direction == "both" else next_seed - 1)
            chains.append((s, list(range(s + 1, end + 1))))
        if direction in ("both", "backward"):
            start = lo if prev_seed is None else (
                (prev_seed + s) // 2 + 1 if direction == "both" else prev_seed + 1)
            chains.append((s, list(range(s - 1, start - 1, -1))))
    return [c for c in chains if c[1]]


def propagate(
    predictor: SamusPredictor,
    get_frame: Callable[[int], np.ndarray],
    n_frames: int,
    prompts: Dict[int, FramePrompt],
    frame_key: Callable[[int], Hashable],
    frame_range: Optional[Tuple[int, int]] = None,
    options: Optional[PropagationOptions] = None,
    resume: Optional[Dict[Tuple[int, int], tuple]] = None,
) -> PropagationResult:
    """Segment the prompted frames, then propagate to their neighbours within `frame_range` (inclusive).

    `get_frame(k)` returns frame k (H x W [x C]); `frame_key(k)` its embedding cache key. `resume`: the
    `chain_ends` of an earlier call with the same prompts and options; a chain whose recorded end lies on its
    way continues after it (the frames before it are not recomputed), which gives the same masks as walking
    from the seed, so a long range can be done in chunks.
    """
    opts = options or PropagationOptions()
    opts.check()
    seeds, lo, hi = _checked_seeds(prompts, n_frames, frame_range)
    walk = _Propagation(predictor, get_frame, frame_key, opts, prompts, PropagationResult(seeds=list(seeds)))
    walk.segment_seeds(seeds)
    for seed, order in chain_order(seeds, lo, hi, opts.direction):
        walk.chain(seed, order, resume or {})
    walk.result.stopped_at.sort()
    return walk.result


def _checked_seeds(prompts: Dict[int, FramePrompt], n_frames: int, frame_range) -> Tuple[List[int], int, int]:
    """(prompted frames in order, first and last frame of the range); ValueError when they do not fit."""
    lo, hi = frame_range if frame_range is not None else (0, n_frames - 1)
    if not 0 <= lo <= hi < n_frames:
        raise ValueError(f"frame range {lo}..{hi} is not inside 0..{n_frames - 1}")
    seeds = sorted(k for k, p in prompts.items() if p.points is not None or p.box is not None)
    if not seeds:
        raise ValueError("no prompts: give clicks (or a box) on at least one frame")
    outside = [k for k in seeds if not lo <= k <= hi]
    if outside:
        raise ValueError(f"prompted frame(s) {outside} are outside the frame range {lo}..{hi}")
    return seeds, lo, hi


@dataclass
class _Propagation:
    """One propagation call: the seeds' masks, then each chain walked frame by frame from its seed."""
    predictor: SamusPredictor
    get_frame: Callable[[int], np.ndarray]
    frame_key: Callable[[int], Hashable]
    opts: PropagationOptions
    prompts: Dict[int, FramePrompt]
    result: PropagationResult
    low_res: Dict[int, np.ndarray] = field(default_factory=dict)

    def embeddings(self, frames: Sequence[int]) -> List[ImageEmbedding]:
        return self.predictor.encode_frames([self.get_frame(k) for k in frames], [self.frame_key(k) for k in frames],
                                            batch_size=self.opts.batch_size)

    def segment_seeds(self, seeds: Sequence[int]) -> None:
        for k, emb in zip(seeds, self.embeddings(seeds)):
            p = self.prompts[k]
            mask, score, logits = self.predictor.predict_embedding(emb, p.points, p.labels, p.box)
            self.result.masks[k], self.result.scores[k], self.low_res[k] = mask, score, logits

    def chain(self, seed: int, order: List[int], resume: Dict[Tuple[int, int], tuple]) -> None:
        """Walk one chain (continuing where `resume` says it ended) and record where it ends."""
        result = self.result
        if result.masks[seed].sum() < self.opts.min_area:
            if seed not in result.stopped_at:
                result.stopped_at.append(seed)
            return
        prev = seed
        carried = self.prompts[seed]
        step = 1 if order[0] > seed else -1
        end = resume.get((seed, step))
        if end is not None and end[0] in order:
            order = order[order.index(end[0]) + 1:]
            prev = end[0]
            if end[1] is None:  # the chain had lost the object there
                result.stopped_at.append(prev)
                result.chain_ends[(seed, step)] = end
                return
            carried, self.low_res[prev], result.masks[prev] = end[1], end[2], end[3]
        prev, carried, lost_at = self.follow(order, prev, carried)
        result.chain_ends[(seed, step)] = ((lost_at, None, None, None) if lost_at is not None else
                                           (prev, carried, self.low_res[prev], result.masks[prev]))

    def follow(self, order: List[int], prev: int, carried: FramePrompt) -> Tuple[int, FramePrompt, Optional[int]]:
        """Segment `order` frame by frame from `prev`; -> (last segmented frame, carried prompt, the frame
        where the object was lost or None)."""
        opts, result = self.opts, self.result
        for start in range(0, len(order), opts.batch_size):
            batch = order[start:start + opts.batch_size]
            for k, emb in zip(batch, self.embeddings(batch)):
                p, mask_input, carried = self.next_prompt(prev, k, emb, carried)
                mask, score, logits = self.predictor.predict_embedding(emb, p.points, p.labels, p.box, mask_input,
                                                                      correction="global")  # another frame's mask
                if mask.sum() < opts.min_area or (opts.min_score is not None and score < opts.min_score):
                    result.stopped_at.append(k)
                    return prev, carried, k
                result.masks[k], result.scores[k], self.low_res[k] = mask, score, logits
                prev = k
        return prev, carried, None

    def next_prompt(self, prev: int, k: int, emb: ImageEmbedding, carried: FramePrompt):
        """Frame k's prompt and mask input derived from frame `prev` (moved with the motion between them
        when tracking or carrying the seed's clicks); -> (prompt, mask input or None, carried prompt)."""
        opts = self.opts
        p = derived_prompt(self.low_res[prev], emb.original_size, opts.positive_clicks, opts.negative_clicks,
                           opts.box_margin, self.predictor.model.geometry)
        mask_input = self.low_res[prev] if opts.use_mask_input else None
        if opts.track_motion or opts.carry_seed_clicks:
            motion = frame_motion(self.get_frame(prev), self.get_frame(k), self.result.masks[prev])
            p = _moved(p, motion, emb.original_size)
            if mask_input is not None:
                mask_input = _moved_logits(mask_input, motion, emb.original_size)
            if opts.carry_seed_clicks and carried.points is not None:
                carried = _moved(FramePrompt(carried.points, carried.labels), motion, emb.original_size)
                p = FramePrompt(carried.points, carried.labels, p.box)
        return p, mask_input, carried
