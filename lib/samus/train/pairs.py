"""Training on explicit (image, label) pairs, as the MONAI Label trainer does, and the train/val split."""
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.items import Item, pair_items
from .config import ProgressFn, TrainConfig
from .loop import train


def split_items(items: Sequence[Item], val_fraction: float, seed: int = 0) -> Tuple[List[Item], List[Item]]:
    """Random train/val split by image file (frames of one volume stay together)."""
    files = sorted({str(it["image"]) for it in items})
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1) (got {val_fraction})")
    n_val = int(round(len(files) * val_fraction))
    if val_fraction > 0 and len(files) > 1:
        n_val = min(max(n_val, 1), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    val_files = {files[i] for i in order[:n_val]}
    return [it for it in items if str(it["image"]) not in val_files], [it for it in items if str(it["image"]) in val_files]


def label_recipe(mode: str) -> Dict[str, Any]:
    """The bundled models' loss recipe for fine-tuning on users' labels (MODEL_CARD.md), used by the MONAI
    Label trainer and benchmarks/bench_new_organ.py: the IoU head learns too where it is trainable (`mode`
    full), and masks are pushed to hold every positive click and no negative one."""
    return {"iou_loss_weight": 1.0 if mode == "full" else 0.0, "click_loss_weight": 0.5}


def train_on_pairs(pairs: Sequence[Tuple[str, str]], val_pairs: Optional[Sequence[Tuple[str, str]]] = None,
                   val_fraction: float = 0.2, class_id: int = 1, progress: Optional[ProgressFn] = None,
                   should_stop: Optional[Callable[[], bool]] = None, **options) -> Dict[str, Any]:
    """Train on (image path, label path) pairs - 2D images or volumes (labelled frames only). Without
    `val_pairs`, `val_fraction` of the files is held out for validation. `options` are TrainConfig fields.
    This is what the MONAI Label trainer calls in-process."""
    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}")
    cfg = TrainConfig(**options)
    items = pair_items(pairs, class_id)
    if not items:
        raise ValueError("no labelled samples in the given image/label pairs")
    if val_pairs is not None:
        train_items, val_items = items, pair_items(val_pairs, class_id)
    else:
        train_items, val_items = split_items(items, val_fraction, cfg.seed)
    return train(cfg, train_items, val_items, progress=progress, should_stop=should_stop)
