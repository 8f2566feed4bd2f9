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
