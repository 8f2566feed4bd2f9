"""samus.data targets: one target per class or per separate structure, and the dataset's samples of them."""
import numpy as np
import pytest

import samus
from samus.data import ALL_CLASSES, SamusDataset, folder_items, label_targets
from toy_data import disk, two_class_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_label_targets_split_classes_and_structures():
    label = np.zeros((96, 128), np.uint8)
    label[disk(label.shape, 30, 30, 12)] = 1
    label[disk(label.shape, 70, 100, 10)] = 1
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
    items = folder_items(two_class_folder(tmp_path / "toy", 2), "train", ALL_CLASSES)
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
