"""Data readers (BUSI-like folder, US30K layout, NIfTI/NRRD volumes), pixel formats and the cached Dataset."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samus.data import (SamusDataset, binarize_mask, decode_item, detect_layout, folder_items, load_image,
                        load_items, load_mask, pair_items, us30k_items, volume_items)
from samus.prompts import middle_click

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "busi"


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def busi_like(tmp_path):
    """The BUSI development layout: `<name>.png` + `masks/<name>_mask.png`, names with spaces, splits.json."""
    root = tmp_path / "busi"
    names = []
    for i, src in enumerate(sorted((SAMPLES / "images").glob("*.png"))[:4]):
        name = f"benign ({i + 1}).png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / "images" / name)
        (root / "masks").mkdir(exist_ok=True)
        shutil.copy(SAMPLES / "masks" / src.name, root / "masks" / f"benign ({i + 1})_mask.png")
        names.append(name)
    (root / "splits.json").write_text(json.dumps({"train": names[:3], "val": names[3:]}))
    return root


# ----------------------------------------------------------------------------------------------- folders
def test_repo_samples_with_same_name_masks():
    items = folder_items(SAMPLES)
    assert len(items) == 7
    for it in items:
        assert Path(it["mask"]).name == Path(it["image"]).name and Path(it["mask"]).parent.name == "masks"
        assert it["class_id"] == 1 and it["frame"] is None and it["id"] == Path(it["image"]).stem
    assert detect_layout(SAMPLES) == "folder"


def test_busi_like_folder_with_splits(busi_like):
    train = folder_items(busi_like, "train")
    val = load_items(busi_like, "val")
    assert [it["id"] for it in train] == ["benign (1)", "benign (2)", "benign (3)"]
    assert Path(train[0]["mask"]).name == "benign (1)_mask.png"
    assert [it["id"] for it in val] == ["benign (4)"]
    with pytest.raises(ValueError, match=r"split 'test' not in .*\['train', 'val'\]"):
        folder_items(busi_like, "test")
    (busi_like / "splits.json").unlink()
    assert len(folder_items(busi_like)) == 4
    with pytest.raises(FileNotFoundError, match="no splits.json"):
        folder_items(busi_like, "train")


def test_missing_files_are_named(busi_like, tmp_path):
    (busi_like / "masks" / "benign (2)_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no mask for image .*benign \(2\)\.png"):
        folder_items(busi_like, "train")
    (busi_like / "images" / "benign (4).png").unlink()
    with pytest.raises(FileNotFoundError, match=r"benign \(4\)\.png .*no such file"):
        folder_items(busi_like, "val")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        folder_items(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_image_mask_size_mismatch_names_both_files(tmp_path):
    img = _png(tmp_path / "images" / "a.png", np.zeros((40, 50), np.uint8))
    msk = _png(tmp_path / "masks" / "a.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(ValueError, match=r"images/a\.png is 50x40 but its mask .*masks/a\.png is 48x40"):
        decode_item(folder_items(tmp_path)[0])
    assert img.exists() and msk.exists()


# ----------------------------------------------------------------------------------------------- US30K
def _us30k(root: Path):
    rng = np.random.default_rng(0)
    (root / "MainPatient").mkdir(parents=True)
    (root / "MainPatient" / "class.json").write_text(json.dumps({"Breast-BUSI": 2, "Echocardiography-CAMUS": 4}))
    lab = np.zeros((64, 48), np.uint8)
    lab[10:20, 5:15] = 1
    for name in ("b1", "b2"):
        _png(root / "Breast-BUSI" / "img" / f"{name}.png", rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))
        _png(root / "Breast-BUSI" / "label" / f"{name}.png", lab)
    camus = np.zeros((64, 48), np.uint8)
    camus[5:30, 5:30], camus[10:20, 10:20], camus[40:50, 20:40] = 2, 1, 3  # MYO ring around LV, LA below
    _png(root / "Echocardiography-CAMUS" / "img" / "c1.png", rng.integers(0, 255, (64, 48), dtype=np.uint8))
    _png(root / "Echocardiography-CAMUS" / "label" / "c1.png", camus)
    (root / "MainPatient" / "train.txt").write_text(
        "1/Breast-BUSI/b1\n2/Echocardiography-CAMUS/c1\n3/Echocardiography-CAMUS/c1\n\n")
    (root / "MainPatient" / "val.txt").write_text("1/Breast-BUSI/b2\n")
    (root / "MainPatient" / "test.txt").write_text("Breast-BUSI/b2\nEchocardiography-CAMUS/c1\n")
    return camus


def test_us30k_layout(tmp_path):
    camus = _us30k(tmp_path)
    assert detect_layout(tmp_path) == "us30k"
    train = load_items(tmp_path, "train")
    assert [(it["class_id"], Path(it["image"]).name) for it in train] == [(1, "b1.png"), (2, "c1.png"), (3, "c1.png")]
    assert Path(train[0]["mask"]).parts[-2:] == ("label", "b1.png")
    assert train[1]["id"] == "Echocardiography-CAMUS/c1@2"
    # each line is one (image, class) sample: the mask is (label == class id)
    np.testing.assert_array_equal(load_mask(train[1]["mask"], 2), camus == 2)
    np.testing.assert_array_equal(load_mask(train[2]["mask"], 3), camus == 3)
    test = us30k_items(tmp_path, "test")
    assert [it["class_id"] for it in test] == [1, 1]  # test lines carry no class: 1
    img, mask = decode_item(test[1])
    assert img.shape == (256, 256) and mask.shape == (256, 256) and mask.dtype == torch.uint8
    assert mask.float().mean().item() == pytest.approx((camus == 1).mean(), abs=0.01)


def test_us30k_errors(tmp_path):
    _us30k(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"MainPatient/train-X\.txt: no such file .*'test', 'train', 'val'"):
        us30k_items(tmp_path, "train-X")
    (tmp_path / "MainPatient" / "bad.txt").write_text("1/Breast-BUSI/b1\nno-slashes\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected"):
        us30k_items(tmp_path, "bad")
    (tmp_path / "MainPatient" / "bad.txt").write_text("4/Echocardiography-CAMUS/c1\n")
    with pytest.raises(ValueError, match=r"class 4 outside 1\.\.3"):
        us30k_items(tmp_path, "bad")
    (tmp_path / "MainPatient" / "bad.txt").write_text("1/Breast-BUSI/b9\n")
    with pytest.raises(FileNotFoundError, match=r"Breast-BUSI/img/b9\.png"):
        us30k_items(tmp_path, "bad")


# ----------------------------------------------------------------------------------------------- volumes
def _volume_arrays():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4000, (40, 30, 6)).astype(np.int16)  # H x W x frames as stored
    label = np.zeros((40, 30, 6), np.uint8)
    label[5:15, 5:10, 1] = 1
    label[20:30, 10:20, 4] = 2
    return image, label


def test_nifti_volume_frames_along_last_axis(tmp_path):
    import nibabel as nib

    image, label = _volume_arrays()
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "vol.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / "vol_label.nii.gz")
    items = volume_items(tmp_path / "vol.nii.gz", tmp_path / "vol_label.nii.gz", class_id=1)
    assert [it["frame"] for it in items] == [1]  # only frames whose label holds the class
    items = pair_items([(tmp_path / "vol.nii.gz", tmp_path / "vol_label.nii.gz")], class_id=2)
    assert [(it["frame"], it["id"]) for it in items] == [(4, "vol#4")]
    # nibabel stores the array as (i, j, k); a frame is shown with i along its columns: rows x columns = j x i.
    np.testing.assert_array_equal(load_image(tmp_path / "vol.nii.gz", 4), image[:, :, 4].T)
    np.testing.assert_array_equal(load_mask(tmp_path / "vol_label.nii.gz", 2, 4), label[:, :, 4].T == 2)
    with pytest.raises(ValueError, match="needs a frame index"):
        load_image(tmp_path / "vol.nii.gz")
    with pytest.raises(ValueError, match="has 6 frames; frame 6"):
        load_image(tmp_path / "vol.nii.gz", 6)
    # 2D+time stored as x, y, 1, t: the singleton axis is dropped, frames are the last axis
    nib.save(nib.Nifti1Image(image[:, :, None, :], np.eye(4)), tmp_path / "cine.nii")
    nib.save(nib.Nifti1Image(label[:, :, None, :], np.eye(4)), tmp_path / "cine_label.nii")
    items = pair_items([(tmp_path / "cine.nii", tmp_path / "cine_label.nii")], class_id=2)
    assert [it["frame"] for it in items] == [4]
    img, mask = decode_item(items[0])
    assert mask.sum() > 0 and 0 <= img.min() and img.max() <= 1
    nib.save(nib.Nifti1Image(label[:, :20], np.eye(4)), tmp_path / "bad_label.nii.gz")
    with pytest.raises(ValueError, match="differ in size"):
        volume_items(tmp_path / "vol.nii.gz", tmp_path / "bad_label.nii.gz")


def test_nrrd_volume_in_a_folder(tmp_path):
    import SimpleITK as sitk

    image, label = _volume_arrays()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    # SimpleITK's numpy order is (k, j, i): the file stores j = rows (H), i = columns (W), k = frames
    sitk.WriteImage(sitk.GetImageFromArray(image.transpose(2, 0, 1).copy()), str(tmp_path / "images" / "cine.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(label.transpose(2, 0, 1).copy()), str(tmp_path / "labels" / "cine.nrrd"))
    items = folder_items(tmp_path)
    assert [it["frame"] for it in items] == [1]
    np.testing.assert_array_equal(load_image(items[0]["image"], 1), image[:, :, 1])
    ds = SamusDataset(items, train=False)
    sample = ds[0]
    x, y = sample["point_coords"][0].tolist()
    assert sample["mask"][0, int(y), int(x)] == 1


# ----------------------------------------------------------------------------------------------- pixel formats
def test_16bit_and_rgb_inputs(tmp_path):
    import SimpleITK as sitk

    g16 = (np.linspace(0, 60000, 48 * 64).reshape(48, 64)).astype(np.uint16)
    _png(tmp_path / "g16.png", g16)
    a = load_image(tmp_path / "g16.png")
    assert a.dtype == np.uint16 and np.array_equal(a, g16)
    rgb16 = np.stack([g16, g16 // 2, g16 // 3], -1)
    sitk.WriteImage(sitk.GetImageFromArray(rgb16, isVector=True), str(tmp_path / "rgb16.png"))
    b = load_image(tmp_path / "rgb16.png")
    assert b.dtype == np.uint16 and np.array_equal(b, rgb16)
    mask = _png(tmp_path / "m.png", (g16 > 30000).astype(np.uint8) * 255)
    img, m = decode_item({"image": str(tmp_path / "g16.png"), "mask": str(mask), "class_id": 1, "frame": None})
    assert img.max().item() == pytest.approx(60000 / 65535, abs=0.01)  # 16-bit: / 65535
    assert 0.4 < m.float().mean().item() < 0.6
    rgb = load_image(SAMPLES / "images" / "benign_6.png")
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    img, _ = decode_item(folder_items(SAMPLES)[1])  # benign_3, grayscale
    img_rgb, _ = decode_item([it for it in folder_items(SAMPLES) if it["id"] == "benign_6"][0])
    assert img.shape == img_rgb.shape == (256, 256) and 0 < img_rgb.mean() < 1


def test_mask_encodings():
    m01 = np.array([[0, 1], [1, 0]], np.uint8)
    np.testing.assert_array_equal(binarize_mask(m01), m01 == 1)
    np.testing.assert_array_equal(binarize_mask(m01 * 255), m01 == 1)  # 0/255 counts as class 1
    np.testing.assert_array_equal(binarize_mask(m01.astype(np.uint16) * 65535), m01 == 1)
    assert not binarize_mask(m01 * 255, class_id=2).any()
    ids = np.array([[0, 1, 2], [3, 2, 0]], np.uint8)
    np.testing.assert_array_equal(binarize_mask(ids, 2), ids == 2)
    np.testing.assert_array_equal(binarize_mask(np.stack([m01 * 255] * 3, -1)), m01 == 1)  # RGB label
    np.testing.assert_array_equal(binarize_mask(ids.astype(np.float32) + 0.01, 3), ids == 3)
    with pytest.raises(ValueError, match="H x W"):
        binarize_mask(np.zeros((2, 2, 2, 2)))


# ----------------------------------------------------------------------------------------------- dataset
def test_dataset_samples_train_and_eval():
    items = folder_items(SAMPLES)[:3]
    ds = SamusDataset(items, train=True, clicks=2, neg_clicks=1, seed=5)
    assert ds.images.dtype == torch.float16 and ds.images.shape == (3, 256, 256)
    s = ds[1]
    assert s["image"].shape == (1, 256, 256) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["mask"].shape == (1, 256, 256) and set(s["mask"].unique().tolist()) <= {0.0, 1.0}
    assert s["low_mask"].shape == (1, 128, 128)
    assert s["low_mask"].mean().item() == pytest.approx(s["mask"].mean().item(), abs=0.01)
    assert s["point_labels"].tolist() == [1, 1, 0] and s["point_coords"].shape == (3, 2)
    xy = s["point_coords"].long()
    assert s["mask"][0, xy[:2, 1], xy[:2, 0]].tolist() == [1.0, 1.0]
    assert s["mask"][0, xy[2, 1], xy[2, 0]].item() == 0.0
    assert s["box"].shape == (4,) and s["id"] == items[1]["id"]
    again = ds[1]
    first = [ds[i] for i in range(3)]
    assert torch.equal(again["image"], s["image"]) and torch.equal(again["point_coords"], s["point_coords"])
    ds.set_epoch(1)  # a new epoch draws new clicks and augmentations
    assert any(not torch.equal(ds[i]["point_coords"], ds_i["point_coords"]) for i, ds_i in enumerate(first))

    ev = SamusDataset(items, train=False)
    e = ev[0]
    assert torch.equal(e["image"], ev.images[0].float()[None])  # no augmentation
    xy, labels = middle_click(e["mask"][0].numpy() > 0.5)
    assert e["point_coords"].tolist() == xy.tolist() and e["point_labels"].tolist() == [1]


def test_dataset_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        SamusDataset([])
