"""Training data: image / mask readers for three layouts and a cached torch Dataset.

A *sample item* is a small dict::

    {"image": path, "mask": path, "class_id": 1, "frame": None or k, "id": "name"}

`frame` indexes the LAST axis of a volume (3D or 2D+time, H x W x frames as stored on disk), so one
NIfTI/NRRD file gives one item per frame whose label holds the class. Readers:

- `folder_items`: ``images/`` + ``masks/`` (+ optional ``splits.json``), as the BUSI development data;
- `us30k_items`: the SAMUS authors' ``MainPatient/<split>.txt`` layout;
- `pair_items`: explicit (image, label) pairs, 2D files or volumes (used by the MONAI Label trainer).

`SamusDataset` decodes and resizes every item once (images through `samus.preprocess_image`, the same
function inference uses) and keeps them in memory, so epochs cost only augmentation and the model.
"""
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .augment import augment_pair
from .geometry import StretchToSquare
from .preprocess import preprocess_image, to_unit_grayscale
from .prompts import first_prompt, jittered_box, middle_click, random_clicks, tight_box

IMAGE_SIZE = 256
LOW_RES_SIZE = 128
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VOLUME_EXTS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

Item = Dict[str, object]


# ----------------------------------------------------------------------------------------------- file readers
def file_stem(path) -> str:
    """Name without the (possibly double, e.g. .nii.gz) extension."""
    name = Path(path).name
    for ext in VOLUME_EXTS + IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def is_volume_file(path) -> bool:
    return str(path).lower().endswith(VOLUME_EXTS)


def _require_file(path, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path}: no such file")
    return path


