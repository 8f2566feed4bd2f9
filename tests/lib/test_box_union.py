"""The accurate model answers a box alone with the union of its own answer and LiteMedSAM's (its frozen heads
on the same trunk features), so a box gives at least LiteMedSAM's mask; every other prompt is ours alone."""
import dataclasses

import numpy as np
import pytest
import torch

import samus
from samus.build import build_lite_medsam
from samus.checkpoint import read_checkpoint, save_checkpoint
from samus.modeling.lite_medsam import LITE_MEDSAM_CONFIGS
from toy_data import blob_image

BOX = [130, 50, 270, 130]




@pytest.fixture(scope="module")
def models():
    """(ours with the union, the same weights without it, LiteMedSAM as shipped); ours' heads are perturbed
    so that they differ from LiteMedSAM's."""
    torch.manual_seed(0)
    union = build_lite_medsam("lite_medsam_samus")
    with torch.no_grad():
        for name, p in union.named_parameters():
            if name.startswith(("mask_decoder.", "prompt_encoder.")):
                p.add_(torch.randn_like(p) * 0.05)
    plain = build_lite_medsam(dataclasses.replace(union.config, box_union=False))
    plain.load_state_dict({k: v for k, v in union.state_dict().items() if not k.startswith("box_heads.")})
    return union, plain, build_lite_medsam()


def _answers(model, image, **prompt):
    predictor = samus.SamusPredictor(model)
    predictor.set_image(image)
    return predictor.predict(**prompt)


def test_a_box_alone_is_the_union_with_litemedsams_answer(models):
    union, plain, lite = models
    img, _ = blob_image(seed=1)
    mask_u, score_u, low_u = _answers(union, img, box=BOX)
    mask_o, score_o, low_o = _answers(plain, img, box=BOX)
    mask_l, _, low_l = _answers(lite, img, box=BOX)
    assert not np.allclose(low_o, low_l, atol=1e-3), "the perturbed heads must answer differently"
    # the predictor keeps the trunk features in float16 for LiteMedSAM's heads, as the feature cache does
    np.testing.assert_allclose(low_u, np.maximum(low_o, low_l), atol=0.02)
    assert (mask_u >= mask_o).all() and (mask_u >= mask_l).mean() > 0.999  # contains both answers
    assert score_u == pytest.approx(score_o, abs=1e-5)  # the IoU prediction stays ours


@pytest.mark.parametrize("prompt", ["click", "box_and_click", "box_and_previous_mask"])
def test_every_other_prompt_is_ours_alone(models, prompt):
    union, plain, _ = models
    img, _ = blob_image(seed=1)
    kwargs = {"click": dict(point_coords=[[200, 90]], point_labels=[1]),
              "box_and_click": dict(point_coords=[[200, 90]], point_labels=[1], box=BOX),
              "box_and_previous_mask": dict(box=BOX, mask_input=np.zeros((256, 256), np.float32))}[prompt]
    np.testing.assert_allclose(_answers(union, img, **kwargs)[2], _answers(plain, img, **kwargs)[2], atol=1e-5)


def test_the_embedding_keeps_the_trunk_features_and_counts_them(models):
    union, plain, _ = models
    img, _ = blob_image(seed=1)
    emb_u, _ = samus.SamusPredictor(union).embed(img)
    emb_o, _ = samus.SamusPredictor(plain).embed(img)
    assert emb_o.foundation is None and emb_u.foundation is not None
    assert emb_u.foundation.shape == emb_u.embedding.shape == (1, 256, 64, 64)
    assert emb_u.foundation.dtype == torch.float16  # as in the feature cache: 2 MiB more per frame, not 4
    assert emb_u.nbytes == emb_o.nbytes * 3 // 2
    # cached trunk features (samus evaluate --feature-cache) give the same embedding and the same box answer
    predictor = samus.SamusPredictor(union)
    from_features = predictor.embedding_from_features(emb_u.foundation[0], img)
    torch.testing.assert_close(from_features.foundation, emb_u.foundation)
    np.testing.assert_allclose(predictor.predict_embedding(from_features, box=BOX)[2],
                               predictor.predict_embedding(emb_u, box=BOX)[2], atol=0.02)  # float16 features
    batch = predictor.encode_frames([img, img[::-1]], ["a", "b"])
    assert all(e.foundation is not None and e.foundation.shape == (1, 256, 64, 64) for e in batch)


