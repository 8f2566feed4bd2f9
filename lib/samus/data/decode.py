"""Items decoded onto the model's canvas: the image as the model sees it and its targets' masks."""
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..geometry import StretchToSquare
from ..io import spatial_size
from ..preprocess import preprocess_image, to_unit_grayscale
from .items import Item, load_pair
from .targets import binarize_mask, label_targets

IMAGE_SIZE = 256
LOW_RES_SIZE = 128


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """H x W bool -> size x size uint8 tensor (nearest, as the authors)."""
    return StretchToSquare(size).mask(mask)



def model_image(item: Item, image: np.ndarray, model=None) -> torch.Tensor:
    try:
        if model is None:
            return preprocess_image(image, IMAGE_SIZE)[0, 0]
        return model.preprocess(to_unit_grayscale(image))[0, 0]
    except ValueError as e:
        raise ValueError(f"image {item['image']}: {e}") from e


def decode_item(item: Item, cache: Optional[dict] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """-> (256 x 256 float32 image in [0, 1], 256 x 256 uint8 mask of the item's class)."""
    image, label = load_pair(item, cache)
    return model_image(item, image), resize_mask(binarize_mask(label, item.get("class_id", 1)), IMAGE_SIZE)


def decode_targets(item: Item, cache: Optional[dict] = None, components: bool = False,
                   min_fraction: float = 0.0, model=None, flip: bool = False
                   ) -> Tuple[torch.Tensor, List[Tuple[int, torch.Tensor]]]:
    """-> (256 x 256 float32 image, [(class id, 256 x 256 uint8 mask)] of `label_targets`). Targets found at
    the original size that vanish at 256 x 256 are dropped (at least one target is always kept).

    `model` places image and masks on its own canvas (`model.preprocess`, `model.geometry`; default: SAMUS's
    256 x 256 stretch); `flip` mirrors image and masks left-right at the original size first."""
    image, label = load_pair(item, cache)
    if flip:
        image, label = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])
    found = label_targets(label, item.get("class_id", 1), components, min_fraction)
    to_canvas = (lambda m: resize_mask(m, IMAGE_SIZE)) if model is None else model.geometry.mask
    targets = [(c, to_canvas(m)) for c, m in found]
    kept = [t for t in targets if t[1].any()] or targets[:1]
    return model_image(item, image, model), kept


def image_shape(item: Item) -> Tuple[int, int]:
    """(rows, columns) of an item's image from its header, without decoding the pixels."""
    rows, cols = spatial_size(os.fspath(item["image"]))[:2]
    return int(rows), int(cols)


def decode_all(items: Sequence[Item], fn) -> list:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one small resize per call: intra-op threads only add overhead here
    try:
        if all(it.get("frame") is None for it in items) and len(items) > 8:
            # 2D files: decode in threads (Pillow and torch release the GIL).
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                return list(pool.map(lambda it: fn(it, None), items))
        cache: dict = {}  # volume items of one file are adjacent, so each volume is read once
        return [fn(it, cache) for it in items]
    finally:
        torch.set_num_threads(threads)
