"""The module's self-test, run inside Slicer: Reload & Test and the Self Tests module (through
SAMUSSegment.runTest, which loads this file), and the build test py_SAMUSSegmentTest (this file's CMakeLists).

The volume and cine parts need no server. The last part needs a running SAMUS MONAI Label server at
$SAMUS_SERVER_URL (default http://127.0.0.1:8000, e.g. started with `make run`); when nothing answers
there it is skipped (unittest.SkipTest), so the test passes on machines without a server. A server
that answers but is not the SAMUS app is a failure.
"""
import os
import sys
import tempfile
import unittest

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

MODULE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)

from SAMUSSegment import SAMUSSegmentLogic  # noqa: E402
from SAMUSSegmentLib.client import SamusClient, ServerUnreachable  # noqa: E402


class SAMUSSegmentTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (see the module docstring for how to run it)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        # Reload & Test calls this directly (the unittest runner calls the test_ methods one by one):
        # run every part, and report a skipped part instead of failing on it.
        for test in (self.test_volume_geometry_and_frame_masks, self.test_cine_frame_masks,
                     self.test_cine_clicks_with_server):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"Skipped {test.__name__}: {skipped}")

    @staticmethod
    def serverOrSkip(timeout: float = 5.0):
        """(url, info) of the test server; unittest.SkipTest when no server answers there."""
        url = os.environ.get("SAMUS_SERVER_URL", "http://127.0.0.1:8000")
        try:
            return url, SamusClient(url, timeout=timeout).connect()
        except ServerUnreachable as exc:
            raise unittest.SkipTest(f"no SAMUS server answers ({exc}) Start one with `make run` or set "
                                    "SAMUS_SERVER_URL to run this part.") from None

    @staticmethod
    def syntheticFrames(n=5, rows=96, cols=112):
        """Speckled grey frames with a dark, slowly moving ellipse (a lesion-like target)."""
        import numpy as np

        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:rows, 0:cols]
        frames = []
        for f in range(n):
            image = 120 + 40 * rng.random((rows, cols))
            inside = ((x - 50 - 3 * f) / 22.0) ** 2 + ((y - 48) / 15.0) ** 2 < 1
            image[inside] = 25 + 10 * rng.random(inside.sum())
            frames.append(image.astype(np.uint8))
        return np.stack(frames)

    def makeCine(self, frames):
        import vtk.util.numpy_support

        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "SyntheticCine")
        for index, frame in enumerate(frames):
            volume = slicer.vtkMRMLScalarVolumeNode()
            volume.SetSpacing(0.2, 0.2, 1.0)
            volume.SetOrigin(-10.0, 5.0, 0.0)
            image = vtk.vtkImageData()
            image.SetDimensions(frame.shape[1], frame.shape[0], 1)
            image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
            scalars = vtk.util.numpy_support.numpy_to_vtk(frame.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
            image.GetPointData().SetScalars(scalars)
            volume.SetAndObserveImageData(image)
            sequence.SetDataNodeAtValue(volume, str(index))
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "SyntheticCine browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        return browser, browser.GetProxyNode(sequence)

    def test_volume_geometry_and_frame_masks(self):
        import numpy as np

        self.delayDisplay("Volume: clicks through a parent transform, one-frame mask writes")
        ijkToRAS = np.array([[0, 0.25, 0, 3], [-0.3, 0, 0, 8], [0, 0, 1.5, -4], [0, 0, 0, 1]])
        volume = slicer.util.addVolumeFromArray(self.syntheticFrames(n=4), ijkToRAS=ijkToRAS)
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 12.0)
        matrix.SetElement(2, 3, -7.0)
        transform.SetMatrixTransformToParent(matrix)
        volume.SetAndObserveTransformNodeID(transform.GetID())

        logic = SAMUSSegmentLogic()
        self.assertIn("4 frames", logic.setInput(volume))
        logic.goToFrame(2)
        self.assertEqual(logic.frames.currentFrame(), 2)
        world = logic.frames.toWorld(2, 30, 40)
        self.assertEqual(logic.frames.locate(world), (2, 30, 40))
        logic.positiveNode.AddControlPointWorld(vtk.vtkVector3d(*world))
        frame, positive, negative, box, rejected = logic.readMarkups()
        self.assertEqual((frame, positive, negative, box, rejected), (2, [(30, 40)], [], None, []))

        self.assertFrameUpright(logic, 2)
        self.assertSteppingGoesForward(logic)

        # A frame's box shown as the ROI markup reads back as the same pixels (through the parent transform).
        logic.showBox(2, (10, 12, 30, 40))
        self.assertEqual(logic.readBox(2, []), (10, 12, 30, 40))
        rejected = []
        self.assertIsNone(logic.readBox(3, rejected))  # a box on frame 3 (index 2) is not the shown frame 4
        self.assertIn("not on the shown frame", rejected[0][2])
        logic.showBox(2, None)
        self.assertIsNone(logic.readBox(2, []))

        mask = np.zeros(logic.frames.frame_shape, bool)
        mask[30:50, 20:60] = True
        logic.masks.write_frame(logic.segmentId, 2, mask)
        labels = slicer.util.arrayFromSegmentBinaryLabelmap(logic.segmentationNode, logic.segmentId, volume)
        self.assertEqual([int(k) for k in np.flatnonzero(labels.reshape(4, -1).any(axis=1))], [2])
        self.assertTrue((labels[2] > 0).sum() == mask.sum())
        logic.runner.shutdown()

    def assertFrameUpright(self, logic, frame):
        """In the Red view, pixel (0, 0) of the frame is top-left (view XY: x right, y up)."""
        from SAMUSSegmentScene.sources import sliceNode

        node = sliceNode("Red")
        if node is None:
            return  # no views (e.g. a run without the main window)
        rasToXY = vtk.vtkMatrix4x4()
        rasToXY.DeepCopy(node.GetXYToRAS())
        rasToXY.Invert()

        def xy(i, j):
            return rasToXY.MultiplyPoint([*logic.frames.toWorld(frame, i, j), 1.0])[:2]

        (x0, y0), (x1, _), (_, y1) = xy(0, 0), xy(10, 0), xy(0, 10)
        self.assertLess(x0, x1, "column 0 must be on the left")
        self.assertGreater(y0, y1, "row 0 must be at the top")

    def assertSteppingGoesForward(self, logic):
        """Slicer's own slice stepping (offset slider, arrow keys, f / b) runs with the frame index."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None or layoutManager.sliceWidget("Red") is None:
            return  # no views (e.g. a run without the main window)
        sliceLogic = layoutManager.sliceWidget("Red").sliceLogic()
        offsets = []
        for frame in (1, 2):
            logic.goToFrame(frame)
            offsets.append(sliceLogic.GetSliceOffset())
        self.assertLess(offsets[0], offsets[1], "the slice offset must grow with the frame index")
        logic.goToFrame(2)

    def test_cine_frame_masks(self):
        import numpy as np

        self.delayDisplay("Cine: frame = browser item, masks written to those items only, no item switching")
        browser, proxy = self.makeCine(self.syntheticFrames(n=5))
        logic = SAMUSSegmentLogic()
        self.assertIn("5 frames", logic.setInput(proxy))
        browser.SetSelectedItemNumber(1)
        self.assertFrameUpright(logic, 1)
        mask = np.zeros(logic.frames.frame_shape, bool)
        mask[40:56, 30:70] = True
        # Writing items in place calls Modified() on the segmentation sequence once per batch; the browser
        # then refreshes its proxies, and the image proxy (no "save changes") is deep-copied, which fires its
        # ModifiedEvent (vtkMRMLSequenceBrowserNode, vtkSlicerSequencesLogic). What matters is that this
        # happens once per batch, not once per frame, and that no browser item is selected for it.
        def proxyEventsDuring(write):
            events = []
            tag = proxy.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: events.append(event))
            try:
                write()
            finally:
                proxy.RemoveObserver(tag)
            return len(events)

        # Both batches leave out the shown item 1 (written through its proxy, which the browser saves itself).
        oneFrame = proxyEventsDuring(lambda: logic.masks.write_frames(logic.segmentId, {0: mask}))
        logic.masks.write_frames(logic.segmentId, {0: np.zeros_like(mask)})
        written = []
        threeFrames = proxyEventsDuring(
            lambda: written.extend(logic.masks.write_frames(logic.segmentId, {4: mask, 2: mask, 3: mask})))
        self.assertEqual(written, [2, 3, 4])
        self.assertLessEqual(threeFrames, oneFrame, "the proxies must be refreshed once per batch, not per frame")
        self.assertEqual(logic.masks.write_frames(logic.segmentId, {2: np.zeros_like(mask), 1: mask}), [1, 2])
        self.assertEqual(browser.GetSelectedItemNumber(), 1)
        self.assertSavedAgainAfterItemWrites(logic, mask)
        volume = logic.masks.segment_volume(logic.segmentId)
        self.assertEqual([int(k) for k in np.flatnonzero(volume.reshape(5, -1).any(axis=1))], [1, 3, 4])
        # The shown item went through the proxy segmentation, the others into the sequence's items.
        shown = slicer.util.arrayFromSegmentBinaryLabelmap(logic.segmentationNode, logic.segmentId, proxy)
        self.assertEqual(int((shown > 0).sum()), int(mask.sum()))
        browser.SetSelectedItemNumber(3)
        shown = slicer.util.arrayFromSegmentBinaryLabelmap(logic.segmentationNode, logic.segmentId, proxy)
        self.assertEqual(int((shown > 0).sum()), int(mask.sum()))
        browser.SetSelectedItemNumber(2)
        self.assertFalse(logic.masks.read_frame(logic.segmentId, 2).any())
        self.assertEqual(logic.frames.stack().n_frames, 5)
        logic.runner.shutdown()

    def assertSavedAgainAfterItemWrites(self, logic, mask):
        """After a save, masks written into items other than the shown one make the sequence "Modified"
        again, so that the Save dialog selects it (GetModifiedSinceRead)."""
        import numpy as np

        sequence = logic.masks.layer.sequence
        path = os.path.join(tempfile.mkdtemp(prefix="samus_selftest_"), "masks.seq.mrb")
        if not slicer.util.saveNode(sequence, path):
            self.delayDisplay("Skipped the save check: this Slicer cannot write a segmentation sequence to .seq.mrb")
            return
        self.assertFalse(sequence.GetModifiedSinceRead())
        logic.masks.write_frames(logic.segmentId, {2: mask})  # not the shown item
        self.assertTrue(sequence.GetModifiedSinceRead(), "propagated masks would be left out of the next save")
        logic.masks.write_frames(logic.segmentId, {2: np.zeros_like(mask)})

    def test_cine_clicks_with_server(self):
        url, _ = self.serverOrSkip()
        self.delayDisplay(f"Cine clicks against the SAMUS server at {url}")
        logic = SAMUSSegmentLogic()
        try:
            self.clickOnCine(logic, url)
        finally:
            logic.runner.shutdown()
        self.delayDisplay("Test passed")

    def clickOnCine(self, logic, url):
        import numpy as np

        logic.connect(url)
        frames = self.syntheticFrames(n=5)
        browser, proxy = self.makeCine(frames)
        logic.setInput(proxy)
        logic.goToFrame(2)
        world = logic.frames.toWorld(2, 50 + 3 * 2, 48)  # centre of the dark ellipse on frame 2
        logic.positiveNode.AddControlPointWorld(vtk.vtkVector3d(*world))
        job = logic.updateFromMarkups()
        self.assertIsNotNone(job)
        logic.runner.wait(600)
        volume = logic.masks.segment_volume(logic.segmentId)
        nonEmpty = [int(k) for k in np.flatnonzero(volume.reshape(5, -1).any(axis=1))]
        self.assertEqual(nonEmpty, [2], "the click must produce a mask on its own frame only")
        self.assertEqual(logic.uploader.uploads, 1)

        # Chunked propagation over the next two frames: two requests, written into the cine's items.
        errors = []
        logic.onError = errors.append
        logic.chunkFrames = 1
        run = logic.propagate(2)
        self.assertEqual(run.current.params["frames"], [2, 3])
        logic.runner.wait(600)  # polls until the last chunk is in (each answer sends the next request)
        self.assertEqual(errors, [])
        self.assertTrue(run.finished and not run.stopped and not logic.propagating)
        if 3 in run.frames_done:  # the object was not lost on frame 4 (index 3): a second chunk went out
            self.assertEqual((run.plan.requests, run.plan.progress()), (2, (3, 3)))
        self.assertTrue(logic.undo())  # the propagation, as one step
        volume = logic.masks.segment_volume(logic.segmentId)
        self.assertEqual([int(k) for k in np.flatnonzero(volume.reshape(5, -1).any(axis=1))], [2])

        self.assertTrue(logic.undo())
        self.assertFalse(logic.masks.segment_volume(logic.segmentId).any())
