"""Interactive prediction with a bounded, thread-safe cache of image embeddings.

The image encoder is the only expensive part; clicks on an already-encoded frame only run the prompt
encoder and the mask decoder. Cache keys are chosen by the caller, e.g. (image id, frame, model version).
"""
import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .correction import check_correction, local_correction
from .modeling.promptable import PromptableModel
from .openvino_trunk import check_backend
from .preprocess import to_unit_grayscale

PRECISIONS = ("fp32", "bf16")


@dataclass
class ImageEmbedding:
    embedding: torch.Tensor  # 1 x C x G x G (G: the model's embedding grid), float32, on the predictor's device
    original_size: Tuple[int, int]  # (H, W) of the image it came from
    # the frozen foundation's own features, for models that answer with them too (`keeps_foundation`); float16
    # as in the feature cache: they only feed LiteMedSAM's box answer, and half the bytes keep the cache larger
    foundation: Optional[torch.Tensor] = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.embedding, self.foundation) if t is not None)


class EmbeddingCache:
    """LRU cache bounded both in entries and in bytes; safe to share between threads."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 512 * 2**20) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("cache bounds must be >= 0")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: "OrderedDict[Hashable, ImageEmbedding]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Optional[ImageEmbedding]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: Hashable, item: ImageEmbedding) -> None:
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key).nbytes
            if self.max_entries == 0 or item.nbytes > self.max_bytes:
                return
            self._items[key] = item
            self._bytes += item.nbytes
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def discard(self, predicate) -> int:
        """Drop entries whose key satisfies `predicate` (e.g. all frames of one image)."""
        with self._lock:
            doomed = [k for k in self._items if predicate(k)]
            for k in doomed:
                self._bytes -= self._items.pop(k).nbytes
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items


class SamusPredictor:
    """Point/box-prompted segmentation of single images or frames in original pixel coordinates.

    `set_image` + `predict` follow SAM's predictor. For several users at once, use the stateless pair
    `embed` + `predict_embedding`, which share only the (thread-safe) cache.
    """

    def __init__(self, model: PromptableModel, device="cpu", precision: str = "fp32", cache_size: int = 64,
                 cache_bytes: int = 512 * 2**20, backend: str = "torch") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.backend = model.check_backend(check_backend(backend))
        if backend == "openvino" and torch.device(device).type != "cpu":
            raise ValueError(f"backend 'openvino' runs on the CPU, not on {device}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.cache = EmbeddingCache(cache_size, cache_bytes)
        self._current: Optional[ImageEmbedding] = None
        self.refresh()

    def refresh(self) -> None:
        """Re-derive what the predictor precomputes from the weights; call after changing them in place."""
        self.cache.clear()
        with self._autocast():
            self._encoder = self.model.inference_encoder(torch.bfloat16 if self.precision == "bf16" else torch.float32,
                                                         self.backend)

    # ---- encoding -------------------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _encode(self, batch: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """-> (float32 embeddings, the foundation's features in float16 or None)."""
        batch = batch.to(self.device)
        with self._autocast():
            out = self._encoder(batch)
        emb, foundation = out if isinstance(out, tuple) else (out, None)
        return emb.float(), None if foundation is None else foundation.half()

    def embed(self, image, key: Optional[Hashable] = None) -> Tuple[ImageEmbedding, bool]:
        """Embedding of `image` (from the cache when `key` was seen before) and whether it was cached."""
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit, True
        gray = to_unit_grayscale(image)
        emb, foundation = self._encode(self.model.preprocess(gray))
        item = ImageEmbedding(emb, gray.shape, foundation)
        if key is not None:
            self.cache.put(key, item)
        return item, False

    def encode_frames(self, frames: Sequence, keys: Sequence[Hashable], batch_size: int = 8) -> List[ImageEmbedding]:
        """Encode many frames in batches, filling the cache; frames already cached are not re-encoded."""
        if len(frames) != len(keys):
            raise ValueError(f"{len(frames)} frames but {len(keys)} keys")
        out: List[Optional[ImageEmbedding]] = [self.cache.get(k) for k in keys]
        todo = [i for i, item in enumerate(out) if item is None]
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            grays = [to_unit_grayscale(frames[i]) for i in idx]
            emb, foundation = self._encode(torch.cat([self.model.preprocess(g) for g in grays]))
            for j, i in enumerate(idx):
                out[i] = ImageEmbedding(emb[j:j + 1].clone(), grays[j].shape,
                                        None if foundation is None else foundation[j:j + 1].clone())
                self.cache.put(keys[i], out[i])
        return out  # type: ignore[return-value]

    def set_image(self, image, key: Optional[Hashable] = None) -> bool:
        self._current, cached = self.embed(image, key)
        return cached

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        self._current = embedding

    @torch.inference_mode()
    def embedding_from_features(self, features: torch.Tensor, image) -> ImageEmbedding:
        """The embedding of `image` from its frozen trunk's cached output (C x G x G), without the trunk."""
        gray = to_unit_grayscale(image)
        encoder = self.model.image_encoder
        batch = self.model.preprocess(gray).to(self.device) if getattr(encoder, "needs_image", False) else None
        features = features.float()[None].to(self.device)
        emb = encoder.adapt(features, batch)
        return ImageEmbedding(emb.float(), gray.shape, features.half() if self.model.keeps_foundation else None)

    # ---- prompting ------------------------------------------------------------------------------------
    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, correction: str = "local",
                new_click: int = -1):
        """Clicks (x=column, y=row, original pixels) with labels 1/0, optional box and previous low-res logits.

        With `mask_input`, click `new_click` (default: the last) is the corrective click: `correction="local"`
        keeps the change it makes only where that change touches it (`samus.correction`), "global" takes the
        decoder's whole new mask. Returns (boolean mask at the original size, score, float32 low-res logits:
        L x L, L = `model.low_res_size`, 128 for SAMUS and 256 for LiteMedSAM).
        """
        if self._current is None:
            raise RuntimeError("call set_image before predict")
        return self.predict_embedding(self._current, point_coords, point_labels, box, mask_input, correction,
                                      new_click)

    @torch.inference_mode()
    def predict_embedding(self, emb: ImageEmbedding, point_coords=None, point_labels=None, box=None,
                          mask_input=None, correction: str = "local", new_click: int = -1):
        check_correction(correction)
        h, w = emb.original_size
        to_canvas = self.model.geometry.coords
        coords, labels, boxes, masks = None, None, None, None
        if point_coords is not None or point_labels is not None:
            pts, lab = _check_points(point_coords, point_labels, (h, w))
            coords = torch.as_tensor(to_canvas(pts, (h, w)), dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor(lab, dtype=torch.int32, device=self.device)[None]
        if box is not None:
            b = _check_box(box, (h, w))
            boxes = torch.as_tensor(to_canvas(b.reshape(2, 2), (h, w)).reshape(1, 4),
                                    dtype=torch.float32, device=self.device)
        if coords is None and boxes is None:
            raise ValueError("no prompt: give at least one click or a box")
        if mask_input is not None:
            masks = _check_mask_input(mask_input, self.model.low_res_size).to(self.device)
        bf16_decoder = self.precision == "bf16" and self.model.bf16_decoder_pays
        low_res, iou = self.model.decode(emb.embedding, coords, labels, boxes, masks, bf16_decoder=bf16_decoder,
                                         foundation=emb.foundation)
        if masks is not None and coords is not None and correction == "local":
            low_res = self._local_correction(masks, low_res, coords, labels, new_click)
        full = self.model.geometry.to_original(low_res, (h, w))
        return (full[0, 0] > 0).cpu().numpy(), float(iou[0, 0]), low_res[0, 0].float().cpu().numpy()

    def _local_correction(self, previous, low_res, coords, labels, new_click) -> torch.Tensor:
        n = coords.shape[1]
        if isinstance(new_click, bool) or not isinstance(new_click, (int, np.integer)) or not -n <= new_click < n:
            raise ValueError(f"new_click must index one of the {n} clicks, got {new_click!r}")
        scale = self.model.low_res_size / self.model.img_size  # canvas pixels -> low-res cells
        xy = (coords[0, new_click].float().cpu().numpy() + 0.5) * scale
        merged = local_correction(previous[0, 0].float().cpu().numpy(), low_res[0, 0].float().cpu().numpy(), xy,
                                  int(labels[0, new_click]))
        return torch.from_numpy(merged)[None, None].to(low_res.device)


def _check_points(point_coords, point_labels, hw):
    h, w = hw
    try:
        pts = np.asarray(point_coords, dtype=np.float64)
        lab = np.asarray(point_labels, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"clicks must be numbers: {e}") from None
    if pts.size == 0:
        raise ValueError("no clicks given")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"point_coords must be N x 2 (x, y), got shape {pts.shape}")
    if lab.shape != (pts.shape[0],):
        raise ValueError(f"point_labels must have one label per click ({pts.shape[0]}), got shape {lab.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("click coordinates contain NaN or infinity")
    if not np.all(np.isin(lab, (0, 1))):
        raise ValueError("point_labels must be 1 (foreground) or 0 (background)")
    outside = (pts[:, 0] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] < 0) | (pts[:, 1] > h - 1)
    if outside.any():
        x, y = pts[np.argmax(outside)]
        raise ValueError(f"click ({x:g}, {y:g}) is outside the {w}x{h} image (x in [0, {w - 1}], y in [0, {h - 1}])")
    return pts, lab.astype(np.int32)


def _check_box(box, hw):
    h, w = hw
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"box must be 4 numbers: {e}") from None
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise ValueError(f"box must be 4 finite numbers x1, y1, x2, y2; got {box!r}")
    x1, y1, x2, y2 = b
    if x1 > x2 or y1 > y2:
        raise ValueError(f"box corners must satisfy x1 <= x2 and y1 <= y2; got {box!r}")
    if x1 < 0 or y1 < 0 or x2 > w - 1 or y2 > h - 1:
        raise ValueError(f"box {list(b)} is outside the {w}x{h} image")
    return b


def _check_mask_input(mask_input, size: int) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask_input, dtype=np.float32))
    if m.shape[-2:] != (size, size) or m.numel() != size * size:
        raise ValueError(f"mask_input must be the {size}x{size} low-res logits of a previous prediction, got {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("mask_input contains NaN or infinity")
    return m.reshape(1, 1, size, size)
