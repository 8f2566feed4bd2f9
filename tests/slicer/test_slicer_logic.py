"""The module's logic class (SAMUSSegment.py) loaded against stand-ins for Slicer: chunked propagation driven
through its worker and callbacks, Stop between chunks, and the model choices fed from /info and remembered in
the settings."""
import threading

import numpy as np

from helpers_slicer import fake_slicer, load_module_file
from SAMUSSegmentLib.frames import ArrayMaskStore
from SAMUSSegmentLib.session import InteractiveSession, JobResult
from SAMUSSegmentLib.upload import FrameStack
from test_slicer_chunks import N, Predictor, cine, one_shot, prompt, serve

INFO = {"models": {"samus": {"type": "deepgrow", "config": {"variant": ["accurate", "fast"]}},
                   "samus_propagate": {"type": "deepgrow", "config": {"variant": ["fast", "accurate"]}}}}


class Frames:
    """The frame source of a volume input, as far as propagation needs it."""

    def __init__(self, stack, shown):
        self._stack, self.shown = stack, shown

    def stack(self):
        return self._stack

    def currentFrame(self):
        return self.shown


class Settings:
    """qt.QSettings: one store shared by every instance (Slicer's application settings)."""
    store = {}

    def value(self, key):
        return self.store.get(key)

    def setValue(self, key, value):
        self.store[key] = value


def logic_on_a_cine(module, frames, predictor, gate=None):
    logic = module.SAMUSSegmentLogic()
    logic.client, logic.info = object(), INFO
    stack = FrameStack("cine", frames, np.eye(4), ("cine", 1))
    session = InteractiveSession(None, ArrayMaskStore(len(frames), frames.shape[1:]), stack)
    requests = []

    def execute(job):  # the worker's part: the request goes to the app's propagation algorithm
        requests.append(job.params)
        if gate is not None:
            gate(len(requests))
        masks, meta = serve(frames, predictor, job.params)
        return JobResult(job, masks, meta)

    session.execute = execute
    logic.session, logic.frames, logic.segmentId = session, Frames(stack, 3), "s"
    prompt(session, 3, [(17, 20)])
    return logic, requests


def test_the_module_propagates_chunk_by_chunk_and_ends_with_the_one_shot_masks():
    frames, predictor = cine(), Predictor()
    with fake_slicer():
        module = load_module_file()
        logic, requests = logic_on_a_cine(module, frames, predictor)
        logic.chunkFrames = 5
        logic.session.propagate_choice = "fast"
        progress, changed = [], []
        logic.onPropagationProgress, logic.onMasksChanged = progress.append, changed.append
        try:
            run = logic.propagate(18)
            assert logic.propagating
            logic.runner.wait(60)
        finally:
            logic.runner.shutdown()
    assert [r["frames"] for r in requests] == [[3, 8], [3, 13], [3, 18], [3, 21]]
    assert all(r["variant"] == "fast" for r in requests)  # the propagation model goes with every chunk
    assert run.finished and not logic.propagating
    expected = one_shot(frames, predictor, [(3, [(17, 20)], None)], 18, "forward")
    np.testing.assert_array_equal(logic.session.masks.segment_volume("s"), expected)
    assert changed == [[4, 5, 6, 7, 8], [9, 10, 11, 12, 13], [14, 15, 16, 17, 18], [19, 20, 21]]  # view per chunk
    assert progress[0].startswith("Propagating over 19 frames from frame 4")
    assert progress[-1] == "Propagation done: 19 of 19 frames covered, 19 with a mask."


def test_stop_sends_no_further_chunk_and_drops_the_one_running():
    frames, predictor = cine(), Predictor()
    second_started, release = threading.Event(), threading.Event()

    def gate(n):
        if n == 2:
            second_started.set()
            release.wait(30)

    with fake_slicer():
        module = load_module_file()
        logic, requests = logic_on_a_cine(module, frames, predictor, gate)
        logic.chunkFrames = 4
        try:
            logic.propagate(None)  # whole loop: both sides grow
            while not second_started.is_set():
                logic.runner.poll(wait=0.05)
            shown = logic.session.masks.segment_volume("s").copy()
            logic.stopPropagation()
            assert not logic.propagating
            release.set()
            logic.runner.wait(60)
        finally:
            release.set()
            logic.runner.shutdown()
    assert [r["frames"] for r in requests] == [[1, 5], [0, 7]] and requests[0]["direction"] == "both"
    np.testing.assert_array_equal(logic.session.masks.segment_volume("s"), shown)  # the late chunk was dropped
    assert [int(k) for k in np.flatnonzero(shown.reshape(N, -1).any(axis=1))] == [1, 2, 4, 5]


