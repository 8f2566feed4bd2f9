"""The app's refinement memory: which earlier logits a click request reuses (server behaviour is in
test_app_server.py)."""
import sys

import numpy as np

from app_server import APP_DIR

sys.path.insert(0, str(APP_DIR))  # the app's `lib` package, as MONAI Label imports it
from lib.refinement import RefinementMemory  # noqa: E402
from samus.propagate import FramePrompt  # noqa: E402


def prompt(clicks, box=None):
    pts = np.array([c[:2] for c in clicks], dtype=np.float64).reshape(-1, 2)
    labels = np.array([c[2] for c in clicks], dtype=np.int64)
    return FramePrompt(pts, labels, None if box is None else np.array(box, dtype=np.float64))


def logits(v):
    return np.full((8, 8), v, np.float32)


def test_a_request_with_one_more_click_finds_the_previous_logits():
    m = RefinementMemory()
    m.remember("img", 0, "v1", prompt([(10, 20, 1)]), logits(1))
    m.remember("img", 0, "v1", prompt([(10, 20, 1), (30, 5, 0)]), logits(2))
    # order of the clicks does not matter (the Slicer plugin sends foreground and background lists)
    got = m.previous("img", 0, "v1", prompt([(30, 5, 0), (50, 50, 1), (10.0, 20.0, 1)]))
    assert got is not None and got.logits.dtype == np.float32 and np.all(got.logits == 2)
    assert got.new_click == 1  # the click the earlier request did not have, wherever the client put it
    # undo: the last click removed -> the request before it
    undo = m.previous("img", 0, "v1", prompt([(10, 20, 1), (30, 5, 0)]))
    assert np.all(undo.logits == 1) and undo.new_click == 1


def test_nothing_is_shared_across_images_frames_versions_boxes_or_labels():
    m = RefinementMemory()
    m.remember("img", 0, "v1", prompt([(10, 20, 1)]), logits(1))
    two = [(10, 20, 1), (40, 40, 1)]
    assert m.previous("img", 0, "v1", prompt(two)) is not None
    assert m.previous("other", 0, "v1", prompt(two)) is None
    assert m.previous("img", 1, "v1", prompt(two)) is None
    assert m.previous("img", 0, "v2", prompt(two)) is None
    assert m.previous("img", 0, "v1", prompt(two, box=[0, 0, 50, 50])) is None
    assert m.previous("img", 0, "v1", prompt([(10, 20, 0), (40, 40, 1)])) is None  # same place, other label
    assert m.previous("img", 0, "v1", prompt([(10, 20, 1), (40, 40, 1), (5, 5, 0)])) is None  # two clicks more
    assert m.previous("img", 0, "v1", prompt([(10, 20, 1)])) is None  # same clicks: not a refinement of itself


def test_memory_is_bounded_and_keeps_the_recent_entries():
    m = RefinementMemory(max_entries=3)
    for i in range(5):
        m.remember("img", 0, "v1", prompt([(i, i, 1)]), logits(i))
    assert len(m) == 3
    assert m.previous("img", 0, "v1", prompt([(0, 0, 1), (9, 9, 1)])) is None  # evicted
    assert np.all(m.previous("img", 0, "v1", prompt([(4, 4, 1), (9, 9, 1)])).logits == 4)
    RefinementMemory(max_entries=0).remember("img", 0, "v1", prompt([(1, 1, 1)]), logits(1))  # disabled: no error
