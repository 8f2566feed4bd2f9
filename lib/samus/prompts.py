"""Prompt simulation on 256 x 256 masks, as in the SAMUS authors' data pipeline.

All points are (x=column, y=row) in the mask's pixel space; labels are 1 (positive) / 0 (negative).
Random choices come from a numpy Generator passed in, so the caller controls seeding.
"""
from typing import Tuple

import numpy as np


def _pixels(mask: np.ndarray) -> np.ndarray:
    """Row-major (y, x) list of the True pixels of a 2D mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D (got shape {mask.shape})")
    return np.argwhere(mask.astype(bool))


def random_clicks(mask: np.ndarray, rng: np.random.Generator, positives: int = 1,
                  negatives: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """`positives` uniformly random foreground pixels (label 1) + `negatives` background pixels (label 0).

    The authors' training rule is positives=1, negatives=0. When the class is absent every click is a random
    background pixel with label 0, as theirs. Returns (N x 2 float32 (x, y), N int64).
    """
    fg, bg = _pixels(mask), _pixels(~np.asarray(mask, bool))
    if len(fg) == 0:
        positives, negatives = 0, positives + negatives
    if negatives and len(bg) == 0:  # the object fills the image: no background to click
        positives, negatives = positives + negatives, 0
    yx = np.concatenate([fg[rng.integers(0, len(fg), positives)], bg[rng.integers(0, len(bg), negatives)]])
    labels = np.array([1] * positives + [0] * negatives, dtype=np.int64)
    return yx[:, ::-1].astype(np.float32), labels


def interior_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each mask pixel to the nearest pixel outside it, the image border counting as
    outside: the deepest point is where a click is least ambiguous (corrective clicks, propagation)."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(np.pad(np.asarray(mask, bool), 1))[1:-1, 1:-1]


def middle_click(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The authors' deterministic evaluation click: element floor(n/2) of the row-major foreground pixels
    (label 1); on an empty mask the same rule over the background (label 0). Returns (1x2 (x, y), [label])."""
    fg = _pixels(mask)
    label = 1
    if len(fg) == 0:
        fg, label = _pixels(~np.asarray(mask, bool)), 0
    y, x = fg[len(fg) // 2]
    return np.array([[x, y]], dtype=np.float32), np.array([label], dtype=np.int64)


def tight_box(mask: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) bounding the foreground; the whole image for an empty mask."""
    fg = _pixels(mask)
    h, w = np.asarray(mask).shape
    if len(fg) == 0:
        return np.array([0, 0, w - 1, h - 1], dtype=np.float32)
    (y1, x1), (y2, x2) = fg.min(0), fg.max(0)
    return np.array([x1, y1, x2, y2], dtype=np.float32)


def jittered_box(mask: np.ndarray, rng: np.random.Generator, scale: Tuple[float, float] = (0.95, 1.05),
                 shift: float = 0.05) -> np.ndarray:
    """Tight box with width/height scaled by U[0.95, 1.05] and the centre moved by up to 5% of the size,
    clipped to the image (the authors' training box)."""
    h, w = np.asarray(mask).shape
    x1, y1, x2, y2 = tight_box(mask).astype(np.float64)
    if not _pixels(mask).size:
        return np.array([x1, y1, x2, y2], dtype=np.float32)
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    cx = (x1 + x2) / 2 + rng.uniform(-shift, shift) * bw
    cy = (y1 + y2) / 2 + rng.uniform(-shift, shift) * bh
    bw, bh = bw * rng.uniform(*scale), bh * rng.uniform(*scale)
    box = np.array([cx - (bw - 1) / 2, cy - (bh - 1) / 2, cx + (bw - 1) / 2, cy + (bh - 1) / 2])
    return np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
