"""Clicks, frame and box of an infer request, validated against the image.

MONAI Label clients send `foreground` / `background` as lists of voxel indices [i, j, k] (2D images:
[x, y]); i / x is the column and j / y the row of frame k (see image_io); the frame is `slice` or the
clicks' k. `roi` is [x0, y0, x1, y1] (CVAT) or [i0, i1, j0, j1, k0, k1] (the Slicer plugin's ROI).
Every problem becomes a 400 that names it.
"""
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
from samus.propagate import FramePrompt  # prompts for one frame, in its pixel space (x = column, y = row)

from .app_conf import RequestLimits
from .errors import bad_request, show, too_large
from .image_io import ImageInfo


def number(v, what: str) -> float:
    # bool is an int in Python; "12" is a string, not a coordinate.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise bad_request(f"{what} must be a number, got {show(v)}")
    try:
        f = float(v)  # OverflowError for integers beyond float range (JSON allows 10^400)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise bad_request(f"{what} must be finite, got {show(v)}")
    return f


def frame_index(v, what: str, info: ImageInfo) -> int:
    k = number(v, what)
    if k != int(k):
        raise bad_request(f"{what} must be a whole frame index, got {v!r}")
    k = int(k)
    if not 0 <= k < info.frames:
        raise bad_request(f"{what} {k} does not exist: the image has {info.frames} frame(s), 0..{info.frames - 1}")
    return k


def _check_inside(x: float, y: float, info: ImageInfo, what: str) -> None:
    if not (0 <= x <= info.cols - 1 and 0 <= y <= info.rows - 1):
        raise bad_request(f"{what} is outside the image: x (column) must be in 0..{info.cols - 1} and "
                          f"y (row) in 0..{info.rows - 1}; got x={x:g}, y={y:g}")


def requested_slice(request: dict, info: ImageInfo) -> Optional[int]:
    s = request.get("slice")
    if s is None or s == "" or (isinstance(s, (int, float)) and not isinstance(s, bool) and s < 0 and info.frames == 1):
        return None  # SAM2 convention: -1 = a pure 2D image
    if isinstance(s, str):
        try:
            s = int(s)
        except ValueError:
            raise bad_request(f"slice must be a frame index, got {show(s)}") from None
    return frame_index(s, "slice", info)


def parse_clicks(request: dict, info: ImageInfo, limits: RequestLimits) -> Dict[int, FramePrompt]:
    """All clicks grouped by frame, at most `limits.clicks_per_frame` per frame and `limits.clicks` in all
    (the decoder's memory grows with the clicks of a frame: 10^5 of them would need hundreds of GB)."""
    default_frame = requested_slice(request, info)
    frames: Dict[int, Tuple[List[List[float]], List[int]]] = {}
    total = 0
    for key, label in (("foreground", 1), ("background", 0)):
        clicks = request.get(key)
        if clicks is None or clicks == "":
            continue
        if not isinstance(clicks, (list, tuple)):
            raise bad_request(f"{key} must be a list of clicks like [[i, j, k], ...], got {show(clicks)}")
        total += len(clicks)
        if total > limits.clicks:
            raise too_large(f"{total} clicks or more in one request; this server accepts at most {limits.clicks} "
                            "(--conf max_clicks)")
        for n, click in enumerate(clicks):
            what = f"{key} click #{n} {show(click)}"
            if not isinstance(click, (list, tuple)) or len(click) not in (2, 3):
                raise bad_request(f"{what}: a click is [x, y] for 2D images or [i, j, k] for volumes")
            a, b = (number(v, what) for v in click[:2])
            if len(click) == 3:
                k = frame_index(click[2], f"{what}: frame", info)
            elif default_frame is not None or info.frames == 1:
                k = default_frame or 0
            else:
                raise bad_request(f"{what}: a click on a volume needs its frame: [i, j, k], or give `slice`")
            x, y = a, b
            _check_inside(x, y, info, what)
            points, labels = frames.setdefault(k, ([], []))
            if len(points) >= limits.clicks_per_frame:
                raise too_large(f"more than {limits.clicks_per_frame} clicks on frame {k}; this server accepts at "
                                f"most {limits.clicks_per_frame} per frame (--conf max_clicks_per_frame)")
            points.append([x, y])
            labels.append(label)
    return {k: FramePrompt(np.array(p, dtype=np.float64), np.array(l, dtype=np.int64)) for k, (p, l) in frames.items()}


