"""`SamusDataset`: every item decoded and resized once (images through `samus.preprocess_image`, the same
function inference uses) and kept in memory, so epochs cost only augmentation and the model."""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..augment import augment_pair
from ..prompts import first_prompt, jittered_box, middle_click, random_clicks, tight_box
from .decode import LOW_RES_SIZE, decode_all, decode_targets, image_shape
from .items import Item

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
        if not 0 <= box_prob <= 1:
            raise ValueError(f"box_prob must be in [0, 1], got {box_prob}")
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
        decoded = decode_all(self.items, lambda it, cache: decode_targets(it, cache, components, min_fraction, model))
        # float16 halves the memory of the cache; its 11-bit mantissa is finer than 8-bit input.
        self.images = torch.stack([d[0] for d in decoded]).to(torch.float16) if keep_images else None
        self.targets = self._target_maps(decoded)
        # Where the image lies on the canvas (all of it for SAMUS; top-left for padded layouts): a flipped
        # view mirrors that region.
        shapes = [image_shape(it) for it in self.items] if model is not None else None
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
            coords, labels = first_prompt(m, rng, self.max_points, p_box=self.box_prob,
                                          p_single=min(0.5, 1 - self.box_prob))
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
