"""How a model places an image of any size on its square input canvas, and maps prompts and masks back.

SAMUS stretches every image to size x size (the authors' cv2.resize). LiteMedSAM, like MedSAM and SAM,
scales the longest side to `size`, keeps the aspect ratio and pads bottom / right with zeros. Each model
owns one of these; the predictor, the data set, training and evaluation ask it instead of assuming a size.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F


def _nearest_indices(n_out: int, n_in: int) -> np.ndarray:
    # nearest-exact: the source pixel under each target pixel centre
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


@dataclass(frozen=True)
class StretchToSquare:
    """The whole image resized to size x size (bilinear, no antialiasing, as cv2.INTER_LINEAR)."""

    size: int = 256

    def content_shape(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        return self.size, self.size

    def image(self, gray: np.ndarray) -> torch.Tensor:
        """H x W float32 in [0, 1] -> 1 x 1 x size x size."""
        g = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None, None]
        h, w = self.content_shape(gray.shape)
        if g.shape[-2:] != (h, w):
            g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)
        return self._pad(g)

    def _pad(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """H x W bool -> size x size uint8 (nearest, as the authors), zero on the padding."""
        m = np.asarray(mask, dtype=np.uint8)
        h, w = self.content_shape(m.shape)
        rows, cols = _nearest_indices(h, m.shape[0]), _nearest_indices(w, m.shape[1])
        out = np.zeros((self.size, self.size), np.uint8)
        out[:h, :w] = m[rows[:, None], cols[None, :]]
        return torch.from_numpy(out)

    def coords(self, xy, hw: Tuple[int, int]) -> np.ndarray:
        """Pixel (x=column, y=row) of the original image -> the same place on the canvas.

        Pixel centres map to pixel centres: (x + 0.5) * scale - 0.5 (the prompt encoder adds the 0.5 back).
        """
        h, w = self.content_shape(hw)
        scale = np.array([w / hw[1], h / hw[0]])
        return (np.asarray(xy, dtype=np.float64) + 0.5) * scale - 0.5

    def original_coords(self, xy, hw: Tuple[int, int]) -> np.ndarray:
        h, w = self.content_shape(hw)
        scale = np.array([hw[1] / w, hw[0] / h])
        return (np.asarray(xy, dtype=np.float64) + 0.5) * scale - 0.5

    def to_original(self, logits: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """B x C x L x L low-res logits (L any size covering the canvas) -> B x C x H x W (bilinear)."""
        h, w = self.content_shape(hw)
        low = logits.shape[-1]
        ch, cw = max(1, round(h * low / self.size)), max(1, round(w * low / self.size))
        return F.interpolate(logits[..., :ch, :cw].float(), size=tuple(hw), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class LongestSideAndPad(StretchToSquare):
    """Longest side scaled to `size` (antialiased bilinear), aspect ratio kept, zero padding bottom / right."""

    def content_shape(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        h, w = hw
        scale = self.size / max(h, w)
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))

    def image(self, gray: np.ndarray) -> torch.Tensor:
        g = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None, None]
        h, w = self.content_shape(gray.shape)
        if g.shape[-2:] != (h, w):
            g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        return self._pad(g)

    def _pad(self, t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, self.size - t.shape[-1], 0, self.size - t.shape[-2]))
