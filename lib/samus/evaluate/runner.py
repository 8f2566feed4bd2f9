"""Evaluation of a predictor over a data set: every target of every item through the protocols, the
report's rows and summaries, and the worst and best cases kept for overlays."""
import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..correction import check_correction
from ..data.items import load_pair
from ..data.targets import binarize_mask, label_targets
from ..metrics import summarize
from ..plain import finite_or_none
from .protocols import CLICK_PROTOCOLS, NOC_THRESHOLDS, PROTOCOLS, evaluate_image, item_rng, resize_pair
from .report import REPORT_FORMAT, REPORT_VERSION, write_json, write_overlays, write_report


def item_id(item: dict) -> str:
    if item.get("id"):
        return str(item["id"])
    stem = Path(str(item.get("image", "image"))).stem
    frame = item.get("frame")
    return stem if frame is None else f"{stem}#{frame}"


def load_item(item: dict, cache: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(image, boolean mask of the item's class) of one `samus.data` reader item, at the original size."""
    image, label = load_item_label(item, cache)
    return image, binarize_mask(label, item.get("class_id") or 1)


def load_item_label(item: dict, cache: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(image, label frame as stored) of one `samus.data` reader item, at the original size."""
    return load_pair(item, cache)


class Extremes:
    """Keeps the n lowest and n highest scored cases (with what is needed to draw them)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cases: List[Tuple[float, int, dict]] = []

    def offer(self, value: float, order: int, payload_fn: Callable[[], dict]) -> None:
        if self.n <= 0:
            return
        self.cases.append((value, order, payload_fn()))
        self.cases.sort(key=lambda c: (c[0], c[1]))
        if len(self.cases) > 2 * self.n:  # drop the middle one: it is neither among the worst nor the best
            del self.cases[self.n]

    def _split(self) -> int:
        # With fewer than 2n cases, share them so each case is drawn once and both lists get some.
        return min(self.n, (len(self.cases) + 1) // 2)

    def worst(self) -> List[Tuple[float, int, dict]]:
        return self.cases[: self._split()]

    def best(self) -> List[Tuple[float, int, dict]]:
        return list(reversed(self.cases[self._split():]))[: self.n]




def check_options(protocols: Sequence[str], k: int, eval_size: Optional[int], features, correction: str = "local"
                  ) -> Tuple[str, ...]:
    protocols = tuple(protocols)
    check_correction(correction)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if eval_size is not None and eval_size < 2:
        raise ValueError(f"eval_size must be a size in pixels or None, got {eval_size}")
    if features is not None and eval_size is not None:
        raise ValueError("cached features are of the original images: use them with eval_size None")
    return protocols


def evaluate(predictor, items: Iterable[dict], protocols: Sequence[str] = PROTOCOLS, k: int = 5,
             out_dir=None, eval_size: Optional[int] = None, seed: int = 0, n_overlays: int = 5,
             meta: Optional[dict] = None, loader: Optional[Callable[[dict], Tuple[np.ndarray, np.ndarray]]] = None,
             progress: Optional[Callable[[int, str], None]] = None, components: bool = False,
             min_fraction: float = 0.001, features=None, correction: str = "local") -> dict:
    """Evaluates `predictor` on reader `items`; -> report dict (also written under `out_dir` when given).

    `meta` (e.g. checkpoint, dataset, split) is copied into the report. `loader` maps an item to
    (image, label); the default reads it with `samus.data` (keeping the current volume open across frames).
    The item's `class_id` (a label value or "all") and `components` choose the targets (`label_targets`).
    `features` (a `samus.feature_cache.FeatureCache` of the model's frozen trunk) supplies the image
    encoder's work from disk, encoding and storing what is missing; the masks are the same. `correction`:
    how a corrective click with the previous mask fed back changes it (`samus.correction`).
    """
    if loader is None:
        volumes: dict = {}
        loader = lambda item: load_item_label(item, volumes)  # noqa: E731
    protocols = check_options(protocols, k, eval_size, features, correction)
    rows: List[dict] = []
    extremes = {p: Extremes(n_overlays if out_dir is not None else 0) for p in protocols}
    start = time.perf_counter()
    n_images = n_targets = 0
    call = object()  # cache keys of this call only: the targets of one image share its embedding
    options = dict(protocols=protocols, k=k, eval_size=eval_size, seed=seed, components=components,
                   min_fraction=min_fraction, features=features, correction=correction)
    for order, item in enumerate(items):
        iid, targets = evaluate_item(predictor, item, loader(item), order, (call, order), rows, extremes, **options)
        n_targets += targets
        n_images += 1
        if progress is not None:
            progress(n_images, iid)
    if n_images == 0:
        raise ValueError("no images to evaluate")
    report = build_report(predictor, rows, protocols, k, eval_size, seed, meta, n_images, n_targets, start)
    report["config"]["correction"] = correction
    if out_dir is not None:
        write_report(report, out_dir)
        report["overlays"] = write_overlays(extremes, Path(out_dir) / "overlays")
        write_json(report, Path(out_dir) / "report.json")  # again, now listing the overlays
    return report


def evaluate_item(predictor, item: dict, loaded, order: int, key, rows: List[dict], extremes: Dict[str, Extremes],
                  protocols, k, eval_size, seed, components, min_fraction, features, correction) -> Tuple[str, int]:
    """Every target of one item through the protocols: rows appended, cases offered to `extremes`;
    -> (the last target's id, the number of targets)."""
    image, label = loaded
    targets = label_targets(label, item.get("class_id") or 1, components, min_fraction)
    embedding = None
    if features is not None:
        if features.missing([item]):
            features.fill([item])
        embedding = predictor.embedding_from_features(features.load(item), image)
    per_class: Dict[int, int] = {}
    for class_id, gt in targets:
        per_class[class_id] = per_class.get(class_id, 0) + 1
        iid = item_id(item) + (f":{class_id}.{per_class[class_id]}" if len(targets) > 1 else "")
        img = image
        if eval_size is not None:
            img, gt = resize_pair(image, gt, eval_size)
        # A cache key only for the targets of one image: a model being trained must never be scored
        # with embeddings from its earlier weights.
        results = evaluate_image(predictor, img, gt, protocols, k, item_rng(seed, iid),
                                 key=key if len(targets) > 1 and eval_size is None else None, embedding=embedding,
                                 correction=correction)
        for protocol, res in results.items():
            rows.append(report_row(iid, item, protocol, res, gt.shape, class_id))
            extremes[protocol].offer(res["dice"], order, lambda res=res, img=img, gt=gt, iid=iid: {
                "id": iid, "image": img, "gt": gt, "pred": res["pred"], "clicks": res["clicks"],
                "dice": res["dice"]})
    return iid, len(targets)


def build_report(predictor, rows, protocols, k, eval_size, seed, meta, n_images, n_targets, start) -> dict:
    model_version = getattr(getattr(predictor, "model", None), "config_name", None)
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "config": {"protocols": list(protocols), "k": k, "eval_size": eval_size or "original", "seed": seed,
                   "model_config": model_version, "precision": getattr(predictor, "precision", None),
                   "backend": getattr(predictor, "backend", None),
                   "hd95_units": "pixels of the evaluated mask"},
        **(meta or {}),
        "n_images": n_images,
        "n_targets": n_targets,
        "seconds": round(time.perf_counter() - start, 3),
        "summary": summaries(rows, protocols, k),
        "rows": rows,
    }


def report_row(iid: str, item: dict, protocol: str, res: dict, shape, class_id=None) -> dict:
    return {
        "id": iid, "protocol": protocol, "n_clicks": len(res["clicks"]),
        "dice": res["dice"], "iou": res["iou"], "hd95": finite_or_none(res["hd95"]), "score": res["score"],
        "gt_area": res["gt_area"], "pred_area": res["pred_area"], "height": int(shape[0]), "width": int(shape[1]),
        "clicks": [[int(x), int(y), int(lab)] for x, y, lab in res["clicks"]],
        "dice_per_click": res.get("dice_per_click"), "iou_per_click": res.get("iou_per_click"),
        "noc85": res.get("noc85"), "noc90": res.get("noc90"), "first_contains_click": res["first_contains_click"],
        "image": str(item.get("image", "")), "mask": str(item.get("mask", "")),
        "frame": item.get("frame"), "class_id": class_id if class_id is not None else item.get("class_id"),
    }


def summaries(rows: List[dict], protocols: Sequence[str], k: int) -> dict:
    out = {}
    for p in protocols:
        sel = [r for r in rows if r["protocol"] == p]
        s = {m: summarize(r[m] if r[m] is not None else math.nan for r in sel) for m in ("dice", "iou", "hd95")}
        s["hd95"]["note"] = "images with an empty prediction or ground truth have no HD95 and are skipped (n_nan)"
        held = [r["first_contains_click"] for r in sel if r["first_contains_click"] is not None]
        s["first_contains_click"] = float(np.mean(held)) if held else math.nan
        if p in CLICK_PROTOCOLS:
            s["curve"] = [{"clicks": i + 1, **summarize(r["dice_per_click"][i] for r in sel),
                           "iou": summarize(r["iou_per_click"][i] for r in sel)["mean"]} for i in range(k)]
            means = [c["mean"] for c in s["curve"]]
            s["never_falls"] = all(b >= a for a, b in zip(means, means[1:]))
            for t in NOC_THRESHOLDS:
                s[f"noc{round(t * 100)}"] = summarize(r[f"noc{round(t * 100)}"] for r in sel)
        out[p] = s
    return out

