"""Evaluation of a SAMUS predictor (1-click and k-click protocols) and the `evaluate` / `predict` commands.

Protocols
- ``1click``: the authors' test prompt, one positive click at the "middle" foreground pixel
  (`samus.prompts.middle_click`: element floor(n/2) of the row-major list of foreground pixels).
- ``kclick``: starts from that click; click i+1 goes into the largest connected error region of prediction i
  (missed foreground -> positive click, false foreground -> negative click), at the pixel farthest from the
  region's boundary (Euclidean distance transform, the image border counts as boundary), and prediction i is
  fed back as `mask_input`. Ties are broken by a generator seeded with (seed, image id), so runs repeat.

Metrics are computed at the original image resolution by default (the predictor returns full-size masks);
`eval_size=256` reproduces the authors' setting (image resized bilinearly, mask by nearest neighbour, to
256 x 256 before prompting and scoring).
"""
from __future__ import annotations

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

PROTOCOLS = ("1click", "kclick")
REPORT_FORMAT = "samus-eval-report"
REPORT_VERSION = 1
CSV_FIELDS = ("id", "protocol", "n_clicks", "dice", "iou", "hd95", "score", "gt_area", "pred_area",
              "height", "width", "clicks", "dice_per_click", "image", "mask", "frame", "class_id")


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


def _predict(predictor, clicks, mask_input=None):
    pts = np.array([[c[0], c[1]] for c in clicks], dtype=np.float64)
    labels = np.array([c[2] for c in clicks], dtype=np.int32)
    return predictor.predict(pts, labels, mask_input=mask_input)


def evaluate_image(predictor, image: np.ndarray, gt: np.ndarray, protocols: Sequence[str] = PROTOCOLS,
                   k: int = 5, rng: Optional[np.random.Generator] = None, key=None) -> Dict[str, dict]:
    """Runs the protocols on one image; -> {protocol: {clicks, pred, score, dice_per_click, **metrics}}."""
    gt = np.asarray(gt, dtype=bool)
    predictor.set_image(image, key=key)
    click = first_click(gt)
    pred, score, logits = _predict(predictor, [click])
    results = {}
    if "1click" in protocols:
        results["1click"] = {"clicks": [click], "pred": pred, "score": score, **segmentation_metrics(pred, gt)}
    if "kclick" in protocols:
        clicks, curve = [click], [dice_score(pred, gt)]
        while len(curve) < k:
            nxt = next_click(pred, gt, rng, previous=clicks)
            if nxt is None:  # perfect: more clicks would not change anything
                curve.append(curve[-1])
                continue
            clicks.append(nxt)
            pred, score, logits = _predict(predictor, clicks, mask_input=logits)
            curve.append(dice_score(pred, gt))
        results["kclick"] = {"clicks": clicks, "pred": pred, "score": score, "dice_per_click": curve,
                             **segmentation_metrics(pred, gt)}
    return results


# ---- whole data set -----------------------------------------------------------------------------------
def item_id(item: dict) -> str:
    if item.get("id"):
        return str(item["id"])
    stem = Path(str(item.get("image", "image"))).stem
    frame = item.get("frame")
    return stem if frame is None else f"{stem}#{frame}"


def load_item(item: dict, cache: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(image, boolean mask of the item's class) of one `samus.data` reader item, at the original size."""
    from .data import load_image, load_mask

    frame = item.get("frame")
    image = load_image(item["image"], frame, cache)
    gt = load_mask(item["mask"], int(item.get("class_id") or 1), frame, cache)
    if image.shape[:2] != gt.shape:
        raise ValueError(f"image {item['image']} is {image.shape[1]}x{image.shape[0]} but its mask "
                         f"{item['mask']} is {gt.shape[1]}x{gt.shape[0]}")
    return image, gt


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
             progress: Optional[Callable[[int, str], None]] = None) -> dict:
    """Evaluates `predictor` on reader `items`; -> report dict (also written under `out_dir` when given).

    `meta` (e.g. checkpoint, dataset, split) is copied into the report. `loader` maps an item to
    (image, mask); the default reads it with `samus.data` (keeping the current volume open across frames).
    """
    if loader is None:
        volumes: dict = {}
        loader = lambda item: load_item(item, volumes)  # noqa: E731
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if eval_size is not None and eval_size < 2:
        raise ValueError(f"eval_size must be a size in pixels or None, got {eval_size}")
    rows: List[dict] = []
    extremes = {p: _Extremes(n_overlays if out_dir is not None else 0) for p in protocols}
    model_version = getattr(getattr(predictor, "model", None), "config_name", None)
    start = time.perf_counter()
    n_images = 0
    for order, item in enumerate(items):
        iid = item_id(item)
        image, gt = loader(item)
        if eval_size is not None:
            image, gt = resize_pair(image, gt, eval_size)
        # No cache key: each image is encoded once anyway, and a model being trained must never be
        # scored with embeddings from its earlier weights.
        results = evaluate_image(predictor, image, gt, protocols, k, item_rng(seed, iid))
        n_images += 1
        for protocol, res in results.items():
            rows.append(_row(iid, item, protocol, res, gt.shape))
            extremes[protocol].offer(res["dice"], order, lambda res=res: {
                "id": iid, "image": image, "gt": gt, "pred": res["pred"], "clicks": res["clicks"],
                "dice": res["dice"]})
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
        "seconds": round(time.perf_counter() - start, 3),
        "summary": _summaries(rows, protocols, k),
        "rows": rows,
    }
    if out_dir is not None:
        write_report(report, out_dir)
        report["overlays"] = _write_overlays(extremes, Path(out_dir) / "overlays")
        write_json(report, Path(out_dir) / "report.json")  # again, now listing the overlays
    return report


