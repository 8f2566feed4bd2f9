"""SamusPredictor: input handling, geometry, the embedding cache, precision, bad input."""
import threading

import numpy as np
import pytest
import torch

import samus
from samus.preprocess import to_model_coords, to_original_coords
from repo_paths import SAMPLES, load_png


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return samus.build_samus("tiny")


@pytest.fixture()
def predictor(model):
    return samus.SamusPredictor(model, cache_size=8)


def count_encoder_calls(predictor):
    calls = []
    predictor._encoder.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("make", [
    lambda: (np.random.rand(120, 90) * 255).astype(np.uint8),
    lambda: (np.random.rand(120, 90, 3) * 255).astype(np.uint8),
    lambda: (np.random.rand(120, 90, 4) * 255).astype(np.uint8),
    lambda: (np.random.rand(120, 90, 1) * 255).astype(np.uint8),
    lambda: (np.random.rand(120, 90) * 65535).astype(np.uint16),
    lambda: (np.random.rand(120, 90) * 4095).astype(np.uint16),
    lambda: np.random.rand(120, 90).astype(np.float32),
    lambda: np.random.randn(120, 90) * 100.0,
])
def test_any_numeric_image_gives_a_mask_of_its_size(predictor, make):
    predictor.set_image(make())
    mask, score, low = predictor.predict([[10, 20], [50, 100]], [1, 0])
    assert mask.shape == (120, 90) and mask.dtype == bool
    assert isinstance(score, float)
    assert low.shape == (128, 128) and low.dtype == np.float32


def test_preprocessing_follows_the_authors():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 1] = 255  # pure green -> luma 0.587 (OpenCV's grayscale weights)
    assert samus.to_unit_grayscale(rgb) == pytest.approx(np.full((10, 20), 0.587), abs=1e-6)
    x = samus.preprocess_image(rgb)
    assert x.shape == (1, 1, 256, 256) and x.dtype == torch.float32
    assert samus.to_unit_grayscale(np.full((4, 4), 4095, np.uint16)).max() == pytest.approx(1.0)
    assert samus.to_unit_grayscale(np.full((4, 4), 200, np.uint16)).max() == pytest.approx(200 / 255)


def test_coordinates_map_pixel_centres_both_ways():
    hw = (100, 300)
    xy = np.array([[0, 0], [299, 99], [150, 50]], float)
    model_xy = to_model_coords(xy, hw)
    # First and last pixel centres are mirror images in the 256 frame.
    assert model_xy[0] + model_xy[1] == pytest.approx([255, 255])
    assert to_original_coords(model_xy, hw) == pytest.approx(xy)


def test_non_square_image_masks_land_where_the_logits_are(predictor, monkeypatch):
    """Logits positive in the left half and top quarter of the 128 grid -> the same part of a 100x300 image."""
    low = -torch.ones(1, 1, 128, 128)
    low[..., :32, :64] = 1.0
    seen = {}

    def fake_decode(emb, coords, labels, boxes, masks, bf16_decoder=False, foundation=None):
        seen["coords"] = coords
        return low, torch.zeros(1, 1)

    predictor.set_image(np.zeros((100, 300), np.uint8))
    monkeypatch.setattr(predictor.model, "decode", fake_decode)
    mask, _, _ = predictor.predict([[299, 99]], [1])
    assert mask[:25, :150].all() and not mask[25:, :].any() and not mask[:, 150:].any()
    x, y = seen["coords"][0, 0].tolist()
    assert x == pytest.approx((299.5) * 256 / 300 - 0.5) and y == pytest.approx(99.5 * 256 / 100 - 0.5)


def test_second_click_on_a_cached_frame_does_not_run_the_encoder(predictor):
    calls = count_encoder_calls(predictor)
    image = load_png(sorted((SAMPLES / "images").glob("*.png"))[0])
    assert predictor.set_image(image, key=("img", 0)) is False
    a = predictor.predict([[100, 100]], [1])
    assert predictor.set_image(image, key=("img", 0)) is True
    b = predictor.predict([[100, 100]], [1])
    assert len(calls) == 1 and predictor.cache.hits == 1
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_batched_encoding_fills_the_cache_and_matches_single_frames(predictor):
    frames = [(np.random.rand(64, 80) * 255).astype(np.uint8) for _ in range(5)]
    keys = [("vol", k) for k in range(5)]
    batched = predictor.encode_frames(frames, keys, batch_size=3)
    assert len(predictor.cache) == 5
    single, cached = predictor.embed(frames[3])
    assert not cached
    assert torch.allclose(batched[3].embedding, single.embedding, atol=1e-4)
    calls = count_encoder_calls(predictor)
    predictor.encode_frames(frames, keys)
    assert calls == []


