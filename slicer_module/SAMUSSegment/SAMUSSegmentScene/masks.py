"""Segment mask stores: one frame of a segment read from / written to the scene."""
from __future__ import annotations

import contextlib

import numpy as np
import slicer

from SAMUSSegmentLib.frames import check_frame, write_frame


class SegmentMasks:
    """Frames are the K slices of segments in a segmentation that references the volume."""

    def __init__(self, segmentationNode, referenceVolume, n_frames: int, frame_shape):
        self.node = segmentationNode
        self.reference = referenceVolume
        self.n_frames = n_frames
        self.frame_shape = tuple(frame_shape)

    def segment_volume(self, segmentId: str) -> np.ndarray:
        array = slicer.util.arrayFromSegmentBinaryLabelmap(self.node, segmentId, self.reference)
        return (array > 0).astype(np.uint8)

    def read_frame(self, segmentId: str, frame: int) -> np.ndarray:
        return self.segment_volume(segmentId)[check_frame(frame, self.n_frames)] > 0

    def write_frame(self, segmentId: str, frame: int, mask) -> bool:
        volume = self.segment_volume(segmentId)
        if not write_frame(volume, frame, mask):
            return False
        slicer.util.updateSegmentBinaryLabelmapFromArray(volume, self.node, segmentId, self.reference)
        return True

    def batch(self):
        return contextlib.nullcontext()


class SequenceSegmentMasks:
    """Frames are items of a segmentation sequence kept in the cine's browser.

    The segmentation node is the browser's proxy for that sequence; changes made to it are
    saved into the current item ("save changes"), so writing frame n means selecting item n.
    """

    def __init__(self, frames, segmentationNode):
        self.frames = frames
        self.browser = frames.browser
        self.node = segmentationNode
        self.reference = frames.proxy
        self.n_frames = frames.n_frames
        self.frame_shape = frames.frame_shape
        self.switching = 0   # > 0 while items are changed for reading/writing (views ignore it)
        self._home = None    # item to return to at the end of a batch
        self._segments = {}  # segment id -> (name, colour), to recreate it in items that lack it
        self.sequence = self._ensureSequence()

    def _ensureSequence(self):
        sequence = self.browser.GetSequenceNode(self.node)
        if sequence is not None:
            return sequence
        from .sources import masterSequence

        master = masterSequence(self.browser)
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", self.node.GetName() + " sequence")
        sequence.SetIndexName(master.GetIndexName())
        sequence.SetIndexUnit(master.GetIndexUnit())
        sequence.SetIndexType(master.GetIndexType())
        # One (copied) segmentation per frame, so every item exists before anything is written.
        for frame in range(self.n_frames):
            sequence.SetDataNodeAtValue(self.node, master.GetNthIndexValue(frame))
        self.browser.AddProxyNode(self.node, sequence, False)
        self.browser.SetSaveChanges(sequence, True)
        return sequence

    def rememberSegment(self, segmentId: str) -> None:
        segment = self.node.GetSegmentation().GetSegment(segmentId)
        if segment is not None:
            self._segments[segmentId] = (segment.GetName(), segment.GetColor())

    def addSegmentToAllFrames(self, segmentId: str) -> None:
        """A segment added on one item also exists (empty) in every other item."""
        self.rememberSegment(segmentId)
        with self.batch():
            for frame in range(self.n_frames):
                self._select(frame)
                self._ensureSegment(segmentId)

    def _ensureSegment(self, segmentId: str) -> None:
        segmentation = self.node.GetSegmentation()
        if segmentation.GetSegment(segmentId) is None:
            name, color = self._segments.get(segmentId, (segmentId, (1.0, 1.0, 0.0)))
            segmentation.AddEmptySegment(segmentId, name, color)

    @contextlib.contextmanager
    def batch(self):
        """Reads/writes inside return to the user's item once, at the end."""
        outer = self._home is None
        if outer:
            self._home = self.browser.GetSelectedItemNumber()
            self.switching += 1
            slicer.app.pauseRender()
        try:
            yield
        finally:
            if outer:
                home, self._home = self._home, None
                if self.browser.GetSelectedItemNumber() != home:
                    self.browser.SetSelectedItemNumber(home)
                self.switching -= 1
                slicer.app.resumeRender()

    def _select(self, frame: int) -> None:
        frame = check_frame(frame, self.n_frames)
        if self.browser.GetSelectedItemNumber() != frame:
            self.browser.SetSelectedItemNumber(frame)

    def read_frame(self, segmentId: str, frame: int) -> np.ndarray:
        with self.batch():
            self._select(frame)
            self._ensureSegment(segmentId)
            array = slicer.util.arrayFromSegmentBinaryLabelmap(self.node, segmentId, self.reference)
            return array.reshape(self.frame_shape) > 0

    def write_frame(self, segmentId: str, frame: int, mask) -> bool:
        with self.batch():
            self._select(frame)
            self._ensureSegment(segmentId)
            current = slicer.util.arrayFromSegmentBinaryLabelmap(self.node, segmentId, self.reference)
            volume = (current > 0).astype(np.uint8).reshape(1, *self.frame_shape)
            if not write_frame(volume, 0, mask):
                return False
            slicer.util.updateSegmentBinaryLabelmapFromArray(volume, self.node, segmentId, self.reference)
            return True

    def segment_volume(self, segmentId: str) -> np.ndarray:
        with self.batch():
            return np.stack([self.read_frame(segmentId, f) for f in range(self.n_frames)]).astype(np.uint8)
