"""Segmentation targets of a label: class maps, binary masks, one target per class or per separate structure."""
from typing import List, Optional, Tuple

import numpy as np

from ..io import cached_read, require_file, take_frame

ALL_CLASSES = "all"  # class_id meaning "every labelled class, each one a separate target"


def class_map(mask: np.ndarray) -> np.ndarray:
    """H x W [x C] label -> H x W integer class ids (0 = background).

    0/1 and class-id labels keep their values; a binary label saved as 0/255 (or 0/65535) becomes 0/1;
    colour labels use their largest channel.
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.ndim != 2:
        raise ValueError(f"label must be H x W (got shape {m.shape})")
    if m.dtype == bool:
        return m.astype(np.uint8)
    if np.issubdtype(m.dtype, np.floating):
        m = np.rint(m)
    top = m.max() if m.size else 0
    if top in (255, 65535):
        fg = m == top
        if not np.any(m[~fg]):  # only 0 and the top value: a binary label saved as 0/255
            return fg.astype(np.uint8)
    return m


def binarize_mask(mask: np.ndarray, class_id=1) -> np.ndarray:
    """H x W [x C] label -> H x W bool of `class_id` (`ALL_CLASSES`: any labelled class)."""
    m = class_map(mask)
    return m != 0 if class_id == ALL_CLASSES else m == class_id


def label_targets(label: np.ndarray, class_id=1, components: bool = False,
                  min_fraction: float = 0.0) -> List[Tuple[int, np.ndarray]]:
    """The segmentation targets of one label frame as [(class id, H x W bool)].

    One target per class (`class_id`, or every class present with `ALL_CLASSES`); with `components`, one per
    8-connected structure of each class, because a click on one nerve must segment that nerve, not every
    nerve. Structures smaller than `min_fraction` of the image are annotation specks, not targets. A label
    without any target gives one empty target (a "nothing here" sample)."""
    from scipy import ndimage

    m = class_map(label)
    classes = [int(c) for c in np.unique(m) if c != 0] if class_id == ALL_CLASSES else [int(class_id)]
    targets: List[Tuple[int, np.ndarray]] = []
    for c in classes:
        fg = m == c
        if not components:
            if fg.any() or class_id != ALL_CLASSES:
                targets.append((c, fg))
            continue
        regions, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
        areas = np.bincount(regions.ravel(), minlength=n + 1)[1:]
        targets += [(c, regions == i + 1) for i in range(n) if areas[i] >= max(1.0, min_fraction * m.size)]
    if not targets:
        targets.append((classes[0] if classes else 1, np.zeros(m.shape, bool)))
    return targets


def load_mask(path, class_id=1, frame: Optional[int] = None, cache: Optional[dict] = None) -> np.ndarray:
    """A label (or one frame of a label volume) as an H x W bool mask of `class_id`."""
    path = require_file(path, "label")
    return binarize_mask(take_frame(cached_read(path, cache), frame, path), class_id)
