"""Evaluation: metrics, the k-click rule, report files, and the `samus evaluate` / `samus predict` commands."""
import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import samus
from samus import evaluate as ev
from samus.cli import main as samus_main
from samus.data import folder_items, load_image
from samus.metrics import dice_score, hd95, iou_score, segmentation_metrics, summarize
from repo_paths import ROOT, SAMPLES, load_png


def square(shape=(40, 40), y0=5, x0=5, size=20):
    m = np.zeros(shape, bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return samus.SamusPredictor(samus.build_samus("tiny"))


@pytest.fixture(scope="module")
def items():
    return folder_items(SAMPLES, split=None)[:3]


# ---- metrics ------------------------------------------------------------------------------------------
def test_dice_and_iou_match_hand_counts():
    gt = np.zeros((6, 6), bool)
    gt[1:3, 1:5] = True                # 8 pixels
    pred = np.zeros((6, 6), bool)
    pred[2:4, 2:5] = True              # 6 pixels, 3 of them on gt
    assert dice_score(pred, gt) == pytest.approx(2 * 3 / (8 + 6), abs=1e-6)
    assert iou_score(pred, gt) == pytest.approx(3 / (8 + 6 - 3), abs=1e-6)
    assert dice_score(gt, gt) == pytest.approx(1.0) and iou_score(gt, ~gt) == pytest.approx(0.0)


def test_empty_masks_follow_the_documented_convention():
    empty, full = np.zeros((8, 8), bool), square((8, 8), 2, 2, 3)
    both = segmentation_metrics(empty, empty)
    assert both["dice"] == 1.0 and both["iou"] == 1.0 and math.isnan(both["hd95"])
    missed = segmentation_metrics(empty, full)
    assert missed["dice"] == 0.0 and missed["iou"] == 0.0 and math.isnan(missed["hd95"])
    assert segmentation_metrics(full, empty)["dice"] == 0.0


def test_hd95_of_a_shifted_square_is_the_shift():
    gt = square()
    pred = np.roll(gt, 3, axis=1)      # every vertical edge moves by 3 px; >5% of edge points are 3 px off
    assert hd95(pred, gt) == pytest.approx(3.0)
    assert hd95(np.roll(gt, 7, axis=0), gt) == pytest.approx(7.0)
    outlier = pred.copy()
    outlier[38, 38] = True             # one stray pixel 13+ px away: it moves the max, not the 95th percentile
    assert hd95(outlier, gt) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="differ in shape"):
        hd95(gt, gt[:-1])


def test_summaries_skip_nan_and_count_them():
    s = summarize([1.0, 3.0, float("nan"), None])
    assert s == {"mean": 2.0, "std": 1.0, "n": 2, "n_nan": 2}


# ---- the k-click rule ---------------------------------------------------------------------------------
def test_next_click_goes_to_the_centre_of_the_largest_error_region():
    gt = square((60, 60), 10, 10, 30)
    pred = gt.copy()
    pred[10:40, 25:40] = False         # missed: a 30 x 15 block (450 px)
    pred[50:53, 50:53] = True          # false positive: 9 px
    x, y, label = ev.next_click(pred, gt)
    assert label == 1 and gt[y, x] and not pred[y, x]
    assert 31 <= x <= 33 and 17 <= y <= 32   # farthest from the block's boundary: its middle column

    pred = gt.copy()
    pred[45:58, 5:58] = True           # false positive band (13 x 53) is now the largest error
    pred[20, 20] = False               # 1 missed pixel
    x, y, label = ev.next_click(pred, gt)
    assert label == 0 and pred[y, x] and not gt[y, x]
    assert 50 <= y <= 52
    assert ev.next_click(gt, gt) is None


