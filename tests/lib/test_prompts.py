"""Prompt simulation: the authors' random training click, middle evaluation click and jittered box."""
import numpy as np
import pytest

from samus.prompts import PAD_LABEL, first_prompt, jittered_box, middle_click, random_clicks, tight_box


def _mask():
    m = np.zeros((256, 256), bool)
    m[100:140, 60:120] = True  # rows 100..139, columns 60..119
    m[30:40, 200:210] = True
    return m


def test_random_clicks_inside_mask_and_seeded():
    m = _mask()
    xy, labels = random_clicks(m, np.random.default_rng(7), positives=5, negatives=3)
    assert xy.shape == (8, 2) and xy.dtype == np.float32
    assert labels.tolist() == [1] * 5 + [0] * 3
    cols, rows = xy[:, 0].astype(int), xy[:, 1].astype(int)
    assert m[rows[:5], cols[:5]].all(), "positive clicks must lie in the mask ((x, y) = (col, row))"
    assert not m[rows[5:], cols[5:]].any(), "negative clicks must lie outside the mask"
    again, _ = random_clicks(m, np.random.default_rng(7), positives=5, negatives=3)
    np.testing.assert_array_equal(xy, again)
    other, _ = random_clicks(m, np.random.default_rng(8), positives=5, negatives=3)
    assert not np.array_equal(xy, other)


def test_random_click_is_uniform_over_foreground():
    m = np.zeros((10, 10), bool)
    m[2, 3] = m[7, 8] = True
    rng = np.random.default_rng(0)
    picks = [tuple(random_clicks(m, rng)[0][0]) for _ in range(400)]
    assert set(picks) == {(3.0, 2.0), (8.0, 7.0)}
    assert 150 < picks.count((3.0, 2.0)) < 250


def test_absent_class_gives_background_click_with_label_0():
    m = np.zeros((32, 32), bool)
    xy, labels = random_clicks(m, np.random.default_rng(0), positives=2)
    assert labels.tolist() == [0, 0] and xy.shape == (2, 2)
    xy, labels = middle_click(m)
    assert labels.tolist() == [0]
    assert xy.tolist() == [[0.0, 16.0]]  # element 512 of 1024 row-major pixels: row 16, column 0


def test_middle_click_is_authors_median_index_pixel():
    m = np.zeros((8, 8), bool)
    m[1, 5] = m[2, 1] = m[2, 6] = m[4, 3] = m[6, 0] = True  # row-major order; n = 5, element 2 -> (row 2, col 6)
    xy, labels = middle_click(m)
    assert xy.tolist() == [[6.0, 2.0]] and labels.tolist() == [1]
    m[7, 7] = True  # n = 6, element 3 -> (row 4, col 3)
    assert middle_click(m)[0].tolist() == [[3.0, 4.0]]


def test_tight_and_jittered_box():
    m = _mask()
    assert tight_box(m).tolist() == [60, 30, 209, 139]
    assert tight_box(np.zeros((20, 30), bool)).tolist() == [0, 0, 29, 19]
    rng = np.random.default_rng(3)
    for _ in range(50):
        x1, y1, x2, y2 = jittered_box(m, rng)
        w, h = 150, 110
        assert 0 <= x1 < x2 <= 255 and 0 <= y1 < y2 <= 255
        # centre moves by <= 5% of the size, size scales by 0.95..1.05
        assert abs((x1 + x2) / 2 - 134.5) <= 0.05 * w + 1e-3 and abs((y1 + y2) / 2 - 84.5) <= 0.05 * h + 1e-3
        assert 0.95 * w - 1.01 <= x2 - x1 + 1 <= 1.05 * w + 1e-3
    boxes = {tuple(jittered_box(m, rng)) for _ in range(5)}
    assert len(boxes) == 5


def test_clicks_reject_non_2d_masks():
    with pytest.raises(ValueError, match="2D"):
        middle_click(np.zeros((2, 4, 4), bool))


def test_first_prompts_vary_and_respect_the_mask():
    m = np.zeros((256, 256), bool)
    m[80:160, 90:200] = True
    rng = np.random.default_rng(3)
    kinds = set()
    for _ in range(200):
        coords, labels = first_prompt(m, rng, 8)
        assert coords.shape == (8, 2) and labels.shape == (8,)
        real = labels != PAD_LABEL
        assert real.sum() >= 1 and np.all(labels[real.sum():] == PAD_LABEL)  # padding only at the end
        for (x, y), lab in zip(coords[real], labels[real]):
            if lab in (0, 1):
                assert m[int(y), int(x)] == bool(lab)
        has_box = 2 in labels
        kinds.add("box" if has_box else ("negatives" if 0 in labels else ("several" if real.sum() > 1 else "one")))
        if has_box:
            x1, y1 = coords[labels == 2][0]
            x2, y2 = coords[labels == 3][0]
            assert abs(x1 - 90) < 10 and abs(y1 - 80) < 10 and abs(x2 - 199) < 10 and abs(y2 - 159) < 10
    assert kinds == {"box", "negatives", "several", "one"}
