"""Data folder layouts: ``images/`` + ``masks/`` (+ optional ``splits.json``, as the BUSI development data),
the SAMUS authors' US30K ``MainPatient/<split>.txt`` layout, and several data sets given as FOLDER[:WEIGHT]."""
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..io import IMAGE_EXTS, VOLUME_EXTS, file_stem
from .items import Item, make_item, pair_items

_IMAGE_DIRS = ("images", "image", "img", "imagesTr")
_MASK_DIRS = ("masks", "mask", "labels", "label", "labelsTr")


def _find_dir(root: Path, names: Sequence[str], what: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise FileNotFoundError(f"{root}: no {what} folder (looked for {', '.join(names)})")


def find_mask(image: Path, mask_dir: Path) -> Path:
    """The mask of `image` in `mask_dir`: `<stem>_mask.<ext>` (BUSI), the same file name, or `<stem>.<any>`."""
    stem = file_stem(image)
    tried = [mask_dir / f"{stem}_mask{image.name[len(stem):]}", mask_dir / image.name]
    tried += [mask_dir / f"{stem}{sfx}{ext}" for sfx in ("_mask", "", "_label", "_seg")
              for ext in IMAGE_EXTS + VOLUME_EXTS]
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(f"no mask for image {image} in {mask_dir} (tried {tried[0].name}, {tried[1].name}, ...)")


def folder_items(root, split: Optional[str] = None, class_id=1, labelled_only: bool = True) -> List[Item]:
    """Items of an images/ + masks/ folder. With `split`, `root/splits.json` ({split: [file names]}) selects
    the images; without it every image is used. Volumes expand into labelled frames."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root}: no such folder")
    image_dir = _find_dir(root, _IMAGE_DIRS, "image")
    mask_dir = _find_dir(root, _MASK_DIRS, "mask")
    if split is None or split == "all":
        images = sorted(p for p in image_dir.iterdir() if p.name.lower().endswith(IMAGE_EXTS + VOLUME_EXTS))
    else:
        splits_file = root / "splits.json"
        if not splits_file.is_file():
            raise FileNotFoundError(f"{root} has no splits.json, so split {split!r} is undefined "
                                    "(use split=None for all images)")
        splits = json.loads(splits_file.read_text())
        if split not in splits:
            raise ValueError(f"split {split!r} not in {splits_file} (it has {sorted(splits)})")
        images = [image_dir / name for name in splits[split]]
    if not images:
        raise FileNotFoundError(f"no images in {image_dir}")
    pairs = []
    for img in images:
        if not img.is_file():
            raise FileNotFoundError(f"image {img} (listed for split {split!r}): no such file")
        pairs.append((img, find_mask(img, mask_dir)))
    return pair_items(pairs, class_id, labelled_only)


def us30k_items(root, split: str) -> List[Item]:
    """Items of the SAMUS authors' layout: `MainPatient/<split>.txt` lines `<classID>/<Dataset>/<name>`
    (train/val) or `<Dataset>/<name>` (test, class 1); files in `<Dataset>/img/` and `<Dataset>/label/`."""
    root = Path(root)
    txt = root / "MainPatient" / f"{split}.txt"
    if not txt.is_file():
        found = sorted(p.stem for p in (root / "MainPatient").glob("*.txt")) if (root / "MainPatient").is_dir() else []
        raise FileNotFoundError(f"split file {txt}: no such file (splits found: {found})")
    class_json = root / "MainPatient" / "class.json"
    n_classes = json.loads(class_json.read_text()) if class_json.is_file() else {}
    items = []
    for lineno, line in enumerate(txt.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("/")
        if len(parts) == 3:
            cls, dataset, name = int(parts[0]), parts[1], parts[2]
        elif len(parts) == 2:
            cls, (dataset, name) = 1, parts
        else:
            raise ValueError(f"{txt}:{lineno}: expected '<classID>/<Dataset>/<name>' or '<Dataset>/<name>', got {line!r}")
        if dataset in n_classes and not 0 < cls < int(n_classes[dataset]):
            raise ValueError(f"{txt}:{lineno}: class {cls} outside 1..{int(n_classes[dataset]) - 1} of {dataset} (class.json)")
        img = _with_ext(root / dataset / "img", name)
        lab = _with_ext(root / dataset / "label", name)
        items.append(make_item(img, lab, cls, id=f"{dataset}/{name}" + (f"@{cls}" if len(parts) == 3 else "")))
    if not items:
        raise ValueError(f"split file {txt} lists no samples")
    return items


def _with_ext(folder: Path, name: str) -> Path:
    if Path(name).suffix.lower() in IMAGE_EXTS and (folder / name).is_file():
        return folder / name
    for ext in IMAGE_EXTS:
        if (folder / (name + ext)).is_file():
            return folder / (name + ext)
    raise FileNotFoundError(f"{folder / name}.png: no such file")


def detect_layout(root) -> str:
    """'us30k' when `root/MainPatient` exists, else 'folder'."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root}: no such folder")
    return "us30k" if (root / "MainPatient").is_dir() else "folder"


def load_items(root, split: Optional[str], layout: str = "auto", class_id=1) -> List[Item]:
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "us30k":
        return us30k_items(root, split or "train")
    if layout == "folder":
        return folder_items(root, split, class_id)
    raise ValueError(f"unknown data layout {layout!r}; choose auto, folder or us30k")



def parse_data_spec(text: str) -> Tuple[str, float]:
    """'FOLDER' or 'FOLDER:WEIGHT' -> (folder, weight); the weight sets how often training draws from it."""
    path, sep, tail = str(text).rpartition(":")
    if sep and path:
        try:
            weight = float(tail)
        except ValueError:
            return str(text), 1.0
        if not (weight > 0 and np.isfinite(weight)):
            raise ValueError(f"data set weight must be a positive number, got {tail!r} in {text!r}")
        return path, weight
    return str(text), 1.0


def dataset_name(folder) -> str:
    return Path(os.path.abspath(os.fspath(folder))).name or "data"
