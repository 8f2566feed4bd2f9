"""Scene round trips of the Slicer module: one export and one import per step, whatever the number of frames.

A fake scene layer stands in for Slicer's segmentation (the real layers are in SAMUSSegmentScene/masks.py);
it counts how often the module exports a segment from the scene and imports one into it.
"""
import numpy as np
import pytest

import helpers_slicer  # noqa: F401  (puts the library on sys.path)
from SAMUSSegmentLib.batched import BatchedMasks
from SAMUSSegmentLib.session import InteractiveSession, JobResult
from SAMUSSegmentLib.upload import FrameStack

SHAPE = (6, 9)


class FakeSceneLayer:
    """Segments kept as [frames, rows, cols] arrays; every export / import is one scene round trip."""

    def __init__(self, n_frames, whole_segments):
        self.n_frames, self.frame_shape, self.whole_segments = n_frames, SHAPE, whole_segments
        self.volumes = {}
        self.exports, self.imports, self.frames_exported = 0, 0, 0

    def volume(self, segment_id):
        return self.volumes.setdefault(segment_id, np.zeros((self.n_frames, *SHAPE), np.uint8))

    def export(self, segment_id, frames):
        if self.whole_segments:
            assert list(frames) == list(range(self.n_frames)), "a whole-segment layer exports all frames"
        self.exports += 1
        self.frames_exported += len(frames)
        return self.volume(segment_id)[list(frames)].copy()

    def import_(self, segment_id, frames, masks):
        if self.whole_segments:
            assert list(frames) == list(range(self.n_frames))
        self.imports += 1
        self.volume(segment_id)[list(frames)] = np.asarray(masks, bool)

    def counts(self):
        return self.exports, self.imports


def blob(frame):
    mask = np.zeros(SHAPE, bool)
    mask[1:4, frame % 5:frame % 5 + 3] = True
    return mask


def round_trips_of_each_step(n_frames, whole_segments):
    """(exports, imports) of a click, a propagation over all frames, its undo and a submission."""
    layer = FakeSceneLayer(n_frames, whole_segments)
    session = InteractiveSession(None, BatchedMasks(layer),
                                 FrameStack("cine", np.zeros((n_frames, *SHAPE), np.uint8), np.eye(4), ("k", 1)))
    steps = {}

    def step(name, action):
        before = layer.counts()
        action()
        steps[name] = tuple(a - b for a, b in zip(layer.counts(), before))

    click = session.set_points("s", 0, [(2, 2)], [])
    step("click", lambda: session.apply(JobResult(click, {0: blob(0)})))
    propagation = session.propagate("s", 0, count=None)
    result = {f: blob(f) for f in range(n_frames)}
    step("propagation", lambda: session.apply(JobResult(propagation, result)))
    expected = np.stack([blob(f) for f in range(n_frames)])
    np.testing.assert_array_equal(layer.volume("s") > 0, expected)  # every frame reached the scene
    step("undo", session.undo)
    np.testing.assert_array_equal(layer.volume("s")[1:], 0)
    np.testing.assert_array_equal(layer.volume("s")[0] > 0, blob(0))  # the click's mask stays
    session.set_points("t", n_frames - 1, [(1, 1)], [])  # a second segment, only points
    step("submission", lambda: session.submit_labels([("s", "lesion"), ("t", "vessel")]))
    return steps, layer


@pytest.mark.parametrize("whole_segments", [True, False], ids=["volume", "cine"])
def test_scene_round_trips_do_not_grow_with_the_number_of_frames(whole_segments):
    counts = {n: round_trips_of_each_step(n, whole_segments)[0] for n in (3, 12, 60)}
    assert counts[3] == counts[12] == counts[60], counts
    steps = counts[60]
    assert steps["click"] == (1, 1)
    assert steps["propagation"] == (1, 1)  # read the frames once (for undo), write them once
    assert steps["undo"] == (1, 1)
    assert steps["submission"] == (2, 0)  # one export per segment


def test_a_cine_layer_is_asked_only_for_the_frames_a_step_touches():
    _, layer = round_trips_of_each_step(40, whole_segments=False)
    # click: 1 frame; propagation: 39 frames; undo: 39; submission: 2 segments x 40 frames.
    assert layer.frames_exported == 1 + 39 + 39 + 80