def _png_is_16bit_colour(path: str) -> bool:
    # Pillow cannot keep 16 bits per channel for colour PNGs; SimpleITK can. IHDR: bit depth at byte 24,
    # colour type at byte 25 (2 = RGB, 6 = RGBA).
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def _read_2d(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            elif im.mode == "CMYK":
                im = im.convert("RGB")
            a = np.array(im)
    except Exception as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    if a.dtype == np.int32 and a.size and a.min() >= 0 and a.max() <= 65535:
        a = a.astype(np.uint16)  # older Pillow opens 16-bit grayscale PNGs as mode "I"
    if a.dtype == bool:
        a = a.astype(np.uint8)
    return a


def _read_itk(path: str) -> Tuple[np.ndarray, int]:
    """(array as rows x columns [x frames] [x channels], number of spatial axes).

    A frame is displayed (by Slicer, ITK-SNAP, ...) with voxel index i along its columns and j along its rows,
    so the array is indexed [j, i, k]: each frame has the orientation of the same picture saved as a PNG, and a
    voxel click [i, j, k] is the point (x=i, y=j) of frame k. SimpleITK's numpy order is (k, j, i); singleton
    spatial axes after the second are dropped (x, y, 1, t -> x, y, t)."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(path)
    except RuntimeError as e:
        raise ValueError(f"cannot read {path}: {str(e).strip().splitlines()[-1]}") from e
    a = sitk.GetArrayFromImage(img)
    spatial = img.GetDimension()
    a = a.transpose(tuple(reversed(range(spatial))) + tuple(range(spatial, a.ndim)))
    for axis in range(spatial - 1, 1, -1):
        if spatial > 2 and a.shape[axis] == 1:
            a = np.squeeze(a, axis=axis)
            spatial -= 1
    if spatial > 3:
        raise ValueError(f"{path} has {spatial} non-singleton spatial axes; expected a 2D image, a 3D or 2D+time volume")
    return np.ascontiguousarray(np.swapaxes(a, 0, 1)), spatial


def read_array(path) -> Tuple[np.ndarray, Optional[int]]:
    """(array in its stored dtype, number of frames or None for a 2D image). 2D: H x W [x C];
    volumes: as stored (H x W x frames [x C]), frames along the last spatial axis."""
    path = _require_file(path, "image")
    if is_volume_file(path):
        a, spatial = _read_itk(path)
        return a, (a.shape[2] if spatial == 3 else None)
    if path.lower().endswith(".png") and _png_is_16bit_colour(path):
        import SimpleITK as sitk  # raster files stay row-major (rows x columns x channels), as Pillow gives

        return sitk.GetArrayFromImage(sitk.ReadImage(path)), None
    a = _read_2d(path)
    if a.ndim not in (2, 3):
        raise ValueError(f"{path}: unsupported image shape {a.shape}")
    return a, None


def _take_frame(data: Tuple[np.ndarray, Optional[int]], frame: Optional[int], path: str) -> np.ndarray:
    a, n = data
    if frame is None:
        if n is not None and n > 1:
            raise ValueError(f"{path} is a volume with {n} frames; the item needs a frame index")
        return a if n is None else a[:, :, 0]
    if n is None:
        if frame != 0:
            raise ValueError(f"{path} is a 2D image; frame {frame} does not exist")
        return a
    if not 0 <= frame < n:
        raise ValueError(f"{path} has {n} frames; frame {frame} does not exist")
    return a[:, :, frame]


def load_image(path, frame: Optional[int] = None, cache: Optional[dict] = None) -> np.ndarray:
    """An image (or one frame of a volume) as H x W or H x W x C in its stored dtype (uint8, uint16, float)."""
    return _take_frame(_cached_read(path, cache), frame, os.fspath(path))


ALL_CLASSES = "all"  # class_id meaning "every labelled class, each one a separate target"


def class_map(mask: np.ndarray) -> np.ndarray:
    """H x W [x C] label -> H x W integer class ids (0 = background).

    0/1 and class-id labels keep their values; a binary label saved as 0/255 (or 0/65535) becomes 0/1;
    colour labels use their largest channel.
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.ndim != 2:
        raise ValueError(f"label must be H x W (got shape {m.shape})")
    if m.dtype == bool:
        return m.astype(np.uint8)
    if np.issubdtype(m.dtype, np.floating):
        m = np.rint(m)
    top = m.max() if m.size else 0
    if top in (255, 65535):
        fg = m == top
        if not np.any(m[~fg]):  # only 0 and the top value: a binary label saved as 0/255
            return fg.astype(np.uint8)
    return m


def binarize_mask(mask: np.ndarray, class_id=1) -> np.ndarray:
    """H x W [x C] label -> H x W bool of `class_id` (`ALL_CLASSES`: any labelled class)."""
    m = class_map(mask)
    return m != 0 if class_id == ALL_CLASSES else m == class_id


def label_targets(label: np.ndarray, class_id=1, components: bool = False,
                  min_fraction: float = 0.0) -> List[Tuple[int, np.ndarray]]:
    """The segmentation targets of one label frame as [(class id, H x W bool)].

    One target per class (`class_id`, or every class present with `ALL_CLASSES`); with `components`, one per
    8-connected structure of each class, because a click on one nerve must segment that nerve, not every
    nerve. Structures smaller than `min_fraction` of the image are annotation specks, not targets. A label
    without any target gives one empty target (a "nothing here" sample)."""
    from scipy import ndimage

    m = class_map(label)
    classes = [int(c) for c in np.unique(m) if c != 0] if class_id == ALL_CLASSES else [int(class_id)]
    targets: List[Tuple[int, np.ndarray]] = []
    for c in classes:
        fg = m == c
        if not components:
            if fg.any() or class_id != ALL_CLASSES:
                targets.append((c, fg))
            continue
        regions, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
        areas = np.bincount(regions.ravel(), minlength=n + 1)[1:]
        targets += [(c, regions == i + 1) for i in range(n) if areas[i] >= max(1.0, min_fraction * m.size)]
    if not targets:
        targets.append((classes[0] if classes else 1, np.zeros(m.shape, bool)))
    return targets


def load_mask(path, class_id=1, frame: Optional[int] = None, cache: Optional[dict] = None) -> np.ndarray:
    """A label (or one frame of a label volume) as an H x W bool mask of `class_id`."""
    path = _require_file(path, "label")
    return binarize_mask(_take_frame(_cached_read(path, cache), frame, path), class_id)


def _cached_read(path, cache: Optional[dict]) -> Tuple[np.ndarray, Optional[int]]:
    key = os.path.abspath(os.fspath(path))
    if cache is None:
        return read_array(key)
    if key not in cache:
        if len(cache) >= 4:  # volumes are big: keep only the few being expanded right now
            cache.pop(next(iter(cache)))
        cache[key] = read_array(key)
    return cache[key]


# ----------------------------------------------------------------------------------------------- item lists
def make_item(image, mask, class_id=1, frame: Optional[int] = None, id: Optional[str] = None) -> Item:
    image, mask = os.fspath(image), os.fspath(mask)
    if id is None:
        id = file_stem(image) + (f"#{frame}" if frame is not None else "")
    return {"image": image, "mask": mask, "class_id": _class_id(class_id), "frame": frame, "id": id}


def _class_id(class_id):
    if class_id == ALL_CLASSES:
        return ALL_CLASSES
    try:
        value = int(class_id)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(class_id).strip():
        raise ValueError(f"class id must be a label value >= 1 or {ALL_CLASSES!r}, got {class_id!r}")
    return value


def pair_items(pairs: Iterable[Tuple[object, object]], class_id=1, labelled_only: bool = True) -> List[Item]:
    """(image, label) file pairs -> items. Volumes expand to one item per frame (last axis); with
    `labelled_only`, frames whose label lacks `class_id` are skipped (they are not training samples)."""
    items: List[Item] = []
    for image, label in pairs:
        image = _require_file(image, "image")
        label = _require_file(label, "label")
        if not is_volume_file(image) and not is_volume_file(label):
            items.append(make_item(image, label, class_id))
            continue
        items.extend(volume_items(image, label, class_id, labelled_only))
    return items


def volume_items(image, label, class_id=1, labelled_only: bool = True) -> List[Item]:
    """One item per frame (last axis) of a 3D / 2D+time volume; frames without the class are skipped."""
    image = _require_file(image, "image")
    label = _require_file(label, "label")
    lab, n = read_array(label)
    size = _spatial_size(image)
    if n is None:
        lab, n = lab[:, :, None], 1
    if size[:2] != tuple(lab.shape[:2]) or (size[2:] or (1,))[0] != n:
        raise ValueError(f"image {image} (size {size}) and label {label} (size {tuple(lab.shape[:3])}) differ in size")
    is_volume = len(size) == 3
    items = []
    for k in range(n):
        if labelled_only and not binarize_mask(lab[:, :, k], class_id).any():
            continue
        items.append(make_item(image, label, class_id, frame=k if is_volume else None,
                               id=f"{file_stem(image)}#{k}" if is_volume else None))
    return items


def read_header(path: str):
    """A SimpleITK reader with the file's header read (size, spacing, origin, direction), pixels not loaded.
    Raises ValueError with ITK's reason when the file is not a readable image."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(os.fspath(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise ValueError(str(e).strip().splitlines()[-1]) from None
    return reader


def _spatial_size(path: str) -> Tuple[int, ...]:
    """Size as `read_array` gives it (rows, columns[, frames]), from the header when the file is a volume."""
    if not is_volume_file(path):
        return tuple(read_array(path)[0].shape[:2])
    try:
        reader = read_header(path)
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    size = list(reader.GetSize())  # (i, j, ...): i runs along the columns
    size = [size[1], size[0]] + [s for s in size[2:] if s != 1]
    return tuple(size)


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


# ----------------------------------------------------------------------------------------------- dataset
def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """H x W bool -> size x size uint8 tensor (nearest, as the authors)."""
    return StretchToSquare(size).mask(mask)


def _load_pair(item: Item, cache: Optional[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """(image, label frame) of an item at the original size; errors name the offending files."""
    image = load_image(item["image"], item.get("frame"), cache)
    label = _take_frame(_cached_read(_require_file(item["mask"], "label"), cache), item.get("frame"), item["mask"])
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"image {item['image']} is {image.shape[1]}x{image.shape[0]} but its mask {item['mask']} "
                         f"is {label.shape[1]}x{label.shape[0]}")
    return image, label


def _model_image(item: Item, image: np.ndarray, model=None) -> torch.Tensor:
    try:
        if model is None:
            return preprocess_image(image, IMAGE_SIZE)[0, 0]
        return model.preprocess(to_unit_grayscale(image))[0, 0]
    except ValueError as e:
        raise ValueError(f"image {item['image']}: {e}") from e


def decode_item(item: Item, cache: Optional[dict] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """-> (256 x 256 float32 image in [0, 1], 256 x 256 uint8 mask of the item's class)."""
    image, label = _load_pair(item, cache)
    return _model_image(item, image), resize_mask(binarize_mask(label, item.get("class_id", 1)), IMAGE_SIZE)


def decode_targets(item: Item, cache: Optional[dict] = None, components: bool = False,
                   min_fraction: float = 0.0, model=None, flip: bool = False
                   ) -> Tuple[torch.Tensor, List[Tuple[int, torch.Tensor]]]:
    """-> (256 x 256 float32 image, [(class id, 256 x 256 uint8 mask)] of `label_targets`). Targets found at
    the original size that vanish at 256 x 256 are dropped (at least one target is always kept).

    `model` places image and masks on its own canvas (`model.preprocess`, `model.geometry`; default: SAMUS's
    256 x 256 stretch); `flip` mirrors image and masks left-right at the original size first."""
    image, label = _load_pair(item, cache)
    if flip:
        image, label = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])
    found = label_targets(label, item.get("class_id", 1), components, min_fraction)
    to_canvas = (lambda m: resize_mask(m, IMAGE_SIZE)) if model is None else model.geometry.mask
    targets = [(c, to_canvas(m)) for c, m in found]
    kept = [t for t in targets if t[1].any()] or targets[:1]
    return _model_image(item, image, model), kept


