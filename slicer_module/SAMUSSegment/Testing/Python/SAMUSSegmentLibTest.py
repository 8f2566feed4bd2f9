"""The module's Slicer-free library, run in Slicer's Python (its numpy and SimpleITK).

The full suite lives in the repository's tests/ (pytest); this checks that the library
works with the Python, numpy and SimpleITK that ship with the Slicer release.
"""
import os
import sys
import tempfile
import unittest

import numpy as np

MODULE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)

from SAMUSSegmentLib import geometry, nrrd  # noqa: E402
from SAMUSSegmentLib.frames import ArrayMaskStore  # noqa: E402
from SAMUSSegmentLib.session import InteractiveSession, JobResult  # noqa: E402
from SAMUSSegmentLib.training import describe_training  # noqa: E402
from SAMUSSegmentLib.upload import FrameStack  # noqa: E402


class SAMUSSegmentLibTest(unittest.TestCase):
    def test_nrrd_with_simpleitk(self):
        import SimpleITK as sitk

        array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        ijk_to_ras = geometry.ijk_to_ras_matrix([1.0, 2.0, 3.0], [0.5, 0.4, 2.0])
        path = os.path.join(tempfile.mkdtemp(), "x.nrrd")
        with open(path, "wb") as f:
            f.write(nrrd.write_nrrd(array, ijk_to_ras))
        image = sitk.ReadImage(path)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
        np.testing.assert_allclose(image.GetOrigin(), [-1.0, -2.0, 3.0])

    def test_geometry_round_trip(self):
        ijk_to_ras = geometry.ijk_to_ras_matrix([5, -3, 2], [0.3, 0.3, 1.2], [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
        world = geometry.ijk_to_world([4, 7, 1], ijk_to_ras)
        ijk = geometry.world_to_ijk(world, geometry.invert(ijk_to_ras))
        self.assertEqual(geometry.voxel_index(ijk, (10, 10, 3)), (4, 7, 1))

    def test_undo_of_a_frame_update(self):
        stack = FrameStack("cine", np.zeros((3, 4, 5), np.uint8), np.eye(4))
        session = InteractiveSession(None, ArrayMaskStore(3, (4, 5)), stack)
        job = session.set_points("s", 1, [(2, 2)], [])
        session.apply(JobResult(job, {1: np.ones((4, 5), bool)}))
        self.assertTrue(session.masks.read_frame("s", 1).all())
        session.undo()
        self.assertFalse(session.masks.read_frame("s", 1).any())

    def test_training_progress_from_the_trainers_record(self):
        task = {"status": "RUNNING", "details": ["epoch 9/10"]}  # log wording is shown, never parsed
        record = {"status": "RUNNING", "epoch": 2, "step": 5, "steps": 10, "total_epochs": 5}
        self.assertAlmostEqual(describe_training(task, record)[1], 0.3)
        self.assertIsNone(describe_training(task, None)[1])


if __name__ == "__main__":
    unittest.main()