def test_a_failed_step_leaves_the_scene_unchanged_and_unchanged_masks_are_not_written():
    layer = FakeSceneLayer(5, whole_segments=True)
    masks = BatchedMasks(layer)
    with pytest.raises(ValueError, match="frame shape"):
        with masks.batch():
            masks.write_frames("s", {1: blob(1), 2: blob(2)})
            masks.write_frame("s", 3, np.ones((2, 2)))  # wrong shape: the whole batch is dropped
    assert layer.imports == 0 and not layer.volume("s").any()
    assert masks.write_frames("s", {2: blob(2)}) == [2] and layer.counts() == (2, 1)
    assert masks.write_frames("s", {2: blob(2)}) == [] and layer.counts() == (3, 1)  # same mask: no import
    np.testing.assert_array_equal(masks.read_frame("s", 2), blob(2))
    np.testing.assert_array_equal(masks.segment_volume("s"), layer.volume("s"))
    with pytest.raises(IndexError, match="outside"):
        masks.read_frame("s", 5)


def test_reads_inside_a_batch_see_the_batch_writes():
    layer = FakeSceneLayer(4, whole_segments=False)
    masks = BatchedMasks(layer)
    with masks.batch():
        masks.write_frame("s", 1, blob(1))
        np.testing.assert_array_equal(masks.read_frame("s", 1), blob(1))
        assert layer.imports == 0  # not yet in the scene
        returned = masks.read_frame("s", 1)
        returned[:] = False  # callers get copies
    assert layer.counts() == (1, 1)
    np.testing.assert_array_equal(layer.volume("s")[1] > 0, blob(1))


# -- the scene layers themselves (SAMUSSegmentScene/masks.py), run against stand-ins for Slicer ---------------
import itertools  # noqa: E402
from unittest import mock  # noqa: E402

from helpers_slicer import fake_slicer, load_module_file  # noqa: E402

_TIME = itertools.count(1)  # vtkTimeStamp: one global, ever increasing modification counter


class FakeStorableSequence:
    """A vtkMRMLSequenceNode as far as storage goes (vtkMRMLStorableNode.cxx): Modified() does not touch
    StorableModifiedTime, StorableModified() does; GetModifiedSinceRead() compares it with the stored time,
    which the storage node sets when it writes the file."""

    def __init__(self, items):
        self.items = items  # index value -> item segmentation node
        self.storable_time = next(_TIME)
        self.stored_time = 0
        self.modified_calls = 0

    def GetName(self):
        return "cine SAMUS sequence"

    def GetDataNodeAtValue(self, value):
        return self.items[value]

    def Modified(self):
        self.modified_calls += 1

    def StorableModified(self):
        self.storable_time = next(_TIME)

    def GetModifiedSinceRead(self):
        return self.stored_time < self.storable_time

    def write_file(self):
        self.stored_time = next(_TIME)


def save_dialog_preselection(nodes):
    """qSlicerSaveDataDialog checks a node's row (and shows it "Modified") when GetModifiedSinceRead()."""
    return [n for n in nodes if n.GetModifiedSinceRead()]


class FakeCineFrames:
    def __init__(self, sequence, shown):
        self.browser = mock.MagicMock(name="browser")
        self.browser.GetSequenceNode.return_value = sequence
        self.browser.GetMasterSequenceNode().GetNthIndexValue.side_effect = str
        self.n_frames, self.frame_shape, self.shown = 5, SHAPE, shown
        self.proxy = mock.MagicMock(name="proxy volume")

    def currentFrame(self):
        return self.shown

    def dataNode(self, frame):
        return f"volume item {frame}"


