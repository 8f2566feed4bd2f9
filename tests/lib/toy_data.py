"""Toy labelled data for the library tests: disks and squares of two classes in images/ + masks/ folders."""
import json
from pathlib import Path

import numpy as np
from PIL import Image


def disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def blob_image(hw=(180, 320), seed: int = 0):
    """A dark ellipse on speckle (something a box and a click can both name) and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    inside = ((yy - 90) / 40.0) ** 2 + ((xx - 200) / 70.0) ** 2 <= 1
    return np.clip(rng.normal(150, 25, hw) - 110 * inside, 0, 255).astype(np.uint8), inside


def two_class_folder(root: Path, n: int, name: str = "toy", seed: int = 0) -> Path:
    """images/ + masks/ + splits.json; masks: class 1 = two separate disks, class 2 = one square."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for i in range(n):
        label = np.zeros((96, 128), np.uint8)
        label[disk(label.shape, 30, 30 + i, 12)] = 1
        label[disk(label.shape, 70, 100, 10)] = 1
        label[55:80, 40:70] = 2
        label[5, 120] = 1  # a one-pixel speck: not a target
        image = (rng.normal(120, 15, label.shape) - 60 * (label == 1) + 60 * (label == 2)).clip(0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"{name}{i}.png")
        Image.fromarray(label).save(root / "masks" / f"{name}{i}_mask.png")
        names.append(f"{name}{i}.png")
    (root / "splits.json").write_text(json.dumps({"train": names[:-1], "val": names[-1:]}))
    return root