def test_model_choices_come_from_info_and_are_remembered():
    with fake_slicer():
        import sys

        sys.modules["qt"].QSettings = Settings
        Settings.store = {"SAMUSSegment/ClickModel": "fast"}
        module = load_module_file()
        logic = module.SAMUSSegmentLogic()
        stack = FrameStack("cine", np.zeros((3, 4, 5), np.uint8), np.eye(4), ("k", 1))
        session = InteractiveSession(None, ArrayMaskStore(3, (4, 5)), stack)
        logic._inputs = {"vol": (None, None, session)}
        logic._useClient(object(), INFO)
        # The remembered choice for clicks, the server's default (fast first) for propagation.
        assert (logic.modelChoices, logic.modelChoice) == (["accurate", "fast"], "fast")
        assert (logic.propagateChoices, logic.propagateChoice) == (["fast", "accurate"], "fast")
        assert (session.model_choice, session.propagate_choice) == ("fast", "fast")
        logic.setModelChoice("accurate")
        assert Settings.store["SAMUSSegment/ClickModel"] == "accurate" and session.model_choice == "accurate"
        assert session.set_points("s", 1, [(1, 1)], []).params["variant"] == "accurate"
        try:
            logic.setPropagateChoice("huge")
            raise AssertionError("an unknown choice must be refused")
        except ValueError as exc:
            assert "no model 'huge'" in str(exc)
        # An older server without choices: no selector, and no `model` param in requests.
        logic._useClient(object(), {"models": {"samus": {"type": "deepgrow", "config": {}}}})
        assert logic.modelChoices == [] and logic.modelChoice is None and session.model_choice is None
        assert "variant" not in session.set_points("s", 2, [(1, 1)], []).params
        widget = module.SAMUSSegmentWidget()
        widget.logic = logic
        from unittest import mock

        widget.ui = mock.MagicMock()
        widget.showModelChoices()
        assert widget.ui.modelComboBox.visible is False and widget.ui.propagateModelComboBox.visible is False
        logic._useClient(object(), INFO)
        widget.showModelChoices()
        widget.ui.modelComboBox.addItems.assert_called_with(["accurate", "fast"])
        widget.ui.modelComboBox.setCurrentText.assert_called_with("accurate")  # remembered above
        assert widget.ui.modelComboBox.visible is True


def test_the_widget_sets_up_and_fills_its_model_selectors_on_connect():
    from unittest import mock

    with fake_slicer() as slicer:
        import sys

        sys.modules["qt"].QSettings = Settings
        Settings.store = {}
        module = load_module_file()
        slicer.util.loadUI = mock.MagicMock()
        slicer.util.childWidgetVariables = lambda widget: mock.MagicMock()
        module.ScriptedLoadableModuleWidget.setup = lambda self: None
        widget = module.SAMUSSegmentWidget()
        widget.layout, widget.resourcePath = mock.MagicMock(), lambda path: path
        with mock.patch.object(module.SAMUSSegmentWidget, "initializeParameterNode"):
            widget.setup()
        try:
            ui = widget.ui
            assert ui.modelComboBox.visible is False  # not connected yet: no choices to show
            assert ui.stopPropagationButton.enabled is False
            widget.logic._useClient(object(), INFO)
            widget.onConnected(INFO)
            ui.modelComboBox.addItems.assert_called_with(["accurate", "fast"])
            ui.propagateModelComboBox.addItems.assert_called_with(["fast", "accurate"])
            ui.propagateModelComboBox.setCurrentText.assert_called_with("fast")
            widget.onPropagateModelChanged("accurate")
            assert Settings.store == {"SAMUSSegment/PropagationModel": "accurate"}
            widget.startBox()  # no input yet: nothing to draw on, and no error
            ui.boxPlaceWidget.setPlaceModeEnabled.assert_not_called()
            widget.onStopPropagation()  # nothing running: no error
        finally:
            widget.cleanup()


