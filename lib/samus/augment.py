"""The SAMUS authors' training augmentation, applied jointly to a 256 x 256 image and its mask.

In order, each with probability 0.5: gamma v -> v^(1/g), g in {1.0, 1.1, ..., 2.4}; rotation by U(-30, 30)
degrees about the centre; scale by s ~ U(1, 1.3) followed by a random 256 crop; contrast factor U(0.8, 2.0)
(blend with the image mean, as torchvision's adjust_contrast). The image is resampled bilinearly, the mask
with nearest neighbour (the authors also rotate the image with nearest; bilinear avoids jagged edges).
Plain torch ops on 1 x H x W tensors: a few milliseconds per sample on a CPU.
"""
import math
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

GAMMAS = np.round(np.arange(1.0, 2.45, 0.1), 1)


def adjust_gamma(image: torch.Tensor, g: float) -> torch.Tensor:
    return image.clamp(0, 1) ** (1.0 / g)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * image + (1 - factor) * image.mean()).clamp(0, 1)


def rotate_pair(image: torch.Tensor, mask: torch.Tensor, degrees: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate a square image and its mask about the centre; pixels from outside become 0."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, 1, *image.shape[-2:]], align_corners=False)
    img = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    msk = F.grid_sample(mask[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return img, msk


def scale_crop_pair(image: torch.Tensor, mask: torch.Tensor, s: float, rng: np.random.Generator):
    """Enlarge by `s` (image bilinear, mask nearest) and cut a random crop of the original size."""
    h, w = image.shape[-2:]
    nh, nw = int(h * s), int(w * s)
    img = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    msk = F.interpolate(mask[None], size=(nh, nw), mode="nearest-exact")[0]
    top, left = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
    return img[:, top:top + h, left:left + w], msk[:, top:top + h, left:left + w]


def augment_pair(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator,
                 p: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """image: 1 x H x W float in [0, 1]; mask: 1 x H x W float {0, 1}. Returns new tensors."""
    if rng.random() < p:
        image = adjust_gamma(image, float(rng.choice(GAMMAS)))
    if rng.random() < p:
        image, mask = rotate_pair(image, mask, float(rng.uniform(-30, 30)))
    if rng.random() < p:
        image, mask = scale_crop_pair(image, mask, float(rng.uniform(1.0, 1.3)), rng)
    if rng.random() < p:
        image = adjust_contrast(image, float(rng.uniform(0.8, 2.0)))
    return image.contiguous(), mask.contiguous()
