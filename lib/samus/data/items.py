"""Sample items: small dicts naming an image, its label, the class and the frame of a volume.

    {"image": path, "mask": path, "class_id": 1, "frame": None or k, "id": "name"}

`frame` indexes the LAST axis of a volume (3D or 2D+time, H x W x frames as stored on disk), so one
NIfTI/NRRD file gives one item per frame whose label holds the class.
"""
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..io import cached_read, file_stem, is_volume_file, load_image, read_array, require_file, spatial_size, take_frame
from .targets import ALL_CLASSES, binarize_mask

Item = Dict[str, object]


def make_item(image, mask, class_id=1, frame: Optional[int] = None, id: Optional[str] = None) -> Item:
    image, mask = os.fspath(image), os.fspath(mask)
    if id is None:
        id = file_stem(image) + (f"#{frame}" if frame is not None else "")
    return {"image": image, "mask": mask, "class_id": checked_class_id(class_id), "frame": frame, "id": id}


def checked_class_id(class_id):
    if class_id == ALL_CLASSES:
        return ALL_CLASSES
    try:
        value = int(class_id)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(class_id).strip():
        raise ValueError(f"class id must be a label value >= 1 or {ALL_CLASSES!r}, got {class_id!r}")
    return value


def pair_items(pairs: Iterable[Tuple[object, object]], class_id=1, labelled_only: bool = True) -> List[Item]:
    """(image, label) file pairs -> items. Volumes expand to one item per frame (last axis); with
    `labelled_only`, frames whose label lacks `class_id` are skipped (they are not training samples)."""
    items: List[Item] = []
    for image, label in pairs:
        image = require_file(image, "image")
        label = require_file(label, "label")
        if not is_volume_file(image) and not is_volume_file(label):
            items.append(make_item(image, label, class_id))
            continue
        items.extend(volume_items(image, label, class_id, labelled_only))
    return items


def volume_items(image, label, class_id=1, labelled_only: bool = True) -> List[Item]:
    """One item per frame (last axis) of a 3D / 2D+time volume; frames without the class are skipped."""
    image = require_file(image, "image")
    label = require_file(label, "label")
    lab, n = read_array(label)
    size = spatial_size(image)
    if n is None:
        lab, n = lab[:, :, None], 1
    if size[:2] != tuple(lab.shape[:2]) or (size[2:] or (1,))[0] != n:
        raise ValueError(f"image {image} (size {size}) and label {label} (size {tuple(lab.shape[:3])}) differ in size")
    is_volume = len(size) == 3
    items = []
    for k in range(n):
        if labelled_only and not binarize_mask(lab[:, :, k], class_id).any():
            continue
        items.append(make_item(image, label, class_id, frame=k if is_volume else None,
                               id=f"{file_stem(image)}#{k}" if is_volume else None))
    return items



def load_pair(item: Item, cache: Optional[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """(image, label frame) of an item at the original size; errors name the offending files."""
    image = load_image(item["image"], item.get("frame"), cache)
    label = take_frame(cached_read(require_file(item["mask"], "label"), cache), item.get("frame"), item["mask"])
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"image {item['image']} is {image.shape[1]}x{image.shape[0]} but its mask {item['mask']} "
                         f"is {label.shape[1]}x{label.shape[0]}")
    return image, label