def test_cache_is_bounded_in_entries_and_bytes():
    item = samus.ImageEmbedding(torch.zeros(1, 4, 8, 8), (10, 10))  # 1 KiB
    cache = samus.EmbeddingCache(max_entries=3, max_bytes=10 * 2**20)
    for k in range(5):
        cache.put(k, item)
    assert len(cache) == 3 and 0 not in cache and 4 in cache
    small = samus.EmbeddingCache(max_entries=100, max_bytes=2 * item.nbytes)
    for k in range(5):
        small.put(k, item)
    assert len(small) == 2 and small.nbytes == 2 * item.nbytes
    assert small.discard(lambda k: k == 4) == 1 and len(small) == 1


def test_concurrent_users_get_the_same_answers_as_one_user(model):
    predictor = samus.SamusPredictor(model, cache_size=4)
    images = [(np.random.RandomState(i).rand(90, 110) * 255).astype(np.uint8) for i in range(4)]
    expected = [predictor.predict_embedding(predictor.embed(im)[0], [[40, 30]], [1])[2] for im in images]
    results, errors = {}, []

    def user(i):
        try:
            for _ in range(3):
                emb, _ = predictor.embed(images[i % 4], key=i % 4)
                results[i] = predictor.predict_embedding(emb, [[40, 30]], [1])[2]
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for i, low in results.items():
        np.testing.assert_allclose(low, expected[i % 4], atol=1e-4)


def test_bf16_is_close_to_fp32(model):
    image = (np.random.RandomState(1).rand(128, 128) * 255).astype(np.uint8)
    e32 = samus.SamusPredictor(model).embed(image)[0].embedding
    e16 = samus.SamusPredictor(model, precision="bf16").embed(image)[0].embedding
    corr = torch.corrcoef(torch.stack([e32.flatten(), e16.flatten()]))[0, 1]
    assert corr > 0.99
    with pytest.raises(ValueError, match="precision"):
        samus.SamusPredictor(model, precision="fp8")


def test_box_and_previous_mask_prompts(predictor):
    predictor.set_image(np.zeros((60, 80), np.uint8))
    _, _, low = predictor.predict(box=[10, 10, 50, 40])
    mask, _, _ = predictor.predict([[30, 20]], [1], box=[10, 10, 50, 40], mask_input=low)
    assert mask.shape == (60, 80)


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 10)), "empty"),
    (np.zeros((5,)), "HxW"),
    (np.zeros((2, 3, 4, 5)), "HxW"),
    (np.zeros((10, 10, 2)), "HxW"),
    (np.full((10, 10), np.nan), "NaN"),
    (np.array([["a"]]), "numeric"),
])
def test_bad_images_are_refused_with_a_reason(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.set_image(image)


@pytest.mark.parametrize("kwargs, message", [
    (dict(point_coords=[], point_labels=[]), "no clicks"),
    (dict(), "no prompt"),
    (dict(point_coords=[[80, 10]], point_labels=[1]), "outside"),
    (dict(point_coords=[[-1, 10]], point_labels=[1]), "outside"),
    (dict(point_coords=[[10, 60]], point_labels=[1]), "outside"),
    (dict(point_coords=[[np.nan, 10]], point_labels=[1]), "NaN"),
    (dict(point_coords=[["a", 10]], point_labels=[1]), "numbers"),
    (dict(point_coords=[[1, 2, 3]], point_labels=[1]), "N x 2"),
    (dict(point_coords=[[1, 2]], point_labels=[1, 0]), "one label per click"),
    (dict(point_coords=[[1, 2]], point_labels=[2]), "foreground"),
    (dict(point_coords=[[1, 2]], point_labels=[1], box=[5, 5, 1, 1]), "x1 <= x2"),
    (dict(point_coords=[[1, 2]], point_labels=[1], box=[0, 0, 100, 10]), "outside"),
    (dict(point_coords=[[1, 2]], point_labels=[1], mask_input=np.zeros((64, 64))), "low-res"),
    (dict(point_coords=[[1, 2]], point_labels=[1], correction="partial"), "correction must be one of"),
    (dict(point_coords=[[1, 2]], point_labels=[1], mask_input=np.zeros((128, 128)), new_click=1), "new_click"),
])
def test_bad_prompts_are_refused_with_a_reason(predictor, kwargs, message):
    predictor.set_image(np.zeros((60, 80), np.uint8))
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def test_predict_before_set_image(model):
    with pytest.raises(RuntimeError, match="set_image"):
        samus.SamusPredictor(model).predict([[1, 1]], [1])
