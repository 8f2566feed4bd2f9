"""Cine loops with exact ground truth, made from one real frame and its mask by simulated probe motion.

A probe held by hand slides, tilts and presses: the picture translates, rotates a little, scales with
breathing or pressure, and the tissue deforms smoothly. `simulate_cine` applies such a motion (a smooth
translation, rotation, scaling and a slowly changing elastic field) to a real image and, with the same
warps (nearest neighbour), to its mask, so every frame has exact ground truth. `amplitude` scales the whole
motion; fewer frames over the same path mean larger steps (like expert masks drawn every tenth frame).
Used by the propagation benchmark and the app's tests.
"""
from typing import Tuple

import numpy as np
from scipy import ndimage


def _smooth_field(rng: np.random.Generator, shape, sigma: float, amplitude: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return f * (amplitude / (np.abs(f).max() + 1e-9))


def simulate_cine(image: np.ndarray, mask: np.ndarray, frames: int = 30, seed: int = 0,
                  amplitude: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """(H x W uint8 image, H x W mask) -> (cine H x W x frames uint8, ground truth H x W x frames uint8).

    Over the loop the picture moves by up to 6% of the height and 8% of the width, turns by up to 6 degrees,
    scales by up to 8% and deforms by up to 6 pixels (all times `amplitude`); frame 0 is nearly the input.
    """
    if image.ndim != 2 or image.shape != np.shape(mask):
        raise ValueError(f"need a grayscale image and a mask of the same size, got {image.shape} and {np.shape(mask)}")
    rng = np.random.default_rng(seed)
    h, w = image.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # Two elastic fields; each frame blends them, so the deformation changes slowly over time.
    fields = [(_smooth_field(rng, (h, w), min(h, w) / 8, 6.0 * amplitude),
               _smooth_field(rng, (h, w), min(h, w) / 8, 6.0 * amplitude)) for _ in range(2)]
    cine = np.zeros((h, w, frames), np.uint8)
    truth = np.zeros((h, w, frames), np.uint8)
    for t in range(frames):
        phase = t / max(frames - 1, 1)
        angle = np.deg2rad(6.0 * amplitude * np.sin(2 * np.pi * phase))
        scale = 1.0 + 0.08 * amplitude * np.sin(4 * np.pi * phase)
        dy = 0.06 * amplitude * h * (phase - 0.5) * 2
        dx = 0.08 * amplitude * w * np.sin(2 * np.pi * phase)
        a = 0.5 - 0.5 * np.cos(np.pi * phase)
        ey = (1 - a) * fields[0][0] + a * fields[1][0]
        ex = (1 - a) * fields[0][1] + a * fields[1][1]
        # Inverse map: output pixel -> source pixel (undo translation, rotation and scale about the centre).
        y, x = rows - cy - dy, cols - cx - dx
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        coords = np.stack([cos * y - sin * x + cy + ey, sin * y + cos * x + cx + ex])
        cine[:, :, t] = np.clip(ndimage.map_coordinates(image.astype(np.float32), coords, order=1, mode="nearest"),
                                0, 255).astype(np.uint8)
        truth[:, :, t] = ndimage.map_coordinates(np.asarray(mask).astype(np.uint8), coords, order=0,
                                                 mode="constant", cval=0)
    return cine, truth
