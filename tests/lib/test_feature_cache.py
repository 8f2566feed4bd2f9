"""The frozen trunk's feature cache: exact features, keyed by trunk weights, image content, frame and view,
resumable; training and evaluation on cached features."""
import shutil

import numpy as np
import pytest
import torch

import samus
from samus.data import folder_items
from samus.evaluate import evaluate
from samus.feature_cache import FeatureCache
from samus.train import TrainConfig, train

from repo_paths import SAMPLES


@pytest.fixture(scope="module")
def lite():
    return samus.build_lite_medsam()


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    """Three sample images and masks in a folder of their own (so a test may change a file)."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for p in sorted((SAMPLES / "images").glob("*.png"))[:3]:
        shutil.copy(p, root / "images" / p.name)
        shutil.copy(SAMPLES / "masks" / p.name, root / "masks" / p.name)
    return [dict(it, dataset="busi") for it in folder_items(root)]


def test_cached_features_equal_the_trunk_and_are_reused(lite, items, tmp_path):
    cache = FeatureCache(tmp_path, lite)
    assert cache.fill(items[:1]) == 1
    assert cache.fill(items[:1]) == 0  # resumed: nothing encoded twice
    from samus.data import load_image
    from samus.preprocess import to_unit_grayscale

    gray = to_unit_grayscale(load_image(items[0]["image"]))
    with torch.no_grad():
        direct = lite.image_encoder.trunk_features(lite.preprocess(gray))[0]
    stored = cache.load(items[0])
    assert stored.dtype == torch.float16 and stored.shape == (256, 64, 64)
    assert torch.allclose(stored.float(), direct, atol=2e-2, rtol=1e-2)


def test_stale_entries_are_never_used(lite, items, tmp_path):
    cache = FeatureCache(tmp_path, lite)
    item = dict(items[0])
    first = cache.path(item)
    assert cache.path(item, "hflip") != first  # another view
    assert cache.path(dict(item, frame=1)) != first  # another frame
    # another image content under the same name
    from PIL import Image

    changed = tmp_path / "changed.png"
    shutil.copy(item["image"], changed)
    before = cache.path(dict(item, image=str(changed)))
    Image.fromarray(255 - np.asarray(Image.open(changed))).save(changed)
    assert cache.path(dict(item, image=str(changed))) != before
    # other trunk weights: another folder altogether
    other = samus.build_lite_medsam()
    with torch.no_grad():
        next(other.image_encoder.trunk.parameters()).add_(1e-3)
    assert FeatureCache(tmp_path, other).root != cache.root
    # a damaged entry is reported and dropped, so the next fill encodes it again
    cache.fill([item])
    cache.path(item).write_bytes(b"broken")
    with pytest.raises(ValueError, match="missing or damaged"):
        cache.load(item)
    assert cache.missing([item]) == [(item, "orig")] and cache.get(item) is None
    assert cache.fill([item]) == 1 and cache.get(item).shape == (256, 64, 64)


def test_training_on_cached_features_writes_a_loadable_model(items, tmp_path, one_thread):
    cfg = TrainConfig(arch="lite_medsam", config="lite_medsam_samus", mode="full", epochs=1, batch_size=2,
                      feature_cache=str(tmp_path / "cache"), views=("orig", "hflip"), out_dir=str(tmp_path / "run"),
                      max_rounds=1, progress_bar=False, tensorboard=False, val_clicks=2, box_prob=0.5)
    result = train(cfg, items[:2], items[2:])
    assert result["epochs_done"] == 1 and result["best"] is not None
    assert len(FeatureCache(cfg.feature_cache, result["model"]).missing(items, ("orig", "hflip"))) == 1  # val: orig only
    model = samus.build_model(checkpoint=result["best"])
    assert model.arch == "lite_medsam" and model.config_name == "lite_medsam_samus"
    trained = result["model"].state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    # the trunk did not move
    base = samus.build_lite_medsam()
    for k, v in base.image_encoder.trunk.state_dict().items():
        assert torch.equal(v, model.image_encoder.trunk.state_dict()[k]), k


def test_evaluation_with_cached_features_gives_the_same_masks(lite, items, tmp_path):
    predictor = samus.SamusPredictor(lite)
    plain = evaluate(predictor, items[:2], protocols=("box", "kclick"), k=2)
    cached = evaluate(predictor, items[:2], protocols=("box", "kclick"), k=2,
                      features=FeatureCache(tmp_path, lite))
    for a, b in zip(plain["rows"], cached["rows"]):
        assert a["protocol"] == b["protocol"] and abs(a["dice"] - b["dice"]) < 0.02, (a["id"], a["dice"], b["dice"])
    assert plain["summary"]["box"]["dice"]["mean"] > 0.5  # LiteMedSAM follows a tight box on real lesions


def test_box_teacher_keeps_boxes_and_validation_scores_them(items, tmp_path, one_thread):
    from samus.train.box_teacher import box_teacher_loss

    cfg = TrainConfig(arch="lite_medsam", config="lite_medsam", mode="full", epochs=1, batch_size=2,
                      feature_cache=str(tmp_path / "cache"), out_dir=str(tmp_path / "run"), max_rounds=0,
                      progress_bar=False, tensorboard=False, val_clicks=2, box_prob=0.5, box_teacher_weight=1.0,
                      val_box=True)
    result = train(cfg, items[:2], items[2:])
    record = result["history"][-1]
    (name, curve), = record["val_curves"].items()
    box = record["val_box"][name]
    assert 0 <= box <= 1 and len(curve) == 2
    assert record["val_dice"] == pytest.approx((curve[0] + curve[-1] + box) / 3)
    # the loss is smallest where the student answers a box as LiteMedSAM does, and ignores clicks
    teacher = samus.build_lite_medsam().eval()
    feats = torch.randn(2, 256, 64, 64)
    coords = torch.tensor([[[40.0, 50.0], [150.0, 160.0], [0, 0]], [[90.0, 90.0], [0, 0], [0, 0]]])
    labels = torch.tensor([[2, 3, -1], [1, -1, -1]])
    with torch.no_grad():
        own, _ = teacher.decode(feats[:1], boxes=torch.tensor([[40.0, 50.0, 150.0, 160.0]]))
    student = torch.cat([own, torch.zeros_like(own)])
    at_teacher = box_teacher_loss(teacher, feats, coords, labels, student)
    assert at_teacher < box_teacher_loss(teacher, feats, coords, labels, student + 1.0)
    assert at_teacher < box_teacher_loss(teacher, feats, coords, labels, student - 1.0)
    assert box_teacher_loss(teacher, feats[1:], coords[1:], labels[1:], student[1:]) == 0
    with pytest.raises(ValueError, match="lite_medsam"):
        train(TrainConfig(config="tiny", epochs=1, box_teacher_weight=1.0, out_dir=str(tmp_path / "x"),
                          progress_bar=False, tensorboard=False), items[:1])
