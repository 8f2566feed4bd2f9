"""Training: loss goes down, checkpoints, resume, stop, in-process API, CLI, and 2-process DDP (torchrun)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import samus
from samus.checkpoint import read_checkpoint
from samus.data import ALL_CLASSES, folder_items
from samus.train import TrainConfig, split_items, train, train_on_pairs
from toy_data import two_class_folder

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "busi"


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(config="tiny", mode="full", lr=1e-3, batch_size=2, epochs=1, out_dir=str(tmp_path / "run"),
                tensorboard=False, progress_bar=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _items(n=4):
    return folder_items(SAMPLES)[:n]


def _state_hash(state_dict) -> str:
    h = hashlib.sha256()
    for k, v in sorted(state_dict.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def test_overfitting_two_images_lowers_the_loss(tmp_path):
    calls = []
    cfg = _cfg(tmp_path, batch_size=2, epochs=4, lr=2e-3, augment=False, tensorboard=True)
    result = train(cfg, _items(2), _items(1), progress=lambda *a: calls.append(a))
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 4 and result["epochs_done"] == 4 and not result["stopped"]
    assert losses[-1] < losses[0] - 0.01, losses
    assert all(0 <= h["val_dice"] <= 1 and h["images_per_s"] > 0 for h in result["history"])
    # checkpoints in the project's format, loadable without knowing the config
    best, last = Path(result["best"]), Path(result["last"])
    assert best.is_file() and last.is_file() and not list(best.parent.glob(".tmp-*"))
    ck = read_checkpoint(last)
    assert ck.kind == "samus" and ck.config_name == "tiny" and ck.extra["epoch"] == 4
    assert ck.provenance["train_samples"] == 2 and ck.provenance["mode"] == "full"
    model = samus.build_samus(config=None, checkpoint=last)
    assert _state_hash(model.state_dict()) == _state_hash(result["model"].state_dict())
    best_ck = read_checkpoint(best)
    assert best_ck.extra["best_dice"] == result["best_dice"] == max(h["val_dice"] for h in result["history"])
    assert "optimizer" not in best_ck.extra and "optimizer" in ck.extra
    assert json.loads((best.parent / "history.json").read_text()) == result["history"]
    assert list((best.parent / "tensorboard").glob("events.out.tfevents.*"))
    # progress(epoch, step, loss, metrics): every step, val Dice at the end of each epoch
    assert [c[:2] for c in calls] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert calls[-1][3]["val_dice"] == result["history"][-1]["val_dice"] and calls[-1][1] == calls[-1][3]["steps"]


def test_resume_continues_where_it_stopped(tmp_path):
    items = _items(4)
    straight = train(_cfg(tmp_path / "a", epochs=3, max_steps_per_epoch=1), items)
    first = train(_cfg(tmp_path / "b", epochs=2, max_steps_per_epoch=1), items)
    resumed = train(_cfg(tmp_path / "b", epochs=3, max_steps_per_epoch=1, resume=first["last"]), items)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == first["history"]
    # same seeds, clicks and augmentation per epoch + restored Adam state: the same weights as one run
    # (up to float noise, which Adam magnifies for parameters whose gradients are ~0)
    for (k, a), b in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-5, msg=k)
    assert resumed["history"][2]["train_loss"] == pytest.approx(straight["history"][2]["train_loss"], rel=1e-4)
    with pytest.raises(ValueError, match="mode 'full', not 'adapter'"):
        train(_cfg(tmp_path / "c", mode="adapter", resume=first["last"]), items)


def test_should_stop_writes_a_resumable_checkpoint(tmp_path):
    polls = []

    def stop():
        polls.append(1)
        return len(polls) >= 2

    result = train(_cfg(tmp_path, epochs=3), _items(4), should_stop=stop)
    assert result["stopped"] and result["epochs_done"] == 0 and len(polls) == 2
    assert result["best"] is None
    assert read_checkpoint(result["last"]).extra["epoch"] == 0


def test_adapter_mode_trains_only_the_official_parameters_in_bf16(tmp_path):
    torch.manual_seed(0)
    start = samus.build_samus("tiny")
    # an official-style flat state dict (DataParallel "module." prefix): the config must be named
    ckpt = tmp_path / "official.pth"
    torch.save({f"module.{k}": v for k, v in start.state_dict().items()}, ckpt)
    result = train(_cfg(tmp_path, checkpoint=str(ckpt), mode="adapter", bf16=True, max_steps_per_epoch=1), _items(2))
    assert read_checkpoint(result["last"]).provenance["base_checkpoint"] == str(ckpt)
    trained = dict(result["model"].named_parameters())
    changed = {n for n, p in start.named_parameters() if not torch.equal(p, trained[n].detach())}
    assert changed and all(n.startswith("image_encoder.") for n in changed)
    assert any("cnn_embed" in n for n in changed) and any("Adapter" in n for n in changed)
    assert not any(n.startswith(("mask_decoder.", "prompt_encoder.")) or "patch_embed" in n for n in changed)
    assert np.isfinite(result["history"][0]["train_loss"])


def test_heads_mode_trains_the_prompt_encoder_and_mask_decoder_only(tmp_path):
    torch.manual_seed(0)
    start = samus.build_samus("tiny")
    ckpt = tmp_path / "start.pt"
    samus.checkpoint.save_checkpoint(ckpt, start, {"source": "test"})
    result = train(_cfg(tmp_path, checkpoint=str(ckpt), mode="heads", max_steps_per_epoch=2, box_prob=0.5), _items(2))
    trained = dict(result["model"].named_parameters())
    changed = {n for n, p in start.named_parameters() if not torch.equal(p, trained[n].detach())}
    assert any(n.startswith("mask_decoder.") for n in changed)
    assert changed and all(n.startswith(("mask_decoder.", "prompt_encoder.")) for n in changed)
    with pytest.raises(ValueError, match="adapter, full, heads, box"):
        train(_cfg(tmp_path, mode="decoder"), _items(1))


@pytest.mark.parametrize("box_decoder", [False, True])
def test_box_mode_teaches_boxes_and_leaves_click_answers_bit_identical(tmp_path, box_decoder):
    torch.manual_seed(0)
    start = samus.build_samus("tiny")
    ckpt = tmp_path / "start.pt"
    samus.checkpoint.save_checkpoint(ckpt, start, {"source": "test"})
    result = train(_cfg(tmp_path, checkpoint=str(ckpt), mode="box", lr=1e-2, max_steps_per_epoch=2, box_prob=1.0,
                        max_rounds=1, box_decoder=box_decoder), _items(2))
    trained = result["model"].eval()
    params = dict(trained.named_parameters())
    changed = {n for n, p in start.named_parameters() if not torch.equal(p, params[n])}
    assert changed == set(samus.build.BOX_CORNER_PARAMETERS)
    new = {n for n in params if n.startswith("box_decoder.")}
    assert bool(new) == box_decoder and trained.config.box_decoder == box_decoder
    if box_decoder:  # it started as the mask decoder and trained; the file keeps it
        assert any(not torch.equal(params[n], params["mask_decoder." + n[len("box_decoder."):]]) for n in new)
        reloaded = samus.build_samus(None, checkpoint=result["last"]).eval()
        assert reloaded.box_decoder is not None and reloaded.config.box_decoder
    image = np.random.default_rng(0).integers(0, 255, (96, 120), np.uint8)
    before, after = samus.SamusPredictor(start.eval()), samus.SamusPredictor(trained)
    before.set_image(image)
    after.set_image(image)
    clicks = dict(point_coords=np.array([[60, 40], [20, 70]]), point_labels=np.array([1, 0]))
    first = before.predict(**clicks)
    assert np.array_equal(first[2], after.predict(**clicks)[2])  # low-res logits
    again = dict(clicks, mask_input=first[2])
    assert np.array_equal(before.predict(**again)[2], after.predict(**again)[2])
    box = np.array([30, 20, 90, 70])
    assert not np.array_equal(before.predict(box=box)[2], after.predict(box=box)[2])
    assert not np.array_equal(before.predict(box=box, **clicks)[2], after.predict(box=box, **clicks)[2])


def test_box_decoder_answers_rows_with_a_box_in_a_mixed_batch():
    from samus.click_simulation import decode_rows

    torch.manual_seed(0)
    model = samus.build_samus("tiny").add_box_decoder().eval()
    with torch.no_grad():
        for p in model.box_decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
        emb = torch.randn(3, 64, 32, 32)
        coords = torch.tensor([[[40.0, 50.0], [0, 0]], [[10.0, 20.0], [200.0, 220.0]], [[90.0, 90.0], [0, 0]]])
        labels = torch.tensor([[1, -1], [2, 3], [1, 0]])
        mixed, _ = decode_rows(model, emb, coords, labels)
        for i in range(3):
            alone, _ = decode_rows(model, emb[i:i + 1], coords[i:i + 1], labels[i:i + 1])
            assert torch.allclose(mixed[i:i + 1], alone, atol=1e-5)
        plain = samus.build_samus("tiny").eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("box_decoder.")})
        reference, _ = decode_rows(plain, emb, coords, labels)
    assert torch.allclose(mixed[[0, 2]], reference[[0, 2]], atol=1e-5)  # clicks: the mask decoder
    assert not torch.allclose(mixed[1], reference[1], atol=1e-3)  # the box: the box decoder


def test_train_on_pairs_with_volumes_and_images(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    vol = rng.integers(0, 255, (64, 64, 5)).astype(np.uint8)
    lab = np.zeros((64, 64, 5), np.uint8)
    lab[10:30, 20:40, 1:3] = 1  # frames 1 and 2 labelled
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "v_label.nii.gz")
    pairs = [(str(tmp_path / "v.nii.gz"), str(tmp_path / "v_label.nii.gz"))]
    pairs += [(str(i), str(m)) for i, m in [(it["image"], it["mask"]) for it in _items(2)]]
    result = train_on_pairs(pairs, val_fraction=0.34, out_dir=str(tmp_path / "run"), config="tiny", mode="full",
                            batch_size=2, epochs=1, tensorboard=False, progress_bar=False)
    prov = read_checkpoint(result["last"]).provenance
    assert prov["train_samples"] + prov["val_samples"] == 4  # 2 labelled frames + 2 images
    assert prov["val_samples"] in (1, 2) and result["best"] is not None
    with pytest.raises(ValueError, match="unknown training options"):
        train_on_pairs(pairs, epoch=3)


def test_split_items_keeps_volume_frames_together():
    items = [{"image": f"v{i // 3}.nii", "id": str(i)} for i in range(9)]
    train_items, val_items = split_items(items, 0.34, seed=0)
    assert len(val_items) == 3 and len({it["image"] for it in val_items}) == 1
    assert not {it["image"] for it in val_items} & {it["image"] for it in train_items}


def test_cli_train(tmp_path, capsys):
    from samus.cli import main

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    names = []
    for it in _items(3):
        name = Path(it["image"]).name
        shutil.copy(it["image"], data / "images" / name)
        shutil.copy(it["mask"], data / "masks" / f"{Path(name).stem}_mask.png")
        names.append(name)
    (data / "splits.json").write_text(json.dumps({"train": names[:2], "val": names[2:]}))
    out = tmp_path / "out"
    rc = main(["train", "--data", str(data), "--config", "tiny", "--mode", "full", "--epochs", "1",
               "--batch-size", "2", "--out", str(out), "--no-tensorboard", "--no-progress", "--seed", "3"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_done"] == 1 and Path(summary["best"]) == out / "best.pt"
    assert read_checkpoint(out / "last.pt").provenance["train_samples"] == 2
    rc = main(["train", "--data", str(tmp_path / "missing"), "--config", "tiny", "--out", str(out)])
    assert rc == 2 and "missing: no such folder" in capsys.readouterr().err
    rc = main(["train", "--data", str(data), "--val-split", "test", "--config", "tiny", "--out", str(out)])
    assert rc == 2 and "split 'test' not in" in capsys.readouterr().err


_DDP_SCRIPT = """
import hashlib, json, os, sys
import torch
from samus.data import ALL_CLASSES, folder_items
from samus.train import TrainConfig, train

