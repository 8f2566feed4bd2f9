"""Click simulation (samus.interactive / samus.prompts), several data sets and per-structure targets."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samus
from samus.data import (ALL_CLASSES, BalancedSampler, SamusDataset, folder_items, label_targets,
                        parse_data_spec)
from samus.interactive import InteractiveSession, click_curve, click_logits, corrective_clicks, embed_points
from samus.prompts import PAD_LABEL, first_prompt, next_click
from samus.train import TrainConfig, train


pytestmark = pytest.mark.usefixtures("one_thread")


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _two_class_folder(root: Path, n: int, name: str = "toy", seed: int = 0) -> Path:
    """images/ + masks/ + splits.json; masks: class 1 = two separate disks, class 2 = one square."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for i in range(n):
        label = np.zeros((96, 128), np.uint8)
        label[_disk(label.shape, 30, 30 + i, 12)] = 1
        label[_disk(label.shape, 70, 100, 10)] = 1
        label[55:80, 40:70] = 2
        label[5, 120] = 1  # a one-pixel speck: not a target
        image = (rng.normal(120, 15, label.shape) - 60 * (label == 1) + 60 * (label == 2)).clip(0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"{name}{i}.png")
        Image.fromarray(label).save(root / "masks" / f"{name}{i}_mask.png")
        names.append(f"{name}{i}.png")
    (root / "splits.json").write_text(json.dumps({"train": names[:-1], "val": names[-1:]}))
    return root


# ---- click simulation ---------------------------------------------------------------------------------
def test_corrective_click_lands_in_the_largest_error_region_with_its_label():
    gt = np.zeros((64, 64), bool)
    gt[10:40, 10:40] = True
    pred = gt.copy()
    pred[10:40, 25:40] = False  # a large miss: positive click inside it
    pred[50:54, 50:54] = True  # a small false alarm
    rng = np.random.default_rng(0)
    for spread in (0.0, 0.5):
        for _ in range(20):
            x, y, label = next_click(pred, gt, rng, spread=spread)
            assert label == 1 and gt[y, x] and not pred[y, x]
            assert 27 <= x <= 37 and 12 <= y <= 37  # away from the region's border
    pred2 = gt.copy()
    pred2[40:60, 5:45] = True  # a false alarm larger than any miss: negative click
    x, y, label = next_click(pred2, gt, rng, spread=0.5)
    assert label == 0 and pred2[y, x] and not gt[y, x]
    # spread 0 is the deterministic deepest pixel, which the crop-based distance computes exactly
    from samus.prompts import interior_distance

    x, y, _ = next_click(pred2, gt)
    region = pred2 & ~gt
    assert interior_distance(region)[y, x] == interior_distance(region).max()


def test_batched_corrective_clicks_and_padding_for_perfect_samples(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    masks = torch.zeros(2, 1, 256, 256)
    masks[0, 0, 50:150, 60:160] = 1
    low = torch.full((2, 1, 128, 128), -10.0)  # predicts nothing: sample 0 misses, sample 1 is perfect
    coords, labels = corrective_clicks(model, low, masks, np.random.default_rng(1), spread=0.5)
    assert coords.shape == (2, 1, 2) and labels.tolist() == [[1], [PAD_LABEL]]
    x, y = coords[0, 0].long().tolist()
    assert masks[0, 0, y, x] == 1 and 70 <= x <= 150 and 60 <= y <= 140


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


def test_embed_points_matches_sams_prompt_encoder(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    pe = model.prompt_encoder
    pts = torch.tensor([[[10.0, 20.0], [100.0, 200.0]]])
    lab = torch.tensor([[1, 0]])
    box = torch.tensor([[5.0, 6.0, 120.0, 130.0]])
    with torch.no_grad():
        # clicks only: SAM pads one "not a point"
        ours = embed_points(pe, torch.cat([pts, torch.zeros(1, 1, 2)], 1), torch.cat([lab, torch.tensor([[-1]])], 1))
        sams, _ = pe(points=(pts, lab), boxes=None, masks=None)
        torch.testing.assert_close(ours, sams)
        # clicks + box: the box corners are rows labelled 2 and 3
        rows = torch.cat([pts, box.view(1, 2, 2)], 1)
        ours = embed_points(pe, rows, torch.tensor([[1, 0, 2, 3]]))
        sams, _ = pe(points=(pts, lab), boxes=box, masks=None)
        torch.testing.assert_close(ours, sams)


def test_session_with_rounds_trains_and_lowers_the_loss(tmp_path):
    items = folder_items(_two_class_folder(tmp_path / "toy", 3), "train", ALL_CLASSES)
    cfg = TrainConfig(config="tiny", mode="full", lr=3e-3, batch_size=6, epochs=5, out_dir=str(tmp_path / "run"),
                      tensorboard=False, progress_bar=False, seed=0, max_rounds=3,
                      augment=False, samples_per_epoch=12)
    result = train(cfg, items, items, progress=None)
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    curves = result["history"][-1]["val_curves"]
    assert set(curves) == {""} and len(curves[""]) == 3  # one unnamed data set, Dice after 1..3 clicks


def test_session_forward_returns_the_rounds_that_carry_a_loss(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint)
    images = torch.rand(2, 1, 256, 256)
    masks = torch.zeros(2, 1, 256, 256)
    masks[:, :, 60:160, 60:160] = 1
    coords = torch.tensor([[[100.0, 100.0], [0.0, 0.0]]] * 2)
    labels = torch.tensor([[1, PAD_LABEL]] * 2)
    last = InteractiveSession(model)(images, coords, labels, masks, 3, np.random.default_rng(0))
    assert len(last) == 1 and last[0][2].shape[1] == 2 + 3  # three corrective clicks appended
    assert last[0][0].requires_grad
    every = InteractiveSession(model, loss_every_round=True)(images, coords, labels, masks, 2, np.random.default_rng(0))
    assert len(every) == 3 and all(o[0].requires_grad for o in every)
    at, target = click_logits(last[0][0], last[0][2], last[0][3])
    assert at.shape == target.shape and set(target.tolist()) <= {0.0, 1.0} and len(at) >= 2


def test_click_curve_of_a_perfect_model_is_flat_at_one(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    masks = torch.zeros(1, 1, 256, 256)
    masks[0, 0, 64:192, 64:192] = 1

    class Oracle(torch.nn.Module):  # a decoder that returns the target: every click scores Dice 1
        def forward(self, **kw):
            return masks[:, :, ::2, ::2] * 20 - 10, torch.ones(1, 1)

    model.mask_decoder = Oracle()
    d = click_curve(model, torch.rand(1, 1, 256, 256), torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]]), masks, 3)
    assert d.shape == (1, 3) and torch.allclose(d, torch.ones(1, 3, dtype=d.dtype))


