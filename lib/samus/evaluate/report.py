"""Evaluation output: report.json, per_image.csv, overlays of the worst and best cases, the click-curve
table and the printed summaries."""
import csv
import math
import re
from pathlib import Path
from typing import Dict, List, Tuple

from ..atomic import write_json as write_json_atomic
from ..overlay import save_overlay
from ..plain import to_plain
from .protocols import CLICK_PROTOCOLS

REPORT_FORMAT = "samus-eval-report"
REPORT_VERSION = 2
CSV_FIELDS = ("id", "protocol", "n_clicks", "dice", "iou", "hd95", "score", "gt_area", "pred_area",
              "height", "width", "clicks", "dice_per_click", "iou_per_click", "noc85", "noc90",
              "first_contains_click", "image", "mask", "frame", "class_id")



def write_json(report: dict, path: Path) -> None:
    """`report` as JSON (numpy values as numbers, NaN as null), replaced atomically."""
    write_json_atomic(path, to_plain(report, for_json=True), indent=1, allow_nan=False)


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


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "image"


def write_overlays(extremes, folder: Path) -> Dict[str, Dict[str, List[str]]]:
    listing: Dict[str, Dict[str, List[str]]] = {}
    for protocol, ex in extremes.items():
        listing[protocol] = {}
        for kind, cases in (("worst", ex.worst()), ("best", ex.best())):
            paths = []
            for rank, (_, _, c) in enumerate(cases, 1):
                path = folder / protocol / f"{kind}_{rank:02d}_{safe_name(c['id'])}.png"
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


def write_curve_csv(reports: Dict[str, dict], path: Path) -> None:
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