def _image_shape(item: Item) -> Tuple[int, int]:
    """(rows, columns) of an item's image from its header, without decoding the pixels."""
    rows, cols = _spatial_size(os.fspath(item["image"]))[:2]
    return int(rows), int(cols)


def _decode_all(items: Sequence[Item], fn) -> list:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one small resize per call: intra-op threads only add overhead here
    try:
        if all(it.get("frame") is None for it in items) and len(items) > 8:
            # 2D files: decode in threads (Pillow and torch release the GIL).
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                return list(pool.map(lambda it: fn(it, None), items))
        cache: dict = {}  # volume items of one file are adjacent, so each volume is read once
        return [fn(it, cache) for it in items]
    finally:
        torch.set_num_threads(threads)


PROMPT_MODES = ("interactive", "fixed")


class SamusDataset(Dataset):
    """Decoded 256 x 256 samples, cached in memory; one sample per segmentation target.

    Each sample is a dict: `image` 1x256x256 float32 in [0, 1]; `mask` 1x256x256 float32 {0, 1};
    `low_mask` 1x128x128 (nearest); `point_coords` Nx2 float32 (x=col, y=row, 256 space); `point_labels`
    N int64; `box` 4 float32 (x1, y1, x2, y2); `index`; `id`; `dataset` (index into `dataset_names`).

    Targets: by default one per item (its class); with `components`, every class present (items with class
    `ALL_CLASSES`) and every separate structure of a class is its own sample (`label_targets`).

    `train=True`: authors' augmentation (if `augment`) and random prompts drawn from a generator seeded by
    (seed, epoch, index), so runs and resumed runs repeat exactly. Prompts `fixed`: `clicks` random
    positive clicks (+ `neg_clicks` negatives), the authors' rule; `interactive`: the varied first prompt of
    `samus.prompts.first_prompt` as `max_points` rows padded with label -1 (boxes as corner labels 2 / 3).
    `train=False`: no augmentation, the deterministic middle click, tight box.

    `model` (a LiteMedSAM-based model, say) places images and masks on its own canvas and sets the low-res
    size; `features` (its `FeatureCache`) replaces the image by the frozen trunk's cached output
    (`embedding`), and the augmentation is then the choice among cached `views`.
    """

    def __init__(self, items: Sequence[Item], train: bool = True, augment: bool = True, clicks: int = 1,
                 neg_clicks: int = 0, seed: int = 0, prompts: str = "fixed", max_points: int = 8,
                 components: bool = False, min_fraction: float = 0.001, model=None, features=None,
                 views: Sequence[str] = ("orig",), box_prob: float = 0.2):
        if not items:
            raise ValueError("no samples: the item list is empty")
        if clicks < 1 or neg_clicks < 0:
            raise ValueError(f"need clicks >= 1 and neg_clicks >= 0 (got {clicks}, {neg_clicks})")
        if prompts not in PROMPT_MODES:
            raise ValueError(f"unknown prompt mode {prompts!r}; choose one of {PROMPT_MODES}")
        if max_points < 3:
            raise ValueError(f"max_points must be >= 3 (a box and a click), got {max_points}")
        if features is not None and model is None:
            raise ValueError("cached features need the model they belong to")
        self.items = list(items)
        self.train, self.augment = train, augment
        self.clicks, self.neg_clicks = clicks, neg_clicks
        self.prompts, self.max_points = prompts, max_points
        if not 0 <= box_prob <= 0.5:
            raise ValueError(f"box_prob must be in [0, 0.5] (half of the first prompts are single clicks), got {box_prob}")
        self.box_prob = box_prob
        self.seed, self.epoch = seed, 0
        self.low_res_size = LOW_RES_SIZE if model is None else model.low_res_size
        # Cached encoder features replace the image; pixel augmentation would not match them, so the only
        # augmentation left is the choice between cached views (e.g. a left-right flip).
        self.features = features
        self.views = list(views) if features is not None else ["orig"]
        unknown = set(self.views) - {"orig", "hflip"}
        if unknown:
            raise ValueError(f"unknown views {sorted(unknown)}; choose orig or hflip")
        keep_images = features is None or bool(getattr(model.image_encoder, "needs_image", False))
        decoded = _decode_all(self.items, lambda it, cache: decode_targets(it, cache, components, min_fraction, model))
        # float16 halves the memory of the cache; its 11-bit mantissa is finer than 8-bit input.
        self.images = torch.stack([d[0] for d in decoded]).to(torch.float16) if keep_images else None
        self.targets = self._target_maps(decoded)
        # Where the image lies on the canvas (all of it for SAMUS; top-left for padded layouts): a flipped
        # view mirrors that region.
        shapes = [_image_shape(it) for it in self.items] if model is not None else None
        self.content = [model.geometry.content_shape(hw) for hw in shapes] if shapes else None

    def _target_maps(self, decoded) -> torch.Tensor:
        """Per image a map of target numbers (1..T; targets never overlap), and the list of (image, number)."""
        size = decoded[0][0].shape[-1]
        maps = torch.zeros((len(decoded), size, size), dtype=torch.uint8)
        self.samples: List[Tuple[int, int, int]] = []  # (image index, target number, class id)
        names = sorted({str(it.get("dataset", "")) for it in self.items})
        self.dataset_names = names
        self.sample_dataset: List[int] = []
        for i, (_, targets) in enumerate(decoded):
            if len(targets) > 255:
                raise ValueError(f"{self.items[i]['image']}: more than 255 targets in one label")
            for t, (class_id, m) in enumerate(targets, 1):
                maps[i][m.bool()] = t
                self.samples.append((i, t, class_id))
                self.sample_dataset.append(names.index(str(self.items[i].get("dataset", ""))))
        # Sample ids: the item's id, plus ":class.structure" when an item gives several targets.
        several = len(self.samples) != len(self.items)
        counts: Dict[Tuple[int, int], int] = {}
        self.ids = []
        for i, _, class_id in self.samples:
            counts[(i, class_id)] = counts.get((i, class_id), 0) + 1
            base = str(self.items[i]["id"])
            self.ids.append(f"{base}:{class_id}.{counts[(i, class_id)]}" if several else base)
        return maps

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> Dict[str, object]:
        i, t, _ = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        view = self.views[int(rng.integers(len(self.views)))] if self.train and self.augment else "orig"
        mask = (self.targets[i] == t).float()[None]
        image = self.images[i].float()[None] if self.images is not None else None
        if view == "hflip":
            mask, image = self._mirror(i, mask), (self._mirror(i, image) if image is not None else None)
        if self.train and self.augment and self.features is None:
            image, mask = augment_pair(image, mask, rng)
        m = mask[0].numpy() > 0.5
        if not self.train:
            coords, labels = middle_click(m)
            box = tight_box(m)
        elif self.prompts == "interactive":
            coords, labels = first_prompt(m, rng, self.max_points, p_box=self.box_prob)
            box = jittered_box(m, rng)
        else:
            coords, labels = random_clicks(m, rng, self.clicks, self.neg_clicks)
            box = jittered_box(m, rng)
        low = mask if self.low_res_size == mask.shape[-1] else \
            F.interpolate(mask[None], size=(self.low_res_size, self.low_res_size), mode="nearest-exact")[0]
        sample = {
            "mask": mask,
            "low_mask": low,
            "point_coords": torch.as_tensor(coords, dtype=torch.float32),
            "point_labels": torch.as_tensor(labels, dtype=torch.int64),
            "box": torch.as_tensor(box, dtype=torch.float32),
            "index": index,
            "id": self.ids[index],
            "dataset": self.sample_dataset[index],
        }
        if image is not None:
            sample["image"] = image
        if self.features is not None:
            sample["embedding"] = self.features.load(self.items[i], view)
        return sample

    def _mirror(self, i: int, t: torch.Tensor) -> torch.Tensor:
        h, w = self.content[i] if self.content else t.shape[-2:]
        out = t.clone()
        out[..., :h, :w] = t[..., :h, :w].flip(-1)
        return out


