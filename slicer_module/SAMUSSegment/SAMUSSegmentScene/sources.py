"""Frame sources: a volume's K slices, or the items of a cine sequence."""
from __future__ import annotations

import numpy as np
import slicer
import vtk
import vtk.util.numpy_support

from SAMUSSegmentLib import geometry
from SAMUSSegmentLib.frames import array_from_scalars, check_frame, to_grayscale
from SAMUSSegmentLib.upload import FrameStack
from SAMUSSegmentLib.video import decode_stream, fill_stack


def numpyMatrix(vtkMatrix) -> np.ndarray:
    return np.array([[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtkMatrix(array) -> "vtk.vtkMatrix4x4":
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r][c]))
    return m


def ijkToRAS(volumeNode) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    return numpyMatrix(m)


def localToWorld(node):
    """Matrix from the node's coordinates to world (its parent transforms), None when untransformed."""
    transform = node.GetParentTransformNode()
    if transform is None:
        return None
    if not transform.IsTransformToWorldLinear():
        raise ValueError(f"'{node.GetName()}' is under a non-linear transform; harden the transform first "
                         "(Data module, right-click the volume, 'Harden transform').")
    m = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(m)
    return numpyMatrix(m)


def _codecMissing(volumeNode) -> ValueError:
    return ValueError(f"the compressed video frames of '{volumeNode.GetName()}' cannot be decoded (codec "
                      f"'{volumeNode.GetCodecFourCC()}' is not available). Install the Slicer extension that "
                      "provides the codec (SlicerIGSIO for VP9 recordings) and restart, or convert the recording "
                      "to an uncompressed volume sequence.")


def imageArray(image, name: str = "image") -> np.ndarray:
    """A vtkImageData's voxels as [k, j, i] or [k, j, i, components] (a view, not a copy)."""
    scalars = image.GetPointData().GetScalars() if image is not None and image.GetPointData() else None
    if scalars is None:
        raise ValueError(f"volume '{name}' has no voxels")
    return array_from_scalars(vtk.util.numpy_support.vtk_to_numpy(scalars), image.GetDimensions(),
                              scalars.GetNumberOfComponents())


def isVideo(volumeNode) -> bool:
    return volumeNode.IsA("vtkMRMLStreamingVolumeNode") and volumeNode.GetFrame() is not None


def voxelArray(volumeNode) -> np.ndarray:
    """Voxels as [k, j, i] or [k, j, i, components], read from the node's image data.

    slicer.util.arrayFromVolume refuses compressed video (vtkMRMLStreamingVolumeNode, e.g. PLUS and
    SlicerIGT recordings) as an "unsupported volume type"; such a node decodes its frame into its image
    data, so reading the image data serves scalar, vector and streaming volumes alike.
    """
    if isVideo(volumeNode):
        if volumeNode.GetCodec() is None or not volumeNode.DecodeFrame():
            raise _codecMissing(volumeNode)
    return imageArray(volumeNode.GetImageData(), volumeNode.GetName())


def grayArray(volumeNode) -> np.ndarray:
    """Voxels as [k, j, i]; colour (vector, video) volumes are averaged to grey."""
    array = voxelArray(volumeNode)
    return to_grayscale(array, array.ndim == 4)


def dimensions(volumeNode) -> tuple:
    image = volumeNode.GetImageData()
    if image is None:
        raise ValueError(f"volume '{volumeNode.GetName()}' has no voxels")
    return tuple(image.GetDimensions())


def sliceNode(viewName: str = "Red"):
    layoutManager = slicer.app.layoutManager()
    if layoutManager is not None and layoutManager.sliceWidget(viewName) is not None:
        return layoutManager.sliceWidget(viewName).mrmlSliceNode()
    return slicer.mrmlScene.GetNodeByID(f"vtkMRMLSliceNode{viewName}")


