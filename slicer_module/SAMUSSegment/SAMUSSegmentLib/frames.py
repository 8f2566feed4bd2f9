"""Frame-level mask operations on [k, j, i] label arrays, and an in-memory mask store.

The Slicer module stores masks in segmentation nodes (`batched.BatchedMasks` over a scene
layer) with the same small interface as `ArrayMaskStore` (n_frames, frame_shape, read_frames,
write_frames, read_frame, write_frame, segment_volume, batch), so the session logic never needs
to know where masks live.
"""
from __future__ import annotations

import contextlib

import numpy as np


def check_frame(frame: int, n_frames: int) -> int:
    frame = int(frame)
    if not 0 <= frame < n_frames:
        raise IndexError(f"frame {frame} is outside the image (it has {n_frames} frames: 0..{n_frames - 1})")
    return frame


def write_frame(volume: np.ndarray, frame: int, mask, value: int = 1) -> bool:
    """Makes frame `frame` of `volume` hold `value` exactly where `mask` is set.

    Other labels on that frame are kept except where the new mask covers them; other frames
    are untouched. Returns whether anything changed.
    """
    frame = check_frame(frame, volume.shape[0])
    mask = np.asarray(mask) > 0
    if mask.shape != volume.shape[1:]:
        raise ValueError(f"mask shape {mask.shape} does not match the frame shape {volume.shape[1:]}")
    current = volume[frame]
    new = np.where(mask, value, np.where(current == value, 0, current)).astype(volume.dtype)
    if np.array_equal(new, current):
        return False
    volume[frame] = new
    return True


def frame_from_result(result: np.ndarray, frame: int, frame_shape) -> np.ndarray:
    """Extracts one frame's binary mask from a label array the server returned.

    The server answers with a label volume in the input's geometry ([k, j, i]); a single
    frame may also come back as a 2D [j, i] array.
    """
    result = np.asarray(result)
    frame_shape = tuple(frame_shape)
    if result.ndim == 2:
        result = result[None]
    if result.ndim != 3 or result.shape[1:] != frame_shape:
        raise ValueError(f"server result has shape {result.shape}, expected frames of shape {frame_shape}")
    if result.shape[0] == 1:
        return result[0] > 0
    return result[check_frame(frame, result.shape[0])] > 0


def array_from_scalars(scalars, dims_ijk, components: int = 1) -> np.ndarray:
    """VTK image scalars (I varies fastest) as [k, j, i], or [k, j, i, c] with several components."""
    flat = np.asarray(scalars)
    dims = tuple(int(d) for d in dims_ijk)
    components = int(components)
    if len(dims) != 3 or min(dims) < 1 or components < 1:
        raise ValueError(f"cannot make an array of dimensions {dims} with {components} components")
    if flat.size != int(np.prod(dims)) * components:
        raise ValueError(f"the image has {flat.size} values, expected {int(np.prod(dims)) * components} "
                         f"for dimensions {dims} with {components} components")
    shape = dims[::-1] + ((components,) if components > 1 else ())
    return flat.reshape(shape)


# ITU-R BT.601 luma weights: what ultrasound scanners and video codecs use for Y.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_grayscale(array: np.ndarray, has_components: bool) -> np.ndarray:
    """Grey frames from vector (colour) frames [..., c]; scalar frames are returned as they are.

    Luminance of R, G, B; a 4th component is alpha and is ignored (Slicer loads RGBA PNGs with 4
    components: averaging them would add a constant alpha and lose a quarter of the contrast).
    Two components are grey + alpha: the grey is kept. Integer input stays in its type (uint8
    stays uint8, a quarter of the upload of float32); float input becomes float32.
    """
    array = np.asarray(array)
    if not has_components:
        return array
    components = array.shape[-1]
    if components < 3:
        grey = array[..., 0]
        return grey if np.issubdtype(array.dtype, np.integer) else grey.astype(np.float32)
    rgb = array[..., :3].astype(np.float32)
    grey = rgb[..., 0] * LUMA_WEIGHTS[0] + rgb[..., 1] * LUMA_WEIGHTS[1] + rgb[..., 2] * LUMA_WEIGHTS[2]
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(array.dtype)
    return grey


def non_empty_frames(volume: np.ndarray) -> list[int]:
    return [int(k) for k in np.flatnonzero(volume.reshape(volume.shape[0], -1).any(axis=1))]


def merge_segments(volumes: list) -> np.ndarray:
    """Label volume with value n+1 where segment n is set (later segments win overlaps)."""
    if not volumes:
        raise ValueError("there are no segments to merge")
    shape = np.asarray(volumes[0]).shape
    label = np.zeros(shape, dtype=np.uint8)
    for index, vol in enumerate(volumes):
        vol = np.asarray(vol)
        if vol.shape != shape:
            raise ValueError(f"segment {index} has shape {vol.shape}, expected {shape}")
        label[vol > 0] = index + 1
    return label


class ArrayMaskStore:
    """Masks of several segments over one stack of frames, kept in numpy arrays."""

    def __init__(self, n_frames: int, frame_shape):
        self.n_frames = int(n_frames)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self._volumes: dict[str, np.ndarray] = {}

    def segment_volume(self, segment_id: str) -> np.ndarray:
        if segment_id not in self._volumes:
            self._volumes[segment_id] = np.zeros((self.n_frames, *self.frame_shape), dtype=np.uint8)
        return self._volumes[segment_id]

    def read_frame(self, segment_id: str, frame: int) -> np.ndarray:
        return self.segment_volume(segment_id)[check_frame(frame, self.n_frames)] > 0

    def write_frame(self, segment_id: str, frame: int, mask) -> bool:
        return write_frame(self.segment_volume(segment_id), frame, mask)

    def read_frames(self, segment_id: str, frames) -> dict:
        return {int(f): self.read_frame(segment_id, f) for f in frames}

    def write_frames(self, segment_id: str, masks: dict) -> list[int]:
        return sorted(int(f) for f, mask in masks.items() if self.write_frame(segment_id, f, mask))

    def batch(self):
        return contextlib.nullcontext(self)
