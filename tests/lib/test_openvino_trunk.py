"""The accurate model's frozen trunk through OpenVINO: the same masks as PyTorch, converted once (the IR kept
on disk and the compiled model in the process), and clear errors where it does not apply."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import samus
from samus import openvino_trunk
from samus.cli import main as samus_main
from samus.openvino_trunk import served_backend
from repo_paths import SAMPLES
from toy_data import blob_image




@pytest.fixture(scope="module")
def accurate():
    return samus.load_default_model(model="accurate")


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openvino")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAMUS_OPENVINO_CACHE", str(folder))
        yield folder


def _answer(model, image, **kwargs):
    predictor = samus.SamusPredictor(model, **kwargs)
    emb, _ = predictor.embed(image)
    return emb, predictor.predict_embedding(emb, box=[130, 50, 270, 130]), predictor.predict_embedding(
        emb, [[200, 90]], [1])


def test_openvino_gives_pytorchs_embeddings_and_masks(accurate, ov_cache):
    img, gt = blob_image(seed=2)
    ref_emb, ref_box, ref_click = _answer(accurate, img)
    emb, box, click = _answer(accurate, img, backend="openvino")
    torch.testing.assert_close(emb.embedding, ref_emb.embedding, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(emb.foundation.float(), ref_emb.foundation.float(), atol=2e-2, rtol=1e-2)
    for (mask, _, low), (ref_mask, _, ref_low) in ((box, ref_box), (click, ref_click)):
        assert np.abs(low - ref_low).max() < 0.05
        assert (mask != ref_mask).mean() < 1e-3
    _, (mask16, _, _), _ = _answer(accurate, img, backend="openvino", precision="bf16")
    assert 2 * (mask16 & ref_box[0]).sum() / (mask16.sum() + ref_box[0].sum()) > 0.98
    assert 2 * (mask16 & gt).sum() / (mask16.sum() + gt.sum()) > 0.8


def test_the_trunk_is_converted_once_and_kept_on_disk(accurate, ov_cache, monkeypatch):
    monkeypatch.setattr(openvino_trunk, "_compiled", {})
    for f in ov_cache.iterdir():
        f.unlink()
    samus.SamusPredictor(accurate, backend="openvino", precision="bf16")  # converted under bf16 autocast
    files = sorted(p.name for p in ov_cache.iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["bin", "xml"]
    import openvino as ov  # installed with samus (setup.py)

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(ov, "convert_model", no_conversion)
    monkeypatch.setattr(openvino_trunk, "_compiled", {})  # a new process: only the disk cache is left
    emb, _ = samus.SamusPredictor(accurate, backend="openvino").embed(blob_image(seed=2)[0])
    assert emb.embedding.shape == (1, 256, 64, 64)
    # fine-tuned heads (what the app swaps in after training) keep the trunk and so reuse it
    tuned = samus.load_default_model(model="accurate")
    with torch.no_grad():
        tuned.mask_decoder.iou_token.weight.add_(1.0)
    samus.SamusPredictor(tuned, backend="openvino")
    assert sorted(p.name for p in ov_cache.iterdir()) == files


def test_a_damaged_disk_entry_is_converted_again(accurate, ov_cache, monkeypatch):
    samus.SamusPredictor(accurate, backend="openvino")
    xml = next(ov_cache.glob("*.xml"))
    xml.write_text("<not a model")
    monkeypatch.setattr(openvino_trunk, "_compiled", {})
    emb, _ = samus.SamusPredictor(accurate, backend="openvino").embed(blob_image(seed=2)[0])
    assert emb.embedding.shape == (1, 256, 64, 64) and xml.read_text().startswith("<?xml")


def test_backend_errors_name_the_problem(accurate):
    fast = samus.load_default_model(model="fast")
    with pytest.raises(ValueError, match="not available for the samus model"):
        samus.SamusPredictor(fast, backend="openvino")
    with pytest.raises(ValueError, match="backend must be one of torch, openvino"):
        samus.SamusPredictor(accurate, backend="onnx")
    # a server asking for openvino (or auto) runs it where it applies and torch elsewhere
    assert served_backend("openvino", accurate) == "openvino" and served_backend("auto", accurate) == "openvino"
    assert served_backend("openvino", fast) == "torch" and served_backend("torch", accurate) == "torch"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(openvino_trunk, "available", lambda: False)
    try:
        assert served_backend("auto", accurate) == "torch"
        with pytest.raises(RuntimeError, match="pip install openvino"):
            monkeypatch.setitem(__import__("sys").modules, "openvino", None)
            openvino_trunk.openvino_trunk(accurate, "fp32")
    finally:
        monkeypatch.undo()


def test_samus_predict_and_evaluate_take_the_backend(ov_cache, tmp_path, capsys):
    image = str(SAMPLES / "images" / "benign_3.png")
    masks = []
    for backend in ("torch", "openvino"):
        out = tmp_path / f"{backend}.png"
        assert samus_main(["predict", image, "--box", "120,90,330,240", "--backend", backend, "-o", str(out)]) == 0
        masks.append(np.asarray(Image.open(out)) > 0)
    assert masks[0].any() and (masks[0] != masks[1]).mean() < 1e-3
    assert samus_main(["predict", image, "--fg", "200,150", "--model", "fast", "--backend", "openvino",
                       "-o", str(tmp_path / "x.png")]) == 2
    assert "not available for the samus model" in capsys.readouterr().err
    rc = samus_main(["evaluate", "--data", str(SAMPLES), "--split", "all", "--limit", "1", "--protocols", "box",
                     "--backend", "openvino", "--out", str(tmp_path / "eval")])
    assert rc == 0
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["config"]["backend"] == "openvino"


def test_an_interruptible_pass_stops_when_its_event_is_set_and_caches_nothing(accurate, ov_cache):
    import threading

    img, _ = blob_image(seed=4)
    predictor = samus.SamusPredictor(accurate, backend="openvino")
    stop = threading.Event()
    with openvino_trunk.interruptible(stop):  # not set: the pass runs to its end, as without the block
        emb, cached = predictor.embed(img, key="kept")
    assert not cached and "kept" in predictor.cache
    plain, _ = samus.SamusPredictor(accurate, backend="openvino").embed(img)
    assert torch.equal(emb.embedding, plain.embedding)
    stop.set()
    with pytest.raises(openvino_trunk.TrunkInterrupted), openvino_trunk.interruptible(stop):
        predictor.embed(img, key="stopped")
    assert "stopped" not in predictor.cache  # a stopped pass leaves nothing half-done behind
    emb_after, _ = predictor.embed(img, key="after")  # outside the block the event no longer applies
    assert torch.equal(emb_after.embedding, plain.embedding)
