"""Local correction (samus.correction): a corrective click changes the mask fed back only where it touches."""
import numpy as np
import pytest
from scipy import ndimage

import samus
from samus.correction import local_correction
from repo_paths import SAMPLES, load_png


def logits(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 4.0, -4.0).astype(np.float32)


def square(y0, y1, x0, x1, size=32):
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_positive_click_adds_only_the_new_region_it_lies_in():
    previous = square(8, 16, 8, 16)
    new = previous | square(8, 16, 16, 20) | square(26, 30, 26, 30)  # grows at the click, and far away
    merged = local_correction(logits(previous), logits(new), (18.5, 12.0), 1) > 0
    assert np.array_equal(merged, previous | square(8, 16, 16, 20))


def test_a_negative_click_removes_only_the_cleared_region_it_lies_in():
    previous = square(4, 28, 4, 28)
    new = previous & ~square(4, 28, 22, 28) & ~square(4, 8, 4, 8)  # a strip at the click and a far corner
    merged = local_correction(logits(previous), logits(new), (25.0, 15.0), 0) > 0
    assert np.array_equal(merged, previous & ~square(4, 28, 22, 28))


def test_a_click_the_decoder_did_not_follow_takes_its_whole_answer():
    previous, new = square(8, 16, 8, 16), square(10, 20, 10, 20)
    out = local_correction(logits(previous), logits(new), (2.0, 2.0), 1)  # (2, 2) is background in both
    assert np.array_equal(out, logits(new))


@pytest.mark.parametrize("args, message", [
    ((np.zeros((8, 8)), np.zeros((4, 4)), (1, 1), 1), "same L x L grid"),
    ((np.zeros((8, 8)), np.zeros((8, 8)), (1, 1), 2), "label"),
])
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        local_correction(*args)


def test_the_predictor_changes_the_fed_back_mask_only_around_the_new_click():
    from samus.prompts import next_click

    image = load_png(SAMPLES / "images" / "benign_3.png")
    truth = load_png(SAMPLES / "masks" / "benign_3.png") > 0
    predictor = samus.SamusPredictor(samus.load_default_model(model="fast"))
    predictor.set_image(image)
    ys, xs = np.nonzero(truth)
    clicks = [(int(np.median(xs)), int(np.median(ys)), 1)]
    pred, _, low = predictor.predict([c[:2] for c in clicks], [1])
    for _ in range(3):  # corrective clicks at the largest error, as a user places them
        x, y, label = (int(v) for v in next_click(pred, truth, previous=clicks))
        clicks.append((x, y, label))
        pts, labels = [c[:2] for c in clicks], [c[2] for c in clicks]
        pred, _, local = predictor.predict(pts, labels, mask_input=low)  # local is the default
        _, _, whole = predictor.predict(pts, labels, mask_input=low, correction="global")
        changed = (local > 0) != (low > 0)
        assert not np.array_equal(local, whole), "the decoder also moved the mask away from the click"
        regions, n = ndimage.label(changed)
        cell = (int((y + 0.5) * low.shape[0] / image.shape[0]), int((x + 0.5) * low.shape[1] / image.shape[1]))
        assert n == 1 and regions[cell] == 1, "one connected change, at the click"
        assert np.all((local[changed] > 0) == bool(label))  # a positive click adds, a negative one removes
        assert np.array_equal(local[~changed], low[~changed])  # elsewhere the previous logits stay
        low = local


def test_a_click_that_makes_the_model_see_another_object_takes_its_whole_answer():
    previous, new = square(2, 10, 2, 10), square(14, 30, 14, 30)  # e.g. a misread box, then a click elsewhere
    out = local_correction(logits(previous), logits(new), (20.0, 20.0), 1)
    assert np.array_equal(out, logits(new))


def test_a_click_reaches_about_twice_its_distance_from_the_old_border():
    previous = square(4, 28, 2, 16)
    new = previous | square(4, 28, 16, 26)  # the decoder grows the mask 10 cells to the right
    merged = local_correction(logits(previous), logits(new), (17.0, 16.0), 1) > 0  # 2 cells beyond the border
    grown = merged & ~previous
    assert grown[4:28, 16:22].all() and not grown[:, 22:].any()  # up to 2 x 2 + 2 = 6 cells from the old border