def _row(iid: str, item: dict, protocol: str, res: dict, shape) -> dict:
    return {
        "id": iid, "protocol": protocol, "n_clicks": len(res["clicks"]),
        "dice": res["dice"], "iou": res["iou"], "hd95": _finite_or_none(res["hd95"]), "score": res["score"],
        "gt_area": res["gt_area"], "pred_area": res["pred_area"], "height": int(shape[0]), "width": int(shape[1]),
        "clicks": [[int(x), int(y), int(lab)] for x, y, lab in res["clicks"]],
        "dice_per_click": res.get("dice_per_click"),
        "image": str(item.get("image", "")), "mask": str(item.get("mask", "")),
        "frame": item.get("frame"), "class_id": item.get("class_id"),
    }


def _summaries(rows: List[dict], protocols: Sequence[str], k: int) -> dict:
    out = {}
    for p in protocols:
        sel = [r for r in rows if r["protocol"] == p]
        s = {m: summarize(r[m] if r[m] is not None else math.nan for r in sel) for m in ("dice", "iou", "hd95")}
        s["hd95"]["note"] = "images with an empty prediction or ground truth have no HD95 and are skipped (n_nan)"
        if p == "kclick":
            s["curve"] = [{"clicks": i + 1, **summarize(r["dice_per_click"][i] for r in sel)} for i in range(k)]
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
    lines = [f"{report['n_images']} images, eval size {report['config']['eval_size']}"]
    for p, s in report["summary"].items():
        hd = s["hd95"]
        lines.append(
            f"{p:7s} Dice {s['dice']['mean']:.4f} ± {s['dice']['std']:.4f}   IoU {s['iou']['mean']:.4f} ± "
            f"{s['iou']['std']:.4f}   HD95 {hd['mean']:.2f} ± {hd['std']:.2f} px"
            + (f" ({hd['n_nan']} without HD95)" if hd["n_nan"] else ""))
        if "curve" in s:
            lines.append("        Dice by clicks: " + "  ".join(f"{c['clicks']}:{c['mean']:.4f}" for c in s["curve"]))
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------------
_USER_ERRORS = (ValueError, FileNotFoundError, KeyError, OSError)


def register(subparsers) -> None:
    """Adds the `evaluate` and `predict` sub-commands to the `samus` command."""
    p = subparsers.add_parser(
        "evaluate", help="Dice / IoU / HD95 of a model with the 1-click and k-click protocols",
        description="Evaluate a SAMUS checkpoint (default: the bundled model) on a data set; writes "
                    "report.json, per_image.csv and overlays of the worst and best cases under --out.")
    p.add_argument("--data", required=True, help="data folder: images/ + masks/ (+ splits.json), or the "
                   "authors' US30K layout (MainPatient/<split>.txt)")
    p.add_argument("--split", default="test", help="split name (splits.json key or MainPatient txt name); "
                   "'all' = every image of an images/ + masks/ folder (default: test)")
    p.add_argument("--layout", default="auto", choices=("auto", "folder", "us30k"))
    p.add_argument("--class-id", type=int, default=1, help="label value to segment (folder layout)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    _model_args(p)
    p.add_argument("--protocols", default="1click,kclick",
                   help="comma-separated subset of 1click,kclick (default: both)")
    p.add_argument("--k", type=int, default=5, help="clicks of the k-click protocol (default: 5)")
    p.add_argument("--eval-size", default="original",
                   help="'original' (default: score at the image's own size) or a size such as 256 "
                        "(the authors' protocol: image and mask resized to 256x256 first)")
    p.add_argument("--seed", type=int, default=0, help="seed for tie-breaks of the k-click rule")
    p.add_argument("--overlays", type=int, default=5, help="PNG overlays of the N worst and N best cases")
    p.add_argument("--out", default="runs/eval", help="output folder (default: runs/eval)")
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
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled model)")
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
    from .build import build_samus
    from .default import DEFAULT_CHECKPOINT, load_default_model

    if args.checkpoint is None:
        return load_default_model(device=args.device), str(DEFAULT_CHECKPOINT)
    return build_samus(config=args.config, checkpoint=args.checkpoint, device=args.device), str(args.checkpoint)


def _make_predictor(args):
    from .predictor import SamusPredictor

    model, ckpt = _load_model(args)
    return SamusPredictor(model, device=args.device, precision=args.precision), ckpt


def run_evaluate(args) -> int:
    from .data import load_items

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
    items = load_items(args.data, args.split, args.layout, args.class_id)
    items = items[: args.limit] if args.limit else items
    predictor, ckpt = _make_predictor(args)
    meta = {"checkpoint": ckpt, "checkpoint_sha256": _sha256(ckpt),
            "dataset": str(Path(args.data).resolve()), "split": args.split,
            "layout": args.layout, "class_id": args.class_id, "device": args.device}

    def progress(i, iid):
        if i % 10 == 0 or i == len(items):
            print(f"  {i}/{len(items)} {iid}", file=sys.stderr, flush=True)

    report = evaluate(predictor, items, protocols, args.k, args.out, eval_size, args.seed, args.overlays,
                      meta, progress=progress)
    print(format_summary(report))
    print(f"report: {Path(args.out) / 'report.json'}  per-image: {Path(args.out) / 'per_image.csv'}")
    return 0


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