def masterSequence(browser):
    # Renamed in some Slicer versions; accept both spellings.
    getter = getattr(browser, "GetMasterSequenceNode", None) or getattr(browser, "GetPrimarySequenceNode")
    return getter()


class _FrameSource:
    """Common geometry: the volume whose voxels the user clicks on."""

    kind = ""
    viewName = "Red"

    def __init__(self, geometryVolume):
        self.geometryVolume = geometryVolume
        self.dims = dimensions(geometryVolume)
        self.frame_shape = (self.dims[1], self.dims[0])
        self._stack = None
        video = geometryVolume.IsA("vtkMRMLStreamingVolumeNode")
        self.formatNote = " Compressed video, decoded in Slicer." if video else ""

    def ijkToWorld(self) -> np.ndarray:
        m = ijkToRAS(self.geometryVolume)
        parent = localToWorld(self.geometryVolume)
        return m if parent is None else parent @ m

    def _worldToIJK(self, world) -> tuple:
        return geometry.voxel_index(geometry.world_to_ijk(world, geometry.invert(self.ijkToWorld())), self.dims)

    def stack(self) -> FrameStack:
        """Snapshot of all frames for the server; rebuilt only when the data changed."""
        key = self.changeKey()
        if self._stack is None or self._stack.change_key != key:
            self._stack = FrameStack(self.name(), self._stackArray(), ijkToRAS(self.geometryVolume), key)
        return self._stack

    def _showPlane(self, k: int, align: bool) -> None:
        """Puts slice k of the geometry volume in the view, upright (row 0 at the top, column 0 on
        the left), with the slice offset growing with the frame index (see geometry.frame_slice_to_ras)."""
        node = sliceNode(self.viewName)
        if node is None:
            return
        wanted = geometry.frame_slice_to_ras(self.ijkToWorld(), self.dims, k)
        current = numpyMatrix(node.GetSliceToRAS())
        if align or not np.allclose(current[:3, :3], wanted[:3, :3], atol=1e-3):
            # Turned only when needed, so the user's zoom and pan survive frame changes.
            node.GetSliceToRAS().DeepCopy(vtkMatrix(wanted))
            node.UpdateMatrices()
            layoutManager = slicer.app.layoutManager()
            if layoutManager is not None and layoutManager.sliceWidget(self.viewName) is not None:
                layoutManager.sliceWidget(self.viewName).sliceLogic().FitSliceToAll()
        node.JumpSliceByOffsetting(*wanted[:3, 3])

    def _geometryKey(self) -> tuple:
        return tuple(np.round(self.ijkToWorld(), 6).ravel())


class VolumeFrames(_FrameSource):
    """Frame k = slice k along the volume's K axis, shown in the Red view."""

    kind = "volume"

    def __init__(self, volumeNode):
        super().__init__(volumeNode)
        self.volume = volumeNode
        self.n_frames = self.dims[2]
        self.referenceVolume = volumeNode
        self.persistentNode = volumeNode

    def name(self) -> str:
        return self.volume.GetName()

    def describe(self) -> str:
        return (f"Volume '{self.volume.GetName()}': {self.n_frames} frames of {self.dims[0]} x {self.dims[1]} "
                "pixels (frame = K slice, shown in the Red view)." + self.formatNote)

    def changeKey(self) -> tuple:
        return (self.volume.GetID(), self.volume.GetImageData().GetMTime(), self._geometryKey())

    def _stackArray(self) -> np.ndarray:
        return np.array(grayArray(self.volume), copy=True)

    def observedNode(self):
        return sliceNode(self.viewName)

    def currentFrame(self) -> int:
        node = sliceNode(self.viewName)
        if node is None:
            return 0
        centre = numpyMatrix(node.GetSliceToRAS())[:3, 3]
        return geometry.frame_at_world(centre, geometry.invert(self.ijkToWorld()), self.n_frames)

    def showFrame(self, frame: int, align: bool = False) -> None:
        self._showPlane(check_frame(frame, self.n_frames), align)

    def locate(self, world) -> tuple:
        """(frame, i, j) of a clicked world point."""
        i, j, k = self._worldToIJK(world)
        return k, i, j

    def toWorld(self, frame: int, i: int, j: int) -> np.ndarray:
        return geometry.apply(self.ijkToWorld(), [i, j, frame])