# ----------------------------------------------------------------------------------------------- several data sets
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


class BalancedSampler(torch.utils.data.Sampler):
    """Draws `num_samples` indices per epoch: a data set with probability proportional to its weight,
    then the next sample of that data set's shuffled list (so every sample is seen before any repeats).
    Deterministic for (seed, epoch); with several processes each rank takes every world-th index."""

    def __init__(self, groups: Sequence[int], weights: Sequence[float], num_samples: int, seed: int = 0,
                 rank: int = 0, world: int = 1):
        self.groups = np.asarray(groups, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float64)
        if len(self.weights) == 0 or self.groups.size == 0 or self.groups.max() >= len(self.weights):
            raise ValueError("every sample's data set needs a weight")
        present = np.bincount(self.groups, minlength=len(self.weights)) > 0
        if not np.all(self.weights[present] > 0):
            raise ValueError(f"data set weights must be positive, got {list(self.weights)}")
        self.p = np.where(present, self.weights, 0.0) / np.where(present, self.weights, 0.0).sum()
        self.num_samples = int(num_samples)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_samples // self.world)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        members = [rng.permutation(np.nonzero(self.groups == g)[0]) for g in range(len(self.weights))]
        used = [0] * len(members)
        order = []
        for g in rng.choice(len(self.weights), size=len(self) * self.world, p=self.p):
            if used[g] == len(members[g]):
                members[g], used[g] = rng.permutation(members[g]), 0
            order.append(int(members[g][used[g]]))
            used[g] += 1
        return iter(order[self.rank::self.world])
