"""PNG overlays for looking at evaluation cases: image, ground-truth contour, prediction and clicks.

Colours: ground truth = yellow contour; prediction = translucent blue fill with a blue contour;
positive clicks = green dots, negative clicks = red dots (both ringed in white so they show on any tissue).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

GT_COLOR = (255, 220, 0)
PRED_COLOR = (0, 120, 255)
POS_COLOR = (0, 200, 0)
NEG_COLOR = (230, 0, 0)


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    """Any HxW / HxWxC numeric image -> HxWx3 uint8; min/max stretched unless uint8 or float in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        is_float = np.issubdtype(image.dtype, np.floating)
        image = image.astype(np.float64)
        lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
        if is_float and lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0  # already [0, 1] intensities (e.g. preprocessed): keep the contrast
        image = np.zeros(image.shape, np.uint8) if hi <= lo else ((image - lo) / (hi - lo) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Inner boundary pixels of a binary mask (mask minus its erosion)."""
    mask = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, iterations=thickness, border_value=0)
    return mask & ~eroded


def render_overlay(image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None,
                   clicks: Sequence[Sequence[float]] = (), title: str | None = None) -> Image.Image:
    """Returns an RGB PIL image; clicks are (x, y, label) with label 1 = positive, 0 = negative."""
    rgb = to_display_rgb(image).astype(np.float32)
    h, w = rgb.shape[:2]
    thickness = max(1, round(max(h, w) / 256))
    if pred is not None:
        pred = np.asarray(pred, dtype=bool)
        rgb[pred] = 0.65 * rgb[pred] + 0.35 * np.asarray(PRED_COLOR, np.float32)
        rgb[contour(pred, thickness)] = PRED_COLOR
    if gt is not None:
        rgb[contour(np.asarray(gt, dtype=bool), thickness)] = GT_COLOR
    out = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    radius = max(3, round(max(h, w) / 80))
    for x, y, label in clicks:
        color = POS_COLOR if int(label) == 1 else NEG_COLOR
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color, outline=(255, 255, 255))
    if title:
        draw.rectangle([0, 0, w, 12], fill=(0, 0, 0))
        draw.text((2, 0), title, fill=(255, 255, 255))
    return out


def save_overlay(path: str | Path, image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None,
                 clicks: Sequence[Sequence[float]] = (), title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_overlay(image, gt, pred, clicks, title).save(path)
    return path
