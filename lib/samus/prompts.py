"""Prompt simulation on 256 x 256 masks, as in the SAMUS authors' data pipeline.

All points are (x=column, y=row) in the mask's pixel space; labels are 1 (positive) / 0 (negative).
Random choices come from a numpy Generator passed in, so the caller controls seeding.
"""
from typing import Optional, Sequence, Tuple

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


# ---- interactive click simulation (training and evaluation) -------------------------------------------
def next_click(pred: np.ndarray, gt: np.ndarray, rng: Optional[np.random.Generator] = None,
               previous: Sequence[Sequence[float]] = (), spread: float = 0.0) -> Optional[Tuple[int, int, int]]:
    """The corrective click for prediction `pred` against `gt` as (x, y, label), or None when pred == gt.

    The largest 8-connected region of missed foreground (label 1) or false foreground (label 0) is chosen
    (ties: missed foreground first, then the region met first in row-major order). The click lands away
    from that region's boundary: with `spread` 0 (evaluation) on a pixel farthest from it; with `spread` s
    (training) on any pixel at least (1 - s) times that far, so simulated users are not all alike. Equal
    candidates are chosen between with `rng` (first in row-major order without one); pixels already
    clicked are avoided while the region has others.
    """
    from scipy import ndimage

    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    best = None  # (area, label, labelled regions, region index)
    for label, error in ((1, gt & ~pred), (0, pred & ~gt)):
        if not error.any():
            continue
        regions, n = ndimage.label(error, structure=np.ones((3, 3), bool))
        areas = np.bincount(regions.ravel(), minlength=n + 1)[1:]
        i = int(np.argmax(areas))  # first largest region in row-major order of first pixel
        if best is None or areas[i] > best[0]:
            best = (int(areas[i]), label, regions, i + 1)
    if best is None:
        return None
    area, label, regions, index = best
    # The distance transform only over the region's bounding box (+1 pixel): the same values, much cheaper.
    box = ndimage.find_objects((regions == index).astype(np.int32))[0]
    y0, x0 = max(box[0].start - 1, 0), max(box[1].start - 1, 0)
    y1, x1 = min(box[0].stop + 1, gt.shape[0]), min(box[1].stop + 1, gt.shape[1])
    region = regions[y0:y1, x0:x1] == index
    dist = _interior_distance_in(region, (y0, x0, y1, x1), gt.shape)
    for x, y, *_ in previous:
        xi, yi = int(round(x)) - x0, int(round(y)) - y0
        if 0 <= yi < dist.shape[0] and 0 <= xi < dist.shape[1] and area > 1:
            dist[yi, xi] = 0.0
    top = dist.max()
    ys, xs = np.nonzero(dist >= top * (1.0 - spread) if spread > 0 else dist == top)
    j = int(rng.integers(len(ys))) if rng is not None and len(ys) > 1 else 0
    return int(xs[j]) + x0, int(ys[j]) + y0, label


def _interior_distance_in(region: np.ndarray, window, shape) -> np.ndarray:
    """`interior_distance` of a region cut out of a larger image: the cut edges that are not the image
    border are outside the region anyway (the window has a 1-pixel margin), the image border counts."""
    from scipy import ndimage

    y0, x0, y1, x1 = window
    pad = ((int(y0 == 0), int(y1 == shape[0])), (int(x0 == 0), int(x1 == shape[1])))
    padded = np.pad(region, pad)
    dist = ndimage.distance_transform_edt(padded)
    return dist[pad[0][0]:dist.shape[0] - pad[0][1], pad[1][0]:dist.shape[1] - pad[1][1]]


def near_background_clicks(mask: np.ndarray, rng: np.random.Generator, n: int,
                           band: float = 0.5) -> np.ndarray:
    """`n` background pixels (y, x) within `band` x the object's size of it, where users put negative
    clicks to cut leaks; anywhere in the background when the band is empty."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    if n <= 0:
        return np.zeros((0, 2), np.int64)
    bg = ~m
    if m.any():
        ys, xs = np.nonzero(m)
        reach = max(3.0, band * max(ys.ptp() + 1, xs.ptp() + 1))
        near = bg & (ndimage.distance_transform_edt(bg) <= reach)
        if near.any():
            bg = near
    pix = np.argwhere(bg)
    if len(pix) == 0:
        return np.zeros((0, 2), np.int64)
    return pix[rng.integers(0, len(pix), n)]


# Labels of a padded prompt row: SAM's point-embedding indices (0 negative, 1 positive, 2 / 3 the box's
# top-left / bottom-right corner) and -1 for "no point" (SAM's padding).
PAD_LABEL, BOX_TL_LABEL, BOX_BR_LABEL = -1, 2, 3


def first_prompt(mask: np.ndarray, rng: np.random.Generator, max_points: int,
                 p_single: float = 0.5, p_box: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """The first prompt of a simulated interactive session, as `max_points` padded rows (x, y), label:

    - with probability `p_single`, one uniformly random positive click (the authors' training prompt);
    - with probability `p_box`, a jittered box (its corners labelled 2 and 3), half the time with a click;
    - otherwise 1-3 positive clicks and 0-3 negative clicks, the negatives half the time near the object.
    An empty mask gets random negative clicks, as `random_clicks`.
    """
    m = np.asarray(mask, bool)
    u = rng.random()
    rows = []
    if u < p_single or not m.any():
        xy, lab = random_clicks(m, rng, 1, 0)
        rows = [(x, y, l) for (x, y), l in zip(xy, lab)]
    elif u < p_single + p_box:
        x1, y1, x2, y2 = jittered_box(m, rng)
        rows = [(x1, y1, BOX_TL_LABEL), (x2, y2, BOX_BR_LABEL)]
        if rng.random() < 0.5:
            xy, lab = random_clicks(m, rng, 1, 0)
            rows.append((xy[0, 0], xy[0, 1], 1))
    else:
        pos, neg = int(rng.integers(1, 4)), int(rng.integers(0, 4))
        xy, lab = random_clicks(m, rng, pos, 0 if rng.random() < 0.5 else neg)
        rows = [(x, y, l) for (x, y), l in zip(xy, lab)]
        if len(rows) == pos and neg:
            rows += [(x, y, 0) for y, x in near_background_clicks(m, rng, neg)]
    rows = rows[:max_points]
    coords = np.zeros((max_points, 2), np.float32)
    labels = np.full(max_points, PAD_LABEL, np.int64)
    for i, (x, y, l) in enumerate(rows):
        coords[i] = (x, y)
        labels[i] = l
    return coords, labels
