"""Equivalence with the authors' SAMUS implementation (tests/lib/golden, see its README)."""
import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import samus
from samus.checkpoint import sam_to_samus_state_dict

GOLDEN = Path(__file__).resolve().parent / "golden"  # the authors' reference outputs (README there)


def rule_value(key: str, shape) -> torch.Tensor:
    """The fixture's deterministic weight rule (golden README, 'Deterministic weight rule')."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    v = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
    if len(shape) == 1 and key.endswith(".weight"):
        return 1.0 + 0.02 * v
    if "gaussian_matrix" in key:
        return v
    return 0.02 * v


def rule_state_dict(keys):
    return {k: rule_value(k, shape) for k, shape in keys}


def sha256_of(sd, keys) -> str:
    h = hashlib.sha256()
    for k, _ in keys:
        h.update(sd[k].detach().float().contiguous().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def golden(name):
    return torch.from_numpy(np.load(GOLDEN / f"{name}.npy"))


def assert_matches(ours, ref, what):
    tol = 1e-4 * ref.abs().max().item()
    diff = (ours.float() - ref).abs().max().item()
    assert diff <= tol, f"{what}: max |diff| {diff:.3g} > tolerance {tol:.3g}"


SAMUS_KEYS = json.loads((GOLDEN / "keys_samus.json").read_text())
SAM_KEYS = json.loads((GOLDEN / "keys_sam_vit_b.json").read_text())
SOURCE = (GOLDEN / "SOURCE.md").read_text()


def checksum(name):
    line = next(l for l in SOURCE.splitlines() if l.startswith(f"- {name}"))
    return line.rsplit(" ", 1)[-1]


@pytest.fixture(scope="module")
def vit_b():
    return samus.build_samus("vit_b")


def test_state_dict_has_the_authors_keys_and_shapes_in_order(vit_b):
    ours = [[k, list(v.shape)] for k, v in vit_b.state_dict().items()]
    assert ours == SAMUS_KEYS


def test_official_freezing_rule_and_parameter_counts(vit_b):
    samus.freeze_for_training(vit_b, "adapter")
    trainable = {n for n, p in vit_b.named_parameters() if p.requires_grad}
    assert trainable == set(json.loads((GOLDEN / "trainable.json").read_text()))
    report = samus.parameter_report(vit_b)
    assert report["total"] == 133_323_824  # 133.32 M, as the paper's model
    assert report["trainable"] == 39_653_120  # 39.65 M under the official rule
    samus.freeze_for_training(vit_b, "full")
    assert samus.parameter_report(vit_b)["trainable"] == report["parameters"]


def run_cases(model, suffix=""):
    image = golden("image")
    points = json.loads((GOLDEN / "points.json").read_text())["cases"]
    with torch.no_grad():
        emb = model.image_encoder(image)
        assert_matches(emb, golden(f"image_embedding{suffix}"), "image embedding")
        for case, p in points.items():
            coords = torch.tensor(p["coords_xy"], dtype=torch.float32)[None]
            labels = torch.tensor(p["labels"], dtype=torch.int32)[None]
            low_res, iou = model(image_embeddings=emb, point_coords=coords, point_labels=labels)
            assert low_res.shape == (1, 1, 128, 128)
            assert_matches(low_res, golden(f"low_res_logits_{case}{suffix}"), f"{case} low-res logits")
            assert_matches(model.upscale(low_res), golden(f"masks_{case}{suffix}"), f"{case} masks")
            assert_matches(iou, golden(f"iou_pred_{case}{suffix}"), f"{case} iou")


def test_case_a_full_samus_state_dict_matches_golden_outputs(vit_b, tmp_path):
    sd = rule_state_dict(SAMUS_KEYS)
    assert sha256_of(sd, SAMUS_KEYS) == checksum("SAMUS, rule")
    # Through the official-checkpoint path: a flat state dict saved the authors' way, DataParallel prefix.
    path = tmp_path / "SAMUS__400.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path, _use_new_zipfile_serialization=False)
    model = samus.build_samus(None, checkpoint=path)  # official files carry no configuration: vit_b
    assert model.config_name == "vit_b"
    run_cases(model)


def test_case_b_sam_checkpoint_conversion_matches_golden_outputs(tmp_path):
    sam_sd = rule_state_dict(SAM_KEYS)
    assert sha256_of(sam_sd, SAM_KEYS) == checksum("SAM ViT-B, rule")
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam_sd, path)
    model = samus.build_samus("vit_b", checkpoint=path)
    sd = model.state_dict()
    # Every SAM key consumed: unchanged, except the 8 global rel-pos tables, resized as the authors do.
    tables = golden("fromsam_global_rel_pos")
    names = [f"image_encoder.blocks.{b}.attn.rel_pos_{a}" for b in (2, 5, 8, 11) for a in ("h", "w")]
    for i, name in enumerate(names):
        assert torch.equal(sd[name], tables[i]), name
    for k, v in sam_sd.items():
        if k not in names:
            assert torch.equal(sd[k], v), k
    # Then fill the new SAMUS-only keys by the rule, as the fixture did.
    new_keys = [(k, s) for k, s in SAMUS_KEYS if k not in sam_sd]
    assert len(new_keys) == 79
    sd.update(rule_state_dict(new_keys))
    assert sha256_of(sd, SAMUS_KEYS) == checksum("SAMUS from SAM")
    model.load_state_dict(sd)
    run_cases(model, "_fromsam")


def test_sam_conversion_rejects_foreign_keys():
    samus_sd = {"a": torch.zeros(3)}
    with pytest.raises(samus.CheckpointError, match="no place"):
        sam_to_samus_state_dict({"b": torch.zeros(3)}, samus_sd)
