"""Scene layers under SAMUSSegmentLib.batched.BatchedMasks: where a segment's frames live in the scene.

BatchedMasks calls a layer once to export and once to import per segment and per batch (a click, a
propagation result, an undo step, a submission), so the cost of a step does not grow with the number
of frames it touches through extra scene round trips.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk
import vtk.util.numpy_support

from SAMUSSegmentLib.batched import BatchedMasks
from SAMUSSegmentLib.frames import check_frame


class VolumeSegmentLayer:
    """Frames are the K slices of segments in a segmentation that references the volume.

    Only whole segments are exported / imported, which BatchedMasks does once per batch. Both go
    straight through vtkOrientedImageData: slicer.util.updateSegmentBinaryLabelmapFromArray would
    add a temporary labelmap node made from the reference volume (CreateAndAddLabelVolume) on
    every import, and remove it again.
    """

    whole_segments = True

    def __init__(self, segmentationNode, referenceVolume, n_frames: int, frame_shape):
        self.node = segmentationNode
        self.reference = referenceVolume
        self.n_frames = n_frames
        self.frame_shape = tuple(frame_shape)

    def export(self, segmentId: str, frames) -> np.ndarray:
        volume = _readSegment(self.node, segmentId, self.reference, (self.n_frames, *self.frame_shape))
        return volume[list(frames)]

    def import_(self, segmentId: str, frames, masks) -> None:
        volume = np.zeros((self.n_frames, *self.frame_shape), bool)
        volume[list(frames)] = np.asarray(masks, bool)
        _writeSegment(self.node, segmentId, self.reference, volume)


def _readSegment(segmentationNode, segmentId: str, referenceVolume, shape) -> np.ndarray:
    """A segment as a bool array of `shape` ([slices, rows, cols], or [rows, cols] for one slice)
    in the geometry of the reference volume.

    Pure VTK (no temporary scene nodes), so it also works on the data nodes kept inside a
    sequence, which are not in the scene.
    """
    shape = tuple(shape)
    if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
        return np.zeros(shape, bool)  # an item created before the segment was added
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentId)
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
        segmentationNode, referenceVolume, ids, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, image)
    scalars = image.GetPointData().GetScalars() if image.GetPointData() else None
    if scalars is None:
        return np.zeros(shape, bool)
    dims = tuple(image.GetDimensions())
    slices, rows, cols = (1, *shape) if len(shape) == 2 else shape
    if dims != (cols, rows, slices):
        raise ValueError(f"segment '{segmentId}' was exported with dimensions {dims}, expected {(cols, rows, slices)}")
    return vtk.util.numpy_support.vtk_to_numpy(scalars).reshape(shape) > 0


def _writeSegment(segmentationNode, segmentId: str, referenceVolume, mask) -> None:
    """Makes the segment exactly `mask` ([rows, cols] or [slices, rows, cols] bool) in the reference
    volume's geometry."""
    mask = np.asarray(mask, bool)
    slices, rows, cols = (1, *mask.shape) if mask.ndim == 2 else mask.shape
    image = slicer.vtkOrientedImageData()
    image.SetExtent(0, cols - 1, 0, rows - 1, 0, slices - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    ijkToRAS = vtk.vtkMatrix4x4()
    referenceVolume.GetIJKToRASMatrix(ijkToRAS)
    image.SetGeometryFromImageToWorldMatrix(ijkToRAS)
    vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask.astype(np.uint8).ravel()
    image.Modified()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(image, segmentationNode, segmentId, logic.MODE_REPLACE, image.GetExtent())


def markItemsChanged(sequence) -> None:
    """Tells the scene that items of `sequence` were changed in place.

    Modified() alone is not enough: the Save dialog pre-selects (and shows as "Modified") only
    nodes whose GetModifiedSinceRead() is true, which compares the storage node's stored time
    with StorableModifiedTime, and only StorableModified() advances that (vtkMRMLStorableNode).
    vtkMRMLSequenceNode's own item setters (UpdateDataNodeAtValue, SetDataNodeAtValue) do both;
    writing into an item's data node does neither. Without it, propagated masks on frames other
    than the shown one were silently left out of the next save.
    """
    sequence.StorableModified()
    sequence.Modified()


class SequenceSegmentLayer:
    """Frames are items of a segmentation sequence kept in the cine's browser.

    The shown item is read and written through the browser's proxy segmentation (with "save
    changes" on, the browser stores it in the item); every other item is read and written in
    the sequence's own data node. No item is ever selected for this, so a step over N frames
    does not make the browser copy every proxy N times.
    """

    whole_segments = False

    def __init__(self, frames, segmentationNode):
        self.frames = frames
        self.browser = frames.browser
        self.node = segmentationNode
        self.n_frames = frames.n_frames
        self.frame_shape = frames.frame_shape
        self._segments = {}  # segment id -> (name, colour), to create it in items that lack it
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

    def _item(self, frame: int):
        """(segmentation node, reference volume) holding frame `frame`."""
        frame = check_frame(frame, self.n_frames)
        if frame == self.frames.currentFrame():
            return self.node, self.frames.proxy
        from .sources import masterSequence

        node = self.sequence.GetDataNodeAtValue(masterSequence(self.browser).GetNthIndexValue(frame))
        if node is None:
            raise ValueError(f"the segmentation sequence '{self.sequence.GetName()}' has no item for frame {frame + 1}")
        # The item's own volume: like the item segmentation it is outside the scene and untransformed.
        return node, self.frames.dataNode(frame)

    def rememberSegment(self, segmentId: str) -> None:
        segment = self.node.GetSegmentation().GetSegment(segmentId)
        if segment is not None:
            self._segments[segmentId] = (segment.GetName(), segment.GetColor())

    def _ensureSegment(self, node, segmentId: str) -> None:
        segmentation = node.GetSegmentation()
        if segmentation.GetSegment(segmentId) is None:
            name, color = self._segments.get(segmentId, (segmentId, (1.0, 1.0, 0.0)))
            segmentation.AddEmptySegment(segmentId, name, color)

    def addSegmentToAllFrames(self, segmentId: str) -> None:
        """A segment added on the shown item also exists (empty) in every other item."""
        self.rememberSegment(segmentId)
        for frame in range(self.n_frames):
            self._ensureSegment(self._item(frame)[0], segmentId)
        markItemsChanged(self.sequence)

    def export(self, segmentId: str, frames) -> np.ndarray:
        masks = []
        for frame in frames:
            node, reference = self._item(frame)
            masks.append(_readSegment(node, segmentId, reference, self.frame_shape))
        return np.stack(masks)

    def import_(self, segmentId: str, frames, masks) -> None:
        for frame, mask in zip(frames, masks):
            node, reference = self._item(frame)
            self._ensureSegment(node, segmentId)
            _writeSegment(node, segmentId, reference, np.asarray(mask, bool))
        markItemsChanged(self.sequence)  # items changed in place: the scene must save the sequence again


def maskStoreFor(frames, segmentationNode) -> BatchedMasks:
    """The mask store of an input: K slices of a volume, or items of a cine."""
    if frames.kind == "sequence":
        return BatchedMasks(SequenceSegmentLayer(frames, segmentationNode))
    return BatchedMasks(VolumeSegmentLayer(segmentationNode, frames.referenceVolume, frames.n_frames,
                                           frames.frame_shape))