def test_next_click_is_deterministic_for_a_seed_and_avoids_repeats():
    gt = np.zeros((30, 60), bool)
    gt[10:15, 5:55] = True             # a 5 px strip: the whole middle row is equally far from the boundary
    pred = np.zeros_like(gt)
    clicks = [ev.next_click(pred, gt, ev.item_rng(7, "a")) for _ in range(2)]
    assert clicks[0] == clicks[1] and clicks[0][1] == 12 and clicks[0][2] == 1
    others = {ev.next_click(pred, gt, ev.item_rng(s, "a"))[0] for s in range(10)}
    assert len(others) > 1             # ties really are broken by the seed
    again = ev.next_click(pred, gt, None, previous=[(7, 12, 1)])
    assert again[:2] != (7, 12)
    assert ev.next_click(pred, gt, None)[:2] == (7, 12)  # first in row-major order without a generator


def test_first_click_is_the_authors_middle_click():
    gt = square((20, 20), 4, 6, 5)
    ys, xs = np.nonzero(gt)
    assert ev.first_click(gt) == (xs[len(xs) // 2], ys[len(ys) // 2], 1)
    assert ev.first_click(np.zeros((20, 20), bool))[2] == 0


def test_kclick_places_each_click_in_the_previous_error_with_the_right_label(predictor, items):
    image, gt = ev.load_item(items[0])
    res = ev.evaluate_image(predictor, image, gt, protocols=("1click", "kclick"), k=4, rng=ev.item_rng(0, "x"))
    clicks = res["kclick"]["clicks"]
    assert clicks[0] == res["1click"]["clicks"][0]
    assert len(res["kclick"]["dice_per_click"]) == 4
    assert res["kclick"]["dice_per_click"][0] == pytest.approx(res["1click"]["dice"])
    # Replay the protocol: click i+1 must sit on a pixel prediction i got wrong, labelled by the truth there.
    predictor.set_image(image)
    logits = None
    for i in range(1, len(clicks)):
        pts = np.array([c[:2] for c in clicks[:i]], float)
        pred, _, logits = predictor.predict(pts, np.array([c[2] for c in clicks[:i]]), mask_input=logits)
        x, y, label = clicks[i]
        assert pred[y, x] != gt[y, x] and label == int(gt[y, x])
        assert dice_score(pred, gt) == pytest.approx(res["kclick"]["dice_per_click"][i - 1], abs=1e-6)
    again = ev.evaluate_image(predictor, image, gt, protocols=("kclick",), k=4, rng=ev.item_rng(0, "x"))
    assert again["kclick"]["clicks"] == clicks


# ---- reports ------------------------------------------------------------------------------------------
def test_evaluate_writes_json_csv_and_overlays(predictor, items, tmp_path):
    report = ev.evaluate(predictor, items, k=3, out_dir=tmp_path, n_overlays=1, meta={"split": "all"})
    assert report["n_images"] == 3 and report["split"] == "all"
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["summary"]["kclick"]["curve"][2]["clicks"] == 3
    assert len(on_disk["rows"]) == 15  # 3 images x 5 protocols (1click, kclick, kclick_nomask, box, box_kclick)
    dice = [r["dice"] for r in on_disk["rows"] if r["protocol"] == "1click"]
    assert on_disk["summary"]["1click"]["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert on_disk["summary"]["1click"]["dice"]["std"] == pytest.approx(np.std(dice))
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15 and {r["protocol"] for r in rows} == set(ev.PROTOCOLS)
    assert all(len(r["dice_per_click"].split(";")) == 3 for r in rows if r["protocol"] in ev.CLICK_PROTOCOLS)
    assert all(r["n_clicks"] == "0" for r in rows if r["protocol"] == "box")  # the tight box alone
    for protocol in ev.PROTOCOLS:
        worst, best = report["overlays"][protocol]["worst"], report["overlays"][protocol]["best"]
        assert len(worst) == 1 and len(best) == 1 and worst != best
        row = min((r for r in report["rows"] if r["protocol"] == protocol), key=lambda r: r["dice"])
        assert row["id"] in worst[0]
        overlay = Image.open(worst[0])
        assert overlay.size == (row["width"], row["height"]) and overlay.mode == "RGB"
    # same seed, same everything (apart from timing)
    again = ev.evaluate(predictor, items, k=3)
    assert [r["clicks"] for r in again["rows"]] == [r["clicks"] for r in report["rows"]]


def test_overlay_draws_contour_and_clicks_in_their_colours(tmp_path):
    from samus.overlay import GT_COLOR, NEG_COLOR, POS_COLOR, save_overlay

    path = save_overlay(tmp_path / "o.png", np.full((50, 50), 100, np.uint8), square((50, 50), 20, 20, 5),
                        None, [(10, 10, 1), (40, 40, 0)])
    out = np.asarray(Image.open(path))
    assert tuple(out[10, 10]) == POS_COLOR and tuple(out[40, 40]) == NEG_COLOR
    assert tuple(out[20, 22]) == GT_COLOR and tuple(out[22, 22]) == (100, 100, 100)


def test_empty_ground_truth_is_scored_and_counted(predictor):
    image = load_png(SAMPLES / "images" / "benign_4.png")
    report = ev.evaluate(predictor, [{"id": "empty"}], protocols=("1click",),
                         loader=lambda item: (image, np.zeros(image.shape[:2], bool)))
    row = report["rows"][0]
    assert row["clicks"][0][2] == 0                      # negative click: there is nothing to click on
    assert row["dice"] == (1.0 if row["pred_area"] == 0 else 0.0)
    assert row["hd95"] is None and report["summary"]["1click"]["hd95"]["n_nan"] == 1


def test_eval_size_256_scores_at_the_authors_resolution(predictor, items):
    report = ev.evaluate(predictor, items[:1], protocols=("1click",), eval_size=256)
    row = report["rows"][0]
    assert (row["height"], row["width"]) == (256, 256) and report["config"]["eval_size"] == 256


def test_bad_arguments_are_named(predictor, items):
    with pytest.raises(ValueError, match="unknown protocol"):
        ev.evaluate(predictor, items, protocols=("3click",))
    with pytest.raises(ValueError, match="k must be"):
        ev.evaluate(predictor, items, k=0)
    with pytest.raises(ValueError, match="no images"):
        ev.evaluate(predictor, [])


# ---- command line -------------------------------------------------------------------------------------
def test_evaluate_command(tiny_checkpoint, tmp_path, capsys):
    rc = samus_main(["evaluate", "--data", str(SAMPLES), "--split", "all", "--limit", "2", "--k", "2",
                     "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--overlays", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "1click        Dice" in out and "±" in out and "NoC@85" in out
    assert "first mask contains the click" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["checkpoint"] == str(tiny_checkpoint) and report["n_images"] == 2
    assert len(list((tmp_path / "overlays").rglob("*.png"))) == 10  # worst + best for each of 5 protocols
    assert Image.open(tmp_path / "click_curve.png").size[0] > 100
    rc = samus_main(["evaluate", "--data", str(SAMPLES), "--split", "test", "--checkpoint", str(tiny_checkpoint),
                     "--out", str(tmp_path)])
    assert rc == 2 and "splits.json" in capsys.readouterr().err
    rc = samus_main(["evaluate", "--data", str(SAMPLES), "--split", "all", "--protocols", "2click",
                     "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)])
    assert rc == 2 and "2click" in capsys.readouterr().err


def test_number_of_clicks():
    assert ev.number_of_clicks([0.5, 0.86, 0.95], 0.85) == 2
    assert ev.number_of_clicks([0.5, 0.86, 0.95], 0.90) == 3
    assert ev.number_of_clicks([0.5, 0.6], 0.90) == 3  # never reached: k + 1
    assert ev.number_of_clicks([0.91], 0.90) == 1


def test_evaluate_command_on_several_data_sets(tiny_checkpoint, tmp_path, capsys):
    import shutil

    folders = []
    for name, picks in (("first", ["benign_3", "benign_4"]), ("second", ["malignant_2"])):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "masks").mkdir()
        for stem in picks:
            shutil.copy(SAMPLES / "images" / f"{stem}.png", tmp_path / name / "images")
            shutil.copy(SAMPLES / "masks" / f"{stem}.png", tmp_path / name / "masks")
        folders.append(str(tmp_path / name))
    out = tmp_path / "out"
    rc = samus_main(["evaluate", "--data", *folders, "--split", "all", "--k", "3", "--checkpoint",
                     str(tiny_checkpoint), "--out", str(out), "--overlays", "0"])
    text = capsys.readouterr().out
    assert rc == 0 and "== first:" in text and "== second:" in text
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summary"]) == {"first", "second"}
    for name, n in (("first", 2), ("second", 1)):
        report = json.loads((out / name / "report.json").read_text())
        assert report["n_images"] == n and (out / name / "click_curve.png").is_file()
        for protocol in ("kclick", "kclick_nomask"):
            rows = [r for r in report["rows"] if r["protocol"] == protocol]
            s = report["summary"][protocol]
            assert [c["mean"] for c in s["curve"]] == pytest.approx(
                np.mean([r["dice_per_click"] for r in rows], axis=0).tolist())
            assert all(r["noc85"] == ev.number_of_clicks(r["dice_per_click"], 0.85) for r in rows)
            assert s["noc90"]["mean"] == pytest.approx(np.mean([r["noc90"] for r in rows]))
            assert s["never_falls"] == all(b >= a for a, b in zip([c["mean"] for c in s["curve"]],
                                                                    [c["mean"] for c in s["curve"]][1:]))
        assert report["summary"]["1click"]["first_contains_click"] == pytest.approx(
            np.mean([r["first_contains_click"] for r in report["rows"] if r["protocol"] == "1click"]))
    with open(out / "click_curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(ev.CLICK_PROTOCOLS) * 3  # data sets x click protocols (kclick, kclick_nomask, box_kclick) x clicks
    assert Image.open(out / "click_curve.png").size[0] > 100


def test_multi_class_labels_are_scored_per_structure(predictor, tmp_path):
    label = np.zeros((64, 80), np.uint8)
    label[5:20, 5:20] = 1
    label[40:60, 50:75] = 1
    label[30:45, 10:30] = 2
    image = np.full((64, 80), 90, np.uint8)
    report = ev.evaluate(predictor, [{"id": "two", "class_id": "all"}], protocols=("1click",),
                         loader=lambda item: (image, label), components=True)
    assert [r["id"] for r in report["rows"]] == ["two:1.1", "two:1.2", "two:2.1"]
    assert [r["gt_area"] for r in report["rows"]] == [225, 500, 300] and report["n_targets"] == 3
    whole = ev.evaluate(predictor, [{"id": "two", "class_id": 1}], protocols=("1click",),
                        loader=lambda item: (image, label))
    assert [r["gt_area"] for r in whole["rows"]] == [725]


def test_predict_command_writes_a_png_mask(tiny_checkpoint, tmp_path):
    src = SAMPLES / "images" / "benign_4.png"
    out = tmp_path / "mask.png"
    proc = subprocess.run([sys.executable, "-m", "samus.cli", "predict", str(src), "--fg", "100,120",
                           "--bg", "5,5", "--box", "60,60,200,200", "--checkpoint", str(tiny_checkpoint),
                           "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("score ")
    mask = np.asarray(Image.open(out))
    assert mask.shape == load_png(src).shape[:2] and set(np.unique(mask)) <= {0, 255}


@pytest.fixture()
def volume(tmp_path):
    """A 3-frame NIfTI volume (i x j x k = 64 x 48 x 3) with non-unit spacing and origin."""
    import SimpleITK as sitk

    frames = np.stack([load_png(SAMPLES / "images" / "benign_4.png")[100:164, 150:198]] * 3, axis=-1)
    frames[:, :, 1] = frames[::-1, :, 1]            # make frame 1 differ from the others
    img = sitk.GetImageFromArray(frames.transpose(2, 1, 0).copy())  # SimpleITK's numpy order is k, j, i
    img.SetSpacing((0.3, 0.4, 2.0))
    img.SetOrigin((10.0, -5.0, 3.0))
    path = tmp_path / "vol.nii.gz"
    sitk.WriteImage(img, str(path))
    return path


def test_predict_command_on_a_volume_frame(tiny_checkpoint, volume, tmp_path, capsys):
    import SimpleITK as sitk

    out = tmp_path / "label.nii.gz"
    rc = samus_main(["predict", str(volume), "--frame", "1", "--fg", "30,20", "--bg", "2,2",
                     "--checkpoint", str(tiny_checkpoint), "-o", str(out)])
    assert rc == 0 and "frame 1" in capsys.readouterr().out
    ref, lab = sitk.ReadImage(str(volume)), sitk.ReadImage(str(out))
    assert lab.GetSize() == ref.GetSize() == (64, 48, 3)
    assert lab.GetSpacing() == pytest.approx(ref.GetSpacing()) and lab.GetOrigin() == pytest.approx(ref.GetOrigin())
    arr = sitk.GetArrayFromImage(lab).transpose(2, 1, 0)  # back to i, j, k
    assert arr[:, :, 0].sum() == 0 and arr[:, :, 2].sum() == 0
    # Same frame, same clicks through the Python API: voxel (i, j) is the point x=i (column), y=j (row) of
    # the frame, which load_image returns as rows x columns (j x i), as a viewer shows it.
    p = samus.SamusPredictor(samus.build_samus(None, tiny_checkpoint))
    frame = load_image(volume, 1)
    assert frame.shape == (48, 64)
    p.set_image(frame)
    expected, _, _ = p.predict([[30, 20], [2, 2]], [1, 0])
    assert np.array_equal(arr[:, :, 1].T.astype(bool), expected)


@pytest.mark.parametrize("args, message", [
    (["--fg", "500,10"], "outside the image"),
    (["--fg", "10"], "expected 2 comma-separated numbers"),
    (["--box", "50,50,10,10"], "--box"),
    ([], "at least one click"),
    (["--fg", "10,10", "--frame", "3"], "--frame 3 does not exist"),
])
def test_predict_errors_on_a_png(tiny_checkpoint, tmp_path, capsys, args, message):
    rc = samus_main(["predict", str(SAMPLES / "images" / "benign_4.png"), *args,
                     "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "m.png")])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()


def test_predict_errors_on_files_and_frames(tiny_checkpoint, volume, tmp_path, capsys):
    def run(src, *args, out="m.nii.gz"):
        rc = samus_main(["predict", str(src), *args, "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / out)])
        return rc, capsys.readouterr().err

    rc, err = run(volume, "--fg", "1,1")
    assert rc == 2 and "3 frames" in err and "--frame" in err
    rc, err = run(volume, "--fg", "1,1", "--frame", "3")
    assert rc == 2 and "--frame 3 does not exist" in err
    rc, err = run(volume, "--fg", "1,50", "--frame", "0")
    assert rc == 2 and "outside the image" in err
    rc, err = run(volume, "--fg", "1,1", "--frame", "0", out="m.png")
    assert rc == 2 and "label volume" in err
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"not an image")
    rc, err = run(garbage, "--fg", "1,1", out="m.png")
    assert rc == 2 and "cannot read image" in err and "broken.png" in err
    rc, err = run(tmp_path / "missing.png", "--fg", "1,1", out="m.png")
    assert rc == 2 and "no such file" in err


# ---- the bundled model --------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["accurate", "fast"])
def test_bundled_model_segments_the_sample_busi_images(tmp_path, variant):
    model = samus.load_default_model(model=variant)
    report = ev.evaluate(samus.SamusPredictor(model), folder_items(SAMPLES, split=None), protocols=("1click", "box"),
                         out_dir=tmp_path, n_overlays=1)
    assert report["n_images"] == 7
    # Measured here: the fast model 0.84 from one click (0.69 on the whole BUSI test split); the accurate one
    # 0.845 from one click and 0.850 from a box (0.774 and 0.913 on the test split; MODEL_CARD.md). A broken
    # model or pipeline falls far below these.
    one_click, box = (report["summary"][p]["dice"]["mean"] for p in ("1click", "box"))
    if variant == "fast":
        assert one_click > 0.75
    else:
        assert one_click > 0.8 and box > 0.83, (one_click, box)
