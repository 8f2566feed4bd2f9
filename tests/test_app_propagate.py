"""samus.propagate, the frame-to-frame prompting behind the `samus_propagate` infer task."""
import numpy as np
import pytest
import samus
from samus.propagate import FramePrompt, PropagationOptions, _chain_order, derived_prompt, propagate


@pytest.mark.parametrize("seeds, direction, expected", [
    ([5], "both", [(5, [6, 7, 8, 9]), (5, [4, 3, 2, 1, 0])]),
    ([2, 8], "both", [(2, [3, 4, 5]), (2, [1, 0]), (8, [9]), (8, [7, 6])]),
    ([2, 8], "forward", [(2, [3, 4, 5, 6, 7]), (8, [9])]),
    ([2, 8], "backward", [(2, [1, 0]), (8, [7, 6, 5, 4, 3])]),
    ([0, 9], "both", [(0, [1, 2, 3, 4]), (9, [8, 7, 6, 5])]),
])
def test_chains_cover_each_frame_once(seeds, direction, expected):
    chains = _chain_order(seeds, 0, 9, direction)
    assert chains == expected
    visited = [k for _, frames in chains for k in frames]
    assert len(visited) == len(set(visited)) and not set(visited) & set(seeds)


def test_derived_click_is_inside_the_object_in_original_pixels():
    yy, xx = np.mgrid[0:128, 0:128]
    logits = np.where((yy - 40) ** 2 + (xx - 90) ** 2 < 15 ** 2, 5.0, -5.0).astype(np.float32)
    p = derived_prompt(logits, (300, 400), positives=3, negatives=4)  # original image 400 wide, 300 high
    assert list(p.labels) == [1, 1, 1, 0, 0, 0, 0]
    # The deepest point is the disk centre: (90.5, 40.5) in the 128 grid -> x * 400/128, y * 300/128.
    x, y = p.points[0]
    assert abs(x - 90.5 * 400 / 128) < 6 and abs(y - 40.5 * 300 / 128) < 6
    centre = np.array([90.5 * 400 / 128, 40.5 * 300 / 128])
    radius_x = 15 * 400 / 128
    inside = np.linalg.norm((p.points - centre) / [400 / 128, 300 / 128], axis=1) < 15
    assert inside[:3].all() and not inside[3:].any()
    assert (np.linalg.norm(p.points[3:] - centre, axis=1) < 3 * radius_x).all()  # close around the object
    assert p.box is None
    box = derived_prompt(logits, (300, 400), box_margin=0.0).box  # the disk's bounding box, original pixels
    expected = [(90.5 - 14.5) * 400 / 128, (40.5 - 14.5) * 300 / 128, (90.5 + 14.5) * 400 / 128, (40.5 + 14.5) * 300 / 128]
    assert np.allclose(box, expected, atol=4)


@pytest.fixture(scope="module")
def tiny_predictor(tiny_checkpoint):
    return samus.SamusPredictor(samus.build_samus(None, tiny_checkpoint))


def test_propagate_checks_its_inputs(tiny_predictor):
    frames = np.random.default_rng(0).integers(0, 255, (64, 80, 6), dtype=np.uint8)
    prompt = {2: FramePrompt(np.array([[10.0, 10.0]]), np.array([1]))}
    args = (tiny_predictor, lambda k: frames[:, :, k], 6)
    with pytest.raises(ValueError, match="outside the frame range"):
        propagate(*args, prompt, lambda k: ("t", k), frame_range=(3, 5))
    with pytest.raises(ValueError, match="no prompts"):
        propagate(*args, {}, lambda k: ("t", k))
    with pytest.raises(ValueError, match="direction"):
        propagate(*args, prompt, lambda k: ("t", k), options=PropagationOptions(direction="up"))


def test_lost_object_stops_the_chain(tiny_predictor):
    frames = np.random.default_rng(0).integers(0, 255, (64, 80, 6), dtype=np.uint8)
    prompt = {2: FramePrompt(np.array([[10.0, 10.0]]), np.array([1]))}
    # No mask can reach min_area = every pixel + 1: only the clicked frame is segmented, nothing follows.
    result = propagate(tiny_predictor, lambda k: frames[:, :, k], 6, prompt, lambda k: ("t", k),
                       options=PropagationOptions(min_area=64 * 80 + 1))
    assert result.frames == [2] and result.stopped_at == [2] and result.seeds == [2]
    # Without a stop criterion every frame of the range gets a mask (the tiny model is untrained).
    result = propagate(tiny_predictor, lambda k: frames[:, :, k], 6, prompt, lambda k: ("t", k),
                       frame_range=(1, 4), options=PropagationOptions(min_area=0))
    assert result.frames == [1, 2, 3, 4] and result.stopped_at == []
    assert all(result.masks[k].shape == (64, 80) for k in result.frames)