class SequenceFrames(_FrameSource):
    """Frame n = item n of a sequence browser whose proxy is a single-slice (2D) volume."""

    kind = "sequence"

    def __init__(self, browser, proxyVolume):
        super().__init__(proxyVolume)
        self.browser = browser
        self.proxy = proxyVolume
        self.volumeSequence = browser.GetSequenceNode(proxyVolume)
        if self.volumeSequence is None:
            raise ValueError(f"'{proxyVolume.GetName()}' is not a proxy of browser '{browser.GetName()}'")
        if self.dims[2] != 1:
            raise ValueError(f"frames of the cine '{browser.GetName()}' are 3D ({self.dims[2]} slices each); "
                             "a cine input needs 2D frames. Select a single 3D volume instead.")
        self.n_frames = browser.GetNumberOfItems()
        if self.n_frames < 1:
            raise ValueError(f"the cine '{browser.GetName()}' has no frames")
        self.referenceVolume = proxyVolume
        self.persistentNode = browser

    def name(self) -> str:
        return self.browser.GetName()

    def describe(self) -> str:
        return (f"Cine '{self.browser.GetName()}': {self.n_frames} frames of {self.dims[0]} x {self.dims[1]} "
                "pixels (frame = sequence browser item)." + self.formatNote)

    def changeKey(self) -> tuple:
        return (self.volumeSequence.GetID(), self.volumeSequence.GetMTime(), self._geometryKey())

    def dataNode(self, frame: int):
        value = masterSequence(self.browser).GetNthIndexValue(check_frame(frame, self.n_frames))
        node = self.volumeSequence.GetDataNodeAtValue(value)
        return node if node is not None else self.volumeSequence.GetNthDataNode(frame)

    def _stackArray(self) -> np.ndarray:
        nodes = [self.dataNode(f) for f in range(self.n_frames)]
        if all(isVideo(node) for node in nodes):
            # One codec for the whole stream, frames in order: each frame is decoded once (see video.py).
            codec = nodes[0].GetCodec()
            if codec is None:
                raise _codecMissing(nodes[0])
            return decode_stream([node.GetFrame() for node in nodes], codec, vtk.vtkImageData(), imageArray,
                                 self.frame_shape)

        def read(f):
            array = grayArray(nodes[f])
            if array.shape[0] != 1:
                raise ValueError(f"frame {f} of '{self.browser.GetName()}' has {array.shape[0]} slices; "
                                 "a cine needs 2D frames")
            return array[0]

        return fill_stack(self.n_frames, self.frame_shape, read)

    def observedNode(self):
        return self.browser

    def currentFrame(self) -> int:
        return int(self.browser.GetSelectedItemNumber())

    def showFrame(self, frame: int, align: bool = False) -> None:
        self.browser.SetSelectedItemNumber(check_frame(frame, self.n_frames))
        self._showPlane(0, align)

    def locate(self, world) -> tuple:
        i, j, _ = self._worldToIJK(world)  # K has one slice: points off the frame's plane are rejected
        return self.currentFrame(), i, j

    def toWorld(self, frame: int, i: int, j: int) -> np.ndarray:
        return geometry.apply(self.ijkToWorld(), [i, j, 0])


def frameSourceFor(volumeNode):
    """VolumeFrames, or SequenceFrames when the volume is the proxy of a sequence browser."""
    browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(volumeNode)
    if browser is not None and browser.GetSequenceNode(volumeNode) is not None:
        return SequenceFrames(browser, volumeNode)
    return VolumeFrames(volumeNode)