def parse_roi(request: dict, info: ImageInfo):
    """(box [x1, y1, x2, y2] in frame pixels, frame or None) from `roi`, or (None, None)."""
    roi = request.get("roi")
    if roi is None or roi == "" or roi == []:
        return None, None
    if not isinstance(roi, (list, tuple)) or len(roi) not in (4, 6):
        raise bad_request(f"roi must be [x0, y0, x1, y1] or [i0, i1, j0, j1, k0, k1], got {show(roi)}")
    v = [number(r, f"roi {show(roi)}") for r in roi]
    if len(roi) == 4:
        x0, y0, x1, y1 = v
        frame = 0 if info.frames == 1 else None  # a 2D image has one frame; a volume needs `slice`
    else:
        x0, x1, y0, y1, k0, k1 = v
        k0, k1 = sorted((k0, k1))
        frame = frame_index(float(int((k0 + k1) // 2)), f"roi frame range {k0:g}..{k1:g}", info)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    _check_inside(x0, y0, info, f"roi {show(roi)}")
    _check_inside(x1, y1, info, f"roi {show(roi)}")
    return [x0, y0, x1, y1], frame


def interactive_prompt(request: dict, info: ImageInfo, limits: RequestLimits):
    """(frame, FramePrompt) for a single-frame request."""
    frames = parse_clicks(request, info, limits)
    box, roi_frame = parse_roi(request, info)
    frame = requested_slice(request, info)
    if frame is None:
        candidates = sorted(set(frames) | ({roi_frame} if roi_frame is not None else set()))
        if len(candidates) > 1:
            raise bad_request(f"clicks are on several frames {candidates}; give `slice` to choose one")
        frame = candidates[0] if candidates else None
    if frame is None or (frame not in frames and box is None):
        where = f" on frame {frame}" if frame is not None else ""
        raise bad_request(f"no clicks{where}: give at least one click in `foreground` (or `background`), "
                          "as [x, y] for 2D images or [i, j, k] for volumes, or a box in `roi`")
    prompt = frames.get(frame, FramePrompt())
    prompt.box = None if box is None else np.asarray(box, dtype=np.float64)
    return frame, prompt


def mask_input(request: dict, size: int) -> Optional[np.ndarray]:
    """Optional previous low-res logits (size x size numbers) to refine."""
    m = request.get("mask_input")
    if m is None or m == "":
        return None
    if not isinstance(m, list) or len(m) != size:
        raise bad_request(f"mask_input must be a {size} x {size} array of numbers")
    try:
        a = np.asarray(m, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"mask_input must be a {size} x {size} array of numbers") from None
    if a.shape != (size, size) or not np.all(np.isfinite(a)):
        raise bad_request(f"mask_input must be a {size} x {size} array of finite numbers, got shape {a.shape}")
    return a


def propagation_range(request: dict, info: ImageInfo, limits: RequestLimits) -> Optional[Tuple[int, int]]:
    """`frames: [first, last]` (inclusive) of a propagation, or None for all frames; a propagation segments at
    most `limits.propagation_frames` frames (one encoder pass each)."""
    r = request.get("frames")
    if r is None or r == "" or r == []:
        if info.frames > limits.propagation_frames:
            raise too_large(f"the image has {info.frames} frames; one propagation covers at most "
                            f"{limits.propagation_frames} (--conf max_propagation_frames): give "
                            "`frames: [first, last]`")
        return None
    if not isinstance(r, (list, tuple)) or len(r) != 2:
        raise bad_request(f"frames must be [first, last] (inclusive), got {show(r)}")
    lo, hi = (frame_index(v, "frames", info) for v in r)
    if lo > hi:
        raise bad_request(f"frames [{lo}, {hi}]: first must not be after last")
    if hi - lo + 1 > limits.propagation_frames:
        raise too_large(f"frames [{lo}, {hi}] are {hi - lo + 1} frames; one propagation covers at most "
                        f"{limits.propagation_frames} (--conf max_propagation_frames)")
    return lo, hi
