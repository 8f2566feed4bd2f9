"""Image preprocessing as the SAMUS authors do it: grayscale, [0, 1], 256 x 256, no mean/std normalisation."""
from typing import Tuple

import numpy as np
import torch

from .geometry import StretchToSquare

# ITU-R BT.601 luma, as OpenCV's grayscale conversion (the authors read images with cv2 flag 0).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def to_unit_grayscale(image) -> np.ndarray:
    """HxW or HxWxC array of any numeric dtype -> HxW float32 grayscale in [0, 1].

    uint8 (and integer images whose values fit in 8 bits) are divided by 255; other integer images by the
    largest value of their bit depth (12-bit data by 4095, 16-bit by 65535); float images already in [0, 1]
    are kept, others are min-max scaled.
    """
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"image must be numeric, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[..., 0] if a.shape[2] == 1 else _luma(a[..., :3])
    elif a.ndim != 2:
        raise ValueError(f"image must be HxW or HxWxC with C in 1, 3, 4; got shape {a.shape}")
    if a.size == 0 or min(a.shape) < 2:
        raise ValueError(f"image is empty or degenerate (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    if np.issubdtype(np.asarray(image).dtype, np.integer) or np.asarray(image).dtype == bool:
        top = float(np.max(a))
        if np.min(a) < 0:
            raise ValueError("integer image has negative values")
        scale = 255.0 if top <= 255 else float(2 ** int(np.ceil(np.log2(top + 1))) - 1)
        return (a.astype(np.float32) / scale).clip(0, 1)
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return a
    return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.tensordot(rgb.astype(np.float64), _LUMA, axes=([2], [0]))


def preprocess_image(image, size: int = 256) -> torch.Tensor:
    """-> 1 x 1 x size x size float32 tensor (bilinear resize without antialiasing, as cv2.INTER_LINEAR)."""
    return resize_unit_grayscale(to_unit_grayscale(image), size)


def resize_unit_grayscale(gray: np.ndarray, size: int = 256) -> torch.Tensor:
    """The resize half of `preprocess_image`, for an image `to_unit_grayscale` already produced."""
    return StretchToSquare(size).image(gray)


def to_model_coords(xy: np.ndarray, original_size: Tuple[int, int], size: int = 256) -> np.ndarray:
    """Pixel (x=column, y=row) of the original image -> the same place in the size x size input.

    Pixel centres map to pixel centres: (x + 0.5) * size / W - 0.5 (the prompt encoder adds the 0.5 back).
    """
    return StretchToSquare(size).coords(xy, original_size)


def to_original_coords(xy: np.ndarray, original_size: Tuple[int, int], size: int = 256) -> np.ndarray:
    return StretchToSquare(size).original_coords(xy, original_size)
