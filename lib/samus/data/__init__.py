"""Training and evaluation data: layouts of data folders, segmentation targets, the cached Dataset and the
balanced sampler. File reading lives in `samus.io` (re-exported here, where it used to live).

- `folder_items`: ``images/`` + ``masks/`` (+ optional ``splits.json``);
- `us30k_items`: the SAMUS authors' ``MainPatient/<split>.txt`` layout;
- `pair_items`: explicit (image, label) pairs, 2D files or volumes (used by the MONAI Label trainer).
"""
from ..io import IMAGE_EXTS, VOLUME_EXTS, file_stem, is_volume_file, load_image, read_array, read_header
from .dataset import PROMPT_MODES, SamusDataset
from .decode import IMAGE_SIZE, LOW_RES_SIZE, decode_item, decode_targets, resize_mask
from .items import Item, load_pair, make_item, pair_items, volume_items
from .layouts import dataset_name, detect_layout, find_mask, folder_items, load_items, parse_data_spec, us30k_items
from .sampler import BalancedSampler
from .targets import ALL_CLASSES, binarize_mask, class_map, label_targets, load_mask

__all__ = [
    "ALL_CLASSES", "BalancedSampler", "IMAGE_EXTS", "IMAGE_SIZE", "Item", "LOW_RES_SIZE", "PROMPT_MODES",
    "SamusDataset", "VOLUME_EXTS", "binarize_mask", "class_map", "dataset_name", "decode_item", "decode_targets",
    "detect_layout", "file_stem", "find_mask", "folder_items", "is_volume_file", "label_targets", "load_image",
    "load_items", "load_mask", "load_pair", "make_item", "pair_items", "parse_data_spec", "read_array",
    "read_header", "resize_mask", "us30k_items", "volume_items",
]
