"""Compressed cine loops (vtkMRMLStreamingVolumeNode items): one codec decodes the stream in order, each frame
once, into one grey uint8 stack.

The codec stand-in follows vtkStreamingVolumeCodec::DecodeFrame (vtkAddon): a frame that is not a keyframe
needs the frames before it, back to the last keyframe, unless the frame decoded last by *this codec* is the
one just before it. A "frame" here is an RGB picture that can only be rebuilt from its predecessors, like an
H.264 / VP9 P-frame: it stores the difference to the previous frame.
"""
from unittest import mock

import numpy as np
import pytest

import helpers_slicer  # noqa: F401  (puts the library on sys.path)
from helpers_slicer import fake_slicer, load_module_file
from SAMUSSegmentLib.video import decode_stream, fill_stack

ROWS, COLS = 6, 8


class Frame:
    """A compressed frame: a keyframe holds its picture, other frames the difference to the previous one."""

    def __init__(self, previous, picture, key):
        self.previous, self.key = previous, key
        self.payload = picture if key else picture.astype(np.int16) - previous.picture.astype(np.int16)
        self.picture = picture  # only for checking the result, never read by the codec

    def IsKeyFrame(self):
        return self.key

    def GetPreviousFrame(self):
        return self.previous


class Codec:
    def __init__(self):
        self.last_decoded, self.decodes, self.reference = None, 0, None

    def DecodeFrame(self, frame, image):
        chain = [frame]
        while not chain[-1].IsKeyFrame() and chain[-1].GetPreviousFrame() is not self.last_decoded:
            chain.append(chain[-1].GetPreviousFrame())
        for f in reversed(chain):
            self.decodes += 1
            self.reference = f.payload.copy() if f.IsKeyFrame() else (self.reference + f.payload).astype(np.uint8)
            self.last_decoded = f
        image["pixels"] = self.reference[None].copy()  # [1, rows, cols, rgb]
        return True


def stream(n, keyframe_interval):
    rng = np.random.default_rng(n)
    frames, previous = [], None
    for k in range(n):
        picture = rng.integers(0, 200, (ROWS, COLS, 3)).astype(np.uint8)
        previous = Frame(previous, picture, key=k % keyframe_interval == 0)
        frames.append(previous)
    return frames


def luma(picture):
    return np.rint(picture.astype(float) @ [0.299, 0.587, 0.114])


@pytest.mark.parametrize("n, interval", [(30, 10), (60, 30)])
def test_one_codec_in_stream_order_decodes_each_frame_once(n, interval):
    frames = stream(n, interval)
    codec = Codec()
    stack = decode_stream(frames, codec, {}, lambda image: image["pixels"], (ROWS, COLS))
    assert codec.decodes == n  # linear in the number of frames
    assert stack.dtype == np.uint8 and stack.shape == (n, ROWS, COLS)  # one grey uint8 stack, no RGB copies
    for k in (0, 1, interval - 1, n - 1):
        assert np.abs(stack[k] - luma(frames[k].picture)).max() <= 1
    # What each item's own node does (a fresh codec per item): back to the keyframe every time.
    per_item = 0
    for frame in frames:
        fresh = Codec()
        fresh.DecodeFrame(frame, {})
        per_item += fresh.decodes
    assert per_item == n * (interval + 1) // 2  # n (G + 1) / 2: 5.5x (G = 10) and 15.5x (G = 30) the work


def test_a_frame_the_codec_cannot_decode_is_reported():
    class Broken(Codec):
        def DecodeFrame(self, frame, image):
            return False

    with pytest.raises(ValueError, match="compressed frame 1 of 3 could not be decoded"):
        decode_stream(stream(3, 2), Broken(), {}, lambda image: image["pixels"], (ROWS, COLS))


def test_fill_stack_allocates_once_and_checks_frame_sizes():
    stack = fill_stack(3, (2, 2), lambda f: np.full((2, 2), f, np.uint8))
    assert stack.dtype == np.uint8 and stack[:, 0, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"frame 1 has shape \(3, 2\)"):
        fill_stack(2, (2, 2), lambda f: np.zeros((2 + f, 2)))


class StreamingItem:
    """A vtkMRMLStreamingVolumeNode item of a sequence, with its own codec (as in Slicer)."""

    def __init__(self, frame):
        self.frame, self.codec = frame, Codec()

    def IsA(self, name):
        return name == "vtkMRMLStreamingVolumeNode"

    def GetFrame(self):
        return self.frame

    def GetCodec(self):
        return self.codec

    def DecodeFrame(self):
        raise AssertionError("items must not be decoded one by one through their own codecs")


def test_a_streaming_cine_is_read_through_the_first_items_codec_in_order():
    frames = stream(12, 4)
    items = [StreamingItem(f) for f in frames]
    with fake_slicer() as slicer:
        load_module_file()
        from SAMUSSegmentScene import sources

        image = {}
        sources.vtk.vtkImageData.return_value = image
        with mock.patch.object(sources, "imageArray", lambda img, name="": img["pixels"]):
            cine = object.__new__(sources.SequenceFrames)  # the frame source without a scene behind it
            cine.n_frames, cine.frame_shape = 12, (ROWS, COLS)
            cine.dataNode = lambda f: items[f]
            stack = cine._stackArray()
    assert items[0].codec.decodes == 12 and all(item.codec.decodes == 0 for item in items[1:])
    assert stack.dtype == np.uint8
    assert np.abs(stack[11] - luma(frames[11].picture)).max() <= 1