def test_masks_written_into_cine_items_mark_the_sequence_for_saving():
    with fake_slicer():
        load_module_file()
        from SAMUSSegmentScene import masks as scene_masks

        items = {str(f): mock.MagicMock(name=f"segmentation item {f}") for f in range(5)}
        sequence = FakeStorableSequence(items)
        frames = FakeCineFrames(sequence, shown=1)
        proxy_segmentation = mock.MagicMock(name="proxy segmentation")
        layer = scene_masks.SequenceSegmentLayer(frames, proxy_segmentation)
        written = []
        with mock.patch.object(scene_masks, "_writeSegment",
                               lambda node, seg, ref, mask: written.append((node, ref, mask.sum()))), \
                mock.patch.object(scene_masks, "_readSegment", lambda node, seg, ref, shape: np.zeros(shape, bool)):
            sequence.write_file()  # the scene was saved: nothing to save now
            assert save_dialog_preselection([sequence]) == []
            store = BatchedMasks(layer)
            assert store.write_frames("s", {3: blob(3), 4: blob(4)}) == [3, 4]  # propagation: not the shown frame
    # The items were written in place, not through the proxy, and the sequence is offered for saving again.
    assert [(w[0], w[1]) for w in written] == [(items["3"], "volume item 3"), (items["4"], "volume item 4")]
    assert save_dialog_preselection([sequence]) == [sequence]
    assert sequence.modified_calls == 1  # one refresh of the browser's proxies per batch, not per frame
    # Modified() alone, which is what the module called before, leaves the sequence "Not Modified".
    sequence.write_file()
    sequence.Modified()
    assert save_dialog_preselection([sequence]) == []


class FakeOrientedImage:
    """vtkOrientedImageData with numpy scalars (the stand-in vtk_to_numpy passes numpy arrays through)."""

    def SetExtent(self, *extent):
        self.extent = extent

    def GetExtent(self):
        return self.extent

    def AllocateScalars(self, *args):
        dims = [self.extent[2 * a + 1] - self.extent[2 * a] + 1 for a in range(3)]
        self.scalars = np.zeros(int(np.prod(dims)), np.uint8)

    def GetDimensions(self):
        return tuple(self.extent[2 * a + 1] - self.extent[2 * a] + 1 for a in range(3))

    def GetPointData(self):
        return mock.Mock(GetScalars=lambda: self.scalars)

    def SetGeometryFromImageToWorldMatrix(self, matrix):
        self.geometry = matrix

    def Modified(self):
        pass


class FakeSegmentationsLogic:
    MODE_REPLACE = 7

    def __init__(self):
        self.stored, self.calls = {}, []

    def SetBinaryLabelmapToSegment(self, image, node, segment_id, mode, extent):
        self.calls.append((segment_id, mode, extent))
        self.stored[segment_id] = image.scalars.copy()

    def GenerateMergedLabelmapInReferenceGeometry(self, node, reference, ids, mode, image):
        dims = reference.dims
        image.SetExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
        image.AllocateScalars()
        if node.segment_id in self.stored:
            image.scalars[:] = self.stored[node.segment_id]


def test_volume_masks_go_through_one_oriented_image_without_temporary_scene_nodes():
    with fake_slicer() as slicer:
        load_module_file()
        from SAMUSSegmentScene import masks as scene_masks

        logic = FakeSegmentationsLogic()
        slicer.vtkOrientedImageData = FakeOrientedImage
        slicer.vtkSlicerSegmentationsModuleLogic = logic
        slicer.vtkSegmentation = mock.Mock(EXTENT_REFERENCE_GEOMETRY=1)
        node = mock.MagicMock(name="segmentation", segment_id="s")
        reference = mock.MagicMock(name="volume", dims=(SHAPE[1], SHAPE[0], 4))
        store = BatchedMasks(scene_masks.VolumeSegmentLayer(node, reference, 4, SHAPE))
        assert store.write_frames("s", {1: blob(1), 3: blob(3)}) == [1, 3]
        assert logic.calls == [("s", 7, (0, SHAPE[1] - 1, 0, SHAPE[0] - 1, 0, 3))]  # one import, whole volume
        np.testing.assert_array_equal(store.read_frame("s", 3), blob(3))  # read back through the merged labelmap
        np.testing.assert_array_equal(store.segment_volume("s")[[0, 2]], 0)
        # No labelmap node was added to the scene (updateSegmentBinaryLabelmapFromArray adds one per call,
        # made from the reference volume).
        slicer.mrmlScene.AddNewNodeByClass.assert_not_called()
        assert not slicer.mrmlScene.AddNode.called