def test_box_heads_come_from_the_package_and_stay_out_of_our_files(models, tmp_path):
    union, _, lite = models
    assert LITE_MEDSAM_CONFIGS["lite_medsam_samus"].box_union
    assert not any(p.requires_grad for p in union.box_heads.parameters())
    samus.freeze_for_training(union, "full")
    assert not any(p.requires_grad for p in union.box_heads.parameters()), "never trained"
    for k, v in lite.state_dict().items():
        if k.startswith(("prompt_encoder.", "mask_decoder.")):
            assert torch.equal(union.state_dict()["box_heads." + k], v), k
    path = save_checkpoint(tmp_path / "u.pt", union)
    ck = read_checkpoint(path)
    assert ck.config.box_union and not any(k.startswith("box_heads.") for k in ck.state_dict)
    again = samus.build_model(checkpoint=path)
    assert again.keeps_foundation
    for k, v in lite.state_dict().items():
        if k.startswith("mask_decoder."):
            assert torch.equal(again.state_dict()["box_heads." + k], v), k


def test_files_from_before_the_union_load_without_it(models, tmp_path):
    _, plain, _ = models
    path = save_checkpoint(tmp_path / "old.pt", plain)
    obj = torch.load(path, weights_only=False)
    obj["config_dict"].pop("box_union")  # as written before the option existed
    torch.save(obj, path)
    assert not samus.build_model(checkpoint=path).keeps_foundation


def test_the_bundled_accurate_model_answers_boxes_with_the_union():
    model = samus.load_default_model(model="accurate")
    assert model.keeps_foundation
    assert not samus.load_default_model(model="fast").keeps_foundation


def test_with_a_box_decoder_the_union_takes_its_answer_and_clicks_keep_the_mask_decoder(models, tmp_path):
    union, plain, lite = models
    with_box = build_lite_medsam(union.config)
    with_box.load_state_dict(union.state_dict())
    with_box.add_box_decoder()
    with torch.no_grad():
        for p in with_box.box_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    img, _ = blob_image(seed=1)
    click = dict(point_coords=[[200, 90]], point_labels=[1])
    np.testing.assert_array_equal(_answers(with_box, img, **click)[2], _answers(union, img, **click)[2])
    # a box alone: the union of the box decoder's answer and LiteMedSAM's
    alone = build_lite_medsam(dataclasses.replace(union.config, box_union=False, box_decoder=True))
    alone.load_state_dict({k: v for k, v in with_box.state_dict().items() if not k.startswith("box_heads.")})
    low_b = _answers(with_box, img, box=BOX)[2]
    low_own, low_lite = _answers(alone, img, box=BOX)[2], _answers(lite, img, box=BOX)[2]
    assert not np.allclose(low_own, _answers(plain, img, box=BOX)[2], atol=1e-3)  # not the mask decoder's
    np.testing.assert_allclose(low_b, np.maximum(low_own, low_lite), atol=0.02)
    # the file keeps the box decoder; a build without a checkpoint starts it as the mask decoder
    again = samus.build_model(checkpoint=save_checkpoint(tmp_path / "b.pt", with_box))
    assert again.config.box_decoder and torch.equal(again.box_decoder.output_upscaling[0].weight,
                                                    with_box.box_decoder.output_upscaling[0].weight)
    fresh = build_lite_medsam(dataclasses.replace(union.config, box_decoder=True))
    for k, v in fresh.mask_decoder.state_dict().items():
        assert torch.equal(fresh.box_decoder.state_dict()[k], v), k
    # the box decoder is one of the heads: frozen with them under `adapter`, trained under `full` and `box`
    for mode, trains in (("adapter", False), ("full", True), ("box", True)):
        samus.freeze_for_training(with_box, mode)
        assert all(p.requires_grad == trains for p in with_box.box_decoder.parameters()), mode
