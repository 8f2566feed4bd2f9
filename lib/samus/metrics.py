"""Per-image segmentation metrics (Dice, IoU, HD95) on binary 2D masks, computed with MONAI.

Conventions (documented in the README's evaluation section):
- Dice and IoU are exact (no smoothing term); when ground truth and prediction are both empty they are 1,
  when exactly one of them is empty they are 0.
- HD95 is the symmetric boundary Hausdorff distance, 95th percentile, in pixels of the evaluated mask
  (MONAI `compute_hausdorff_distance`, Euclidean). It is undefined (NaN) when either mask is empty;
  summaries skip NaNs and report how many there were. This is NOT the authors' number: their code calls the
  `hausdorff` package on whole rows of the 256x256 masks (see spec section 5.1).
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable

import numpy as np
import torch


def _as_batch(mask: np.ndarray) -> torch.Tensor:
    """HxW binary mask -> 1 x 1 x H x W float tensor (MONAI's one-hot-per-channel layout)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {mask.shape}")
    return torch.from_numpy(mask.astype(bool, copy=False).astype(np.float32))[None, None]


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"prediction {np.shape(pred)} and ground truth {np.shape(gt)} differ in shape")


# MONAI is imported inside the functions: it takes seconds, and `samus predict` never needs it.
def dice_score(pred: np.ndarray, gt: np.ndarray) -> float:
    from monai.metrics import compute_dice

    _check_pair(pred, gt)
    return float(compute_dice(_as_batch(pred), _as_batch(gt), include_background=True, ignore_empty=False)[0, 0])


def iou_score(pred: np.ndarray, gt: np.ndarray) -> float:
    from monai.metrics import compute_iou

    _check_pair(pred, gt)
    return float(compute_iou(_as_batch(pred), _as_batch(gt), include_background=True, ignore_empty=False)[0, 0])


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: float | tuple[float, float] | None = None) -> float:
    """Symmetric 95th-percentile boundary Hausdorff distance; NaN when either mask is empty."""
    from monai.metrics import compute_hausdorff_distance

    _check_pair(pred, gt)
    if not np.any(pred) or not np.any(gt):
        return math.nan
    with warnings.catch_warnings():  # MONAI warns about empty edge sets; emptiness is handled above
        warnings.simplefilter("ignore")
        value = float(compute_hausdorff_distance(
            _as_batch(pred), _as_batch(gt), include_background=True, distance_metric="euclidean",
            percentile=95, spacing=spacing)[0, 0])
    return value if math.isfinite(value) else math.nan


def segmentation_metrics(pred: np.ndarray, gt: np.ndarray) -> dict:
    """All per-image numbers the evaluation report stores for one prediction."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    return {
        "dice": dice_score(pred, gt),
        "iou": iou_score(pred, gt),
        "hd95": hd95(pred, gt),
        "gt_area": int(gt.sum()),
        "pred_area": int(pred.sum()),
    }


def summarize(values: Iterable[float]) -> dict:
    """Mean and (population) std over the finite values, plus how many were NaN and skipped."""
    arr = np.asarray([v if v is not None else math.nan for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "n": int(finite.size),
        "n_nan": int(arr.size - finite.size),
    }