class Matrix:
    """vtkMatrix4x4 over a numpy array."""

    def __init__(self, array=None):
        self.array = np.eye(4) if array is None else np.array(array, float)

    def GetElement(self, r, c):
        return self.array[r, c]


class RoiNode:
    """vtkMRMLMarkupsROINode (box type) as far as the module uses it: drawing it takes 2 corner points
    (RequiredNumberOfControlPoints 2); a complete or programmatically sized ROI keeps 1 point, its centre."""

    def __init__(self):
        self.object_to_world, self.size, self.points, self.required, self.removals = Matrix(), [0.0] * 3, 0, 2, 0

    def GetNumberOfControlPoints(self):
        return self.points

    def GetNumberOfDefinedControlPoints(self):
        return self.points

    def GetRequiredNumberOfControlPoints(self):
        return self.required

    def GetSize(self, size):
        size[:] = self.size

    def GetCenterWorld(self, centre):
        centre[:] = self.object_to_world.array[:3, 3]

    def GetObjectToWorldMatrix(self):
        return self.object_to_world

    def SetAndObserveObjectToNodeMatrix(self, matrix):
        self.object_to_world = matrix

    def SetSize(self, *size):
        self.size, self.points, self.required = list(size), 1, 1

    def RemoveAllControlPoints(self):
        self.size, self.points, self.required, self.removals = [0.0] * 3, 0, 2, self.removals + 1

    def StartModify(self):
        return 0

    def EndModify(self, was):
        pass


class VolumeFrames:
    """The frame source of a volume under an oblique geometry (SAMUSSegmentScene.sources.VolumeFrames' maths)."""

    def __init__(self, shown):
        from SAMUSSegmentLib import geometry

        self.geometry, self.shown, self.frame_shape, self.n_frames = geometry, shown, (30, 40), 5
        c, s = np.cos(0.4), np.sin(0.4)
        self.matrix = geometry.ijk_to_ras_matrix([5.0, -3.0, 2.0], [0.3, 0.2, 1.5],
                                                 np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-1, -1, 1]))

    def ijkToWorld(self):
        return self.matrix

    def currentFrame(self):
        return self.shown

    def toWorld(self, frame, i, j):
        return self.geometry.apply(self.matrix, [i, j, frame])

    def locate(self, world):
        i, j, k = self.geometry.voxel_index(self.geometry.world_to_ijk(world, self.geometry.invert(self.matrix)),
                                            (40, 30, 5))
        return k, i, j


def test_the_box_markup_round_trips_and_a_half_drawn_box_keeps_the_stored_one():
    from unittest import mock

    with fake_slicer():
        module = load_module_file()
        logic = module.SAMUSSegmentLogic()
        logic.frames, logic.boxNode = VolumeFrames(shown=2), RoiNode()
        with mock.patch.object(module, "vtkMatrixFrom", Matrix):
            logic.showBox(2, (5, 6, 20, 25))
            assert logic.readBox(2, []) == (5, 6, 20, 25)
            rejected = []
            assert logic.readBox(3, rejected) is None and "on frame 3, not on the shown frame 4" in rejected[0][2]
            # The box tool empties the markup; one corner placed: the frame keeps its stored box meanwhile.
            logic.clearBoxMarkup()
            assert logic.boxNode.removals == 1 and logic.readBox(2, []) is module.BOX_UNCHANGED
            logic.boxNode.points, logic.boxNode.size = 1, [0.0, 0.0, 0.0]
            assert logic.readBox(2, []) is module.BOX_UNCHANGED
            # The second corner completes it (the ROI is sized from the corners; here: as before the redraw).
            roi = logic.boxNode
            roi.SetSize(20 * 0.3, 16 * 0.2, 1.5)
            assert logic.readBox(2, []) == (3, 8, 22, 23)  # 20 x 16 pixels around the old centre (12.5, 15.5)
            # Deleting a box (the delete button) now removes it from the frame.
            logic.boxNode.RemoveAllControlPoints()
            assert logic.readBox(2, []) is None
            logic.showBox(2, None)
            assert logic.boxNode.points == 0
    logic.runner.shutdown()
