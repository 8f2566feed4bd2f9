"""Frames of a cine as one grey stack, and compressed video decoded in stream order with one codec.

A compressed frame other than a keyframe can only be decoded after the frames before it. Slicer's
vtkStreamingVolumeCodec::DecodeFrame (vtkAddon) remembers the frame it decoded last and, when that
is not the frame just before the requested one, decodes again from the last keyframe. Every item
of a streaming sequence has its own vtkMRMLStreamingVolumeNode and so its own codec, which has
decoded nothing: decoding item n through its own node costs (n - last keyframe + 1) decodes, and a
whole loop with keyframes every G frames about n * (G + 1) / 2 decodes instead of n, each decoded
item also keeping its full colour image. One codec fed the frames in stream order decodes each
frame exactly once, into one scratch image, and only the grey frame is kept.
"""
from __future__ import annotations

import numpy as np

from .frames import to_grayscale


def fill_stack(n_frames: int, frame_shape, read_frame) -> np.ndarray:
    """[n_frames, rows, cols] from read_frame(f) -> grey [rows, cols], allocated once.

    The stack takes the type of the first frame (uint8 for 8-bit and colour ultrasound), so no
    frame list and no float copy of the whole cine is ever held beside it.
    """
    frame_shape = tuple(frame_shape)
    stack = None
    for f in range(n_frames):
        grey = np.asarray(read_frame(f))
        if grey.shape != frame_shape:
            raise ValueError(f"frame {f} has shape {grey.shape}, unlike the first frame's {frame_shape}; "
                             "all frames must have the same size")
        if stack is None:
            stack = np.empty((n_frames, *frame_shape), grey.dtype)
        stack[f] = grey
    if stack is None:
        raise ValueError("the cine has no frames")
    return stack


def decode_stream(frames: list, codec, image, image_array, frame_shape) -> np.ndarray:
    """Grey stack of compressed frames, decoded in order by one codec into one scratch image.

    frames: the items' compressed frames (vtkStreamingVolumeFrame) in stream order; codec: a
    vtkStreamingVolumeCodec for their FourCC; image: a vtkImageData reused for every frame;
    image_array(image) -> [1, rows, cols] or [1, rows, cols, components].
    """
    def read(f):
        if not codec.DecodeFrame(frames[f], image):
            raise ValueError(f"compressed frame {f + 1} of {len(frames)} could not be decoded")
        array = np.asarray(image_array(image))
        return to_grayscale(array, array.ndim == 4)[0]

    return fill_stack(len(frames), frame_shape, read)
