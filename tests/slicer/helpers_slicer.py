"""Helpers for the Slicer module tests: import the module's Slicer-free library from its folder, and
load the module file itself against stand-ins for Slicer's Python packages."""
import contextlib
import importlib.util
import sys
import types
import unittest
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "slicer_module" / "SAMUSSegment"
LIB_DIR = MODULE_DIR / "SAMUSSegmentLib"
MODULE_FILE = MODULE_DIR / "SAMUSSegment.py"
SELF_TEST_FILE = MODULE_DIR / "Testing" / "Python" / "SAMUSSegmentTest.py"  # the module's SAMUSSegmentTest
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SAMUSSegment.ui"
ICON_FILE = MODULE_DIR / "Resources" / "Icons" / "SAMUSSegment.png"
SAMPLES = ROOT / "samples" / "busi"
APP_TESTS_DIR = ROOT / "tests" / "app"  # app_server.py: the real server the server tests talk to

# Slicer puts the module folder on sys.path; do the same so `import SAMUSSegmentLib` works.
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


class _Base:
    def __init__(self, *args, **kwargs):
        pass


class FakeScriptedLoadableModuleTest(unittest.TestCase):
    """Slicer's test base class is a unittest.TestCase with delayDisplay()."""

    def __init__(self, methodName="runTest"):
        super().__init__(methodName)
        self.displayed = []

    def delayDisplay(self, message, msec=None):
        self.displayed.append(message)


class FakeObservationMixin:
    def __init__(self):
        self.observers = []

    def addObserver(self, *args):
        self.observers.append(args)

    def hasObserver(self, *args):
        return args in self.observers

    def removeObserver(self, *args):
        self.observers.remove(args)

    def removeObservers(self, *args):
        self.observers.clear()


def vtk_to_numpy(array):
    """The stand-in VTK arrays are numpy arrays already."""
    return np.asarray(array)


@contextlib.contextmanager
def fake_slicer():
    """sys.modules with stand-ins for slicer, qt, vtk and ctk; yields the fake `slicer` package.

    Only what the module uses at import time is real (base classes, decorators); everything else is a
    MagicMock. Everything imported inside the block is forgotten afterwards.
    """
    slicer = types.ModuleType("slicer")
    slicer.__path__ = []
    slicer.mrmlScene = mock.MagicMock(name="mrmlScene")
    slicer.app = mock.MagicMock(name="app")
    slicer.vtkMRMLScalarVolumeNode = type("vtkMRMLScalarVolumeNode", (), {})
    slicer.modules = mock.MagicMock(name="modules")
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = lambda *args: None
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    scripted.ScriptedLoadableModule = type("ScriptedLoadableModule", (_Base,), {})
    scripted.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (_Base,), {})
    scripted.ScriptedLoadableModuleLogic = type("ScriptedLoadableModuleLogic", (_Base,), {})
    scripted.ScriptedLoadableModuleTest = FakeScriptedLoadableModuleTest
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = FakeObservationMixin
    slicer.parameterNodeWrapper, slicer.ScriptedLoadableModule, slicer.util = wrapper, scripted, util
    vtk = mock.MagicMock(name="vtk")
    numpy_support = types.ModuleType("vtk.util.numpy_support")
    numpy_support.vtk_to_numpy = vtk_to_numpy
    vtk.util.numpy_support = numpy_support
    fakes = {"slicer": slicer, "slicer.parameterNodeWrapper": wrapper, "slicer.ScriptedLoadableModule": scripted,
             "slicer.util": util, "qt": mock.MagicMock(name="qt"), "ctk": mock.MagicMock(name="ctk"),
             "vtk": vtk, "vtk.util": vtk.util, "vtk.util.numpy_support": numpy_support}
    with mock.patch.dict(sys.modules, fakes):
        yield slicer


def load_module_file():
    """SAMUSSegment.py (and its scene adapters) imported against the stand-ins; call inside fake_slicer()."""
    spec = importlib.util.spec_from_file_location("SAMUSSegment", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["SAMUSSegment"] = module
    spec.loader.exec_module(module)
    return module


def load_self_test():
    """Testing/Python/SAMUSSegmentTest.py as SAMUSSegment.runTest loads it; call after load_module_file()."""
    spec = importlib.util.spec_from_file_location("SAMUSSegmentTest", SELF_TEST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
