"""samus.propagate, the frame-to-frame prompting behind the `samus_propagate` infer task."""
import numpy as np
import pytest
import samus
from samus.propagate import FramePrompt, PropagationOptions, chain_order, derived_prompt, propagate


@pytest.mark.parametrize("seeds, direction, expected", [
    ([5], "both", [(5, [6, 7, 8, 9]), (5, [4, 3, 2, 1, 0])]),
    ([2, 8], "both", [(2, [3, 4, 5]), (2, [1, 0]), (8, [9]), (8, [7, 6])]),
    ([2, 8], "forward", [(2, [3, 4, 5, 6, 7]), (8, [9])]),
    ([2, 8], "backward", [(2, [1, 0]), (8, [7, 6, 5, 4, 3])]),
    ([0, 9], "both", [(0, [1, 2, 3, 4]), (9, [8, 7, 6, 5])]),
])
def test_chains_cover_each_frame_once(seeds, direction, expected):
    chains = chain_order(seeds, 0, 9, direction)
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


def _moving_disk(frames: int = 6, step: int = 50, radius: int = 22, seed: int = 0):
    """A dark disk on speckle that jumps `step` pixels right each frame (farther than its own size)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    h, w = 240, 60 + step * frames + 60
    yy, xx = np.mgrid[:h, :w]
    texture = gaussian_filter(rng.rayleigh(1.0, (h, w)), 1.0)  # the tissue moves with the probe too
    cine = np.zeros((h, w, frames), np.uint8)
    truth = np.zeros((h, w, frames), bool)
    for k in range(frames):
        disk = (yy - 120) ** 2 + (xx - 60 - step * k) ** 2 <= radius ** 2
        moved = np.roll(texture, step * k, axis=1)
        cine[:, :, k] = np.clip(np.where(disk, 0.06, 0.35) * moved / 1.25 * 255, 0, 255).astype(np.uint8)
        truth[:, :, k] = disk
    return cine, truth


def test_frame_motion_measures_the_shift_around_the_object():
    from samus.propagate import frame_motion

    cine, truth = _moving_disk(step=23)
    assert np.allclose(frame_motion(cine[:, :, 1], cine[:, :, 2], truth[:, :, 1]), [23, 0], atol=1.0)
    assert np.allclose(frame_motion(cine[:, :, 2], cine[:, :, 1], truth[:, :, 2]), [-23, 0], atol=1.0)
    assert np.allclose(frame_motion(cine[:, :, 0], cine[:, :, 0], np.zeros_like(truth[:, :, 0])), [0, 0])


def test_propagation_follows_an_object_that_moves_farther_than_its_size(one_thread):
    # The previous frame's mask does not overlap the object on the next frame: only tracking the motion
    # keeps the clicks on it. The bundled models follow clicks on dark round objects (test_click_following);
    # the fast one is the app's default for propagation.
    predictor = samus.SamusPredictor(samus.load_default_model(model="fast"))
    cine, truth = _moving_disk()
    prompt = {0: FramePrompt(np.array([[60.0, 120.0]]), np.array([1]))}
    dice = {}
    for name, opts in {"tracked": PropagationOptions(direction="forward"),
                       "untracked": PropagationOptions(direction="forward", track_motion=False,
                                                       carry_seed_clicks=False)}.items():
        result = propagate(predictor, lambda k: cine[:, :, k], cine.shape[2], prompt, lambda k: ("disk", k),
                           options=opts)
        dice[name] = [2 * (result.masks[k] & truth[:, :, k]).sum() / (result.masks[k].sum() + truth[:, :, k].sum())
                      if k in result.masks else 0.0 for k in range(cine.shape[2])]
    tracked, untracked = np.mean(dice["tracked"][1:]), np.mean(dice["untracked"][1:])
    assert dice["tracked"][0] >= 0.5 and tracked >= dice["tracked"][0] - 0.1, dice
    assert untracked <= tracked - 0.2, dice  # without tracking the chain loses it


@pytest.mark.parametrize("lose", [False, True])
def test_resuming_from_chain_ends_gives_the_one_shot_masks(tiny_predictor, lose):
    frames = np.random.default_rng(3).integers(0, 255, (64, 80, 20), dtype=np.uint8)
    prompt = {8: FramePrompt(np.array([[30.0, 20.0], [50.0, 40.0]]), np.array([1, 0]))}
    args = (tiny_predictor, lambda k: frames[:, :, k], 20, prompt, lambda k: ("r", k))
    min_area = 0
    if lose:  # a threshold that the seed passes and a later frame of the forward chain does not
        areas = {k: int(m.sum()) for k, m in propagate(*args, options=PropagationOptions(min_area=0)).masks.items()}
        min_area = max(a for k, a in areas.items() if k > 12 and a < areas[8]) + 1
    opts = PropagationOptions(min_area=min_area)
    whole = propagate(*args, options=opts)
    # Forward in chunks 8..11, 12..15, 16..19, then backward 0..7, each continuing where the last chain ended.
    ends, pieced, stopped = {}, {}, set()
    for walk, keep in [((8, 11), (8, 11)), ((8, 15), (12, 15)), ((8, 19), (16, 19)), ((0, 8), (0, 7))]:
        chunk = propagate(*args, frame_range=walk, options=opts,
                          resume={c: e for c, e in ends.items() if (e[0] < keep[0] if c[1] > 0 else e[0] > keep[1])})
        ends.update(chunk.chain_ends)
        pieced.update({k: m for k, m in chunk.masks.items() if keep[0] <= k <= keep[1]})
        stopped |= set(chunk.stopped_at)
    assert sorted(pieced) == whole.frames
    assert all(np.array_equal(pieced[k], whole.masks[k]) for k in whole.frames)
    assert stopped == set(whole.stopped_at)
    if lose:
        assert whole.stopped_at  # the lost-object path was exercised


def test_derived_prompt_maps_through_a_padded_canvas():
    # LiteMedSAM's canvas: a 300 x 600 image fills the top 128 rows of 256; its logits are 256 x 256.
    from samus.geometry import LongestSideAndPad

    logits = np.full((256, 256), -5.0)
    logits[40:80, 100:160] = 5.0  # 2.34 original pixels per cell: an object at x 235-373, y 94-186
    p = derived_prompt(logits, (300, 600), box_margin=0.0, geometry=LongestSideAndPad(256))
    (x, y), = p.points
    assert 235 <= x <= 373 and 94 <= y <= 186, (x, y)
    x0, y0, x1, y1 = p.box
    assert abs(x0 - 235) < 3 and abs(x1 - 373) < 3 and abs(y0 - 94) < 3 and abs(y1 - 186) < 3, p.box