# ---- targets and several data sets -------------------------------------------------------------------
def test_label_targets_split_classes_and_structures():
    label = np.zeros((96, 128), np.uint8)
    label[_disk(label.shape, 30, 30, 12)] = 1
    label[_disk(label.shape, 70, 100, 10)] = 1
    label[55:80, 40:70] = 2
    label[5, 120] = 1
    whole = label_targets(label, 1)
    assert len(whole) == 1 and whole[0][1].sum() == (label == 1).sum()
    parts = label_targets(label, ALL_CLASSES, components=True, min_fraction=0.001)
    assert [c for c, _ in parts] == [1, 1, 2]  # the speck is dropped
    assert parts[0][1][30, 30] and not parts[0][1][70, 100] and parts[1][1][70, 100]
    assert label_targets(label * 0, ALL_CLASSES, components=True)[0][1].sum() == 0  # empty: one empty target
    binary = (label > 0).astype(np.uint8) * 255  # a 0/255 label is class 1
    assert [c for c, _ in label_targets(binary, ALL_CLASSES)] == [1]


def test_dataset_gives_one_sample_per_structure(tmp_path):
    items = folder_items(_two_class_folder(tmp_path / "toy", 2), "train", ALL_CLASSES)
    ds = SamusDataset(items, train=False, components=True)
    assert len(ds) == 3 and ds.ids == ["toy0:1.1", "toy0:1.2", "toy0:2.1"]
    for i in range(3):
        s = ds[i]
        x, y = s["point_coords"][0].long().tolist()
        assert s["mask"][0, y, x] == 1  # the middle click lies on its own structure
    areas = [ds[i]["mask"].sum().item() for i in range(3)]
    assert areas[0] > areas[1] > 0 and areas[2] > 0
    train_ds = SamusDataset(items, train=True, prompts="interactive", components=True)
    assert train_ds[0]["point_coords"].shape == (8, 2)


def test_several_folders_with_weights_and_balanced_sampling(tmp_path, capsys):
    from samus.cli import main

    a = _two_class_folder(tmp_path / "alpha", 4, "a")
    b = _two_class_folder(tmp_path / "beta", 4, "b", seed=1)
    assert parse_data_spec(f"{a}:3") == (str(a), 3.0) and parse_data_spec(str(a)) == (str(a), 1.0)
    with pytest.raises(ValueError, match="positive"):
        parse_data_spec(f"{a}:-1")
    groups = [0] * 90 + [1] * 10
    sampler = BalancedSampler(groups, [1.0, 1.0], 1000, seed=0)
    drawn = np.array(groups)[list(sampler)]
    assert 0.44 < drawn.mean() < 0.56  # the small data set is drawn as often as the big one
    big = [i for i in sampler if groups[i] == 0]
    assert len(set(big[:90])) == 90  # within a data set, no repeats before every sample was seen
    two = [list(BalancedSampler(groups, [1.0, 3.0], 100, seed=0, rank=r, world=2)) for r in (0, 1)]
    assert len(two[0]) == len(two[1]) == 50 and np.array(groups)[two[0] + two[1]].mean() > 0.6

    out = tmp_path / "run"
    rc = main(["train", "--data", str(a), f"{b}:2", "--config", "tiny", "--mode", "full", "--epochs", "1",
               "--batch-size", "2", "--max-rounds", "1", "--out", str(out), "--no-tensorboard", "--no-progress"])
    assert rc == 0
    history = json.loads((out / "history.json").read_text())
    assert set(history[0]["val_curves"]) == {"alpha", "beta"}
    from samus.checkpoint import read_checkpoint

    prov = read_checkpoint(out / "last.pt").provenance
    assert prov["data_weights"] == {"alpha": 1.0, "beta": 2.0} and prov["train_samples"] == 2 * 3 * 3
    rc = main(["train", "--data", str(a), str(a), "--config", "tiny", "--out", str(out)])
    assert rc == 2 and "named 'alpha'" in capsys.readouterr().err