out, samples = sys.argv[1], sys.argv[2]
items = folder_items(samples)[:4]
cfg = TrainConfig(config="tiny", mode="full", lr=1e-3, batch_size=1, epochs=2, max_steps_per_epoch=2,
                  out_dir=os.path.join(out, "run"), tensorboard=True, progress_bar=False, seed=0)
result = train(cfg, items, items[:2])
h = hashlib.sha256()
for k, v in sorted(result["model"].state_dict().items()):
    h.update(k.encode())
    h.update(v.detach().cpu().float().numpy().tobytes())
with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"hash": h.hexdigest(), "world": torch.distributed.get_world_size() if torch.distributed.is_initialized() else int(os.environ["WORLD_SIZE"]),
               "history": result["history"]}, f)
"""


def test_ddp_two_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         str(tmp_path), str(SAMPLES)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["hash"] == r1["hash"], "ranks diverged: gradients were not averaged"
    # losses and Dice are reduced over ranks (timings are each rank's own)
    assert [(h["train_loss"], h["val_dice"]) for h in r0["history"]] == [(h["train_loss"], h["val_dice"]) for h in r1["history"]]
    assert len(r0["history"]) == 2
    # only rank 0 writes; its checkpoint holds the shared weights, which moved away from the initialisation
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert _state_hash(ck.state_dict) == r0["hash"]
    assert ck.provenance["batch_size"] == 2  # 1 per rank x 2 ranks
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    torch.manual_seed(0)
    assert _state_hash(samus.build_samus("tiny").state_dict()) != r0["hash"]


def test_session_with_rounds_trains_and_lowers_the_loss(tmp_path):
    items = folder_items(two_class_folder(tmp_path / "toy", 3), "train", ALL_CLASSES)
    cfg = TrainConfig(config="tiny", mode="full", lr=3e-3, batch_size=6, epochs=5, out_dir=str(tmp_path / "run"),
                      tensorboard=False, progress_bar=False, seed=0, max_rounds=3,
                      augment=False, samples_per_epoch=12)
    result = train(cfg, items, items, progress=None)
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    curves = result["history"][-1]["val_curves"]
    assert set(curves) == {""} and len(curves[""]) == 3  # one unnamed data set, Dice after 1..3 clicks


def test_frozen_batch_norms_keep_their_statistics_while_training():
    # The accurate model's CNN branch has batch norms: under --mode box or heads it does not train, and its
    # running statistics must not drift either, or the answers to clicks would change.
    from samus.build import train_mode

    model = samus.build_lite_medsam("lite_medsam_samus")
    norms = [m for n, m in model.named_modules()
             if n.startswith("image_encoder.cnn.") and isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    before = [m.running_mean.clone() for m in norms]
    samus.freeze_for_training(model, "box")
    train_mode(model)
    assert model.mask_decoder.training and not any(m.training for m in norms)
    model.image_encoder.cnn.body(torch.rand(2, 1, 256, 256))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    samus.freeze_for_training(model, "full")  # where the branch trains, its statistics do too
    train_mode(model)
    assert all(m.training for m in norms)
