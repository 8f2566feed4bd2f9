"""How much a few labels of an organ the model has never seen lift its clicks: the MONAI Label trainer's
fine-tune (`samus.train.train_on_pairs` with the trainer's defaults and recipe), timed from the first
feature encoding to the best checkpoint, and the test split scored before and after in one run.

    python scripts/train_accurate.py --config lite_medsam_samus --leave-out usgra --out runs/loo_usgra ...
    .venv/bin/python benchmarks/bench_new_organ.py --checkpoint runs/loo_usgra/best.pt \\
        --data ../shared/data/usgra --class-id 1 --labels 20 --feature-cache .cache/features

The model must not have seen the data set (`scripts/train_accurate.py --leave-out`); the bundled models have
seen all three of ours. The labels are the first `--labels` images of the train split; their features are
encoded into a fresh cache inside the timed part, as on a server that meets the organ for the first time.
The test split is scored with `--feature-cache` (the frozen trunk's output of the test images; it does not
depend on the fine-tune).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

from bench_encoders import cpu_flags  # this folder is on sys.path when a benchmark runs as a script
from samus.build import build_model
from samus.data import load_items
from samus.evaluate import evaluate
from samus.feature_cache import FeatureCache
from samus.predictor import SamusPredictor
from samus.train import label_recipe, train_on_pairs, trainer_option_defaults

PROTOCOLS = ("kclick", "box")


def score(checkpoint: str, items, cache_dir: str) -> dict:
    model = build_model(checkpoint=checkpoint)
    predictor = SamusPredictor(model)
    report = evaluate(predictor, items, PROTOCOLS, k=3, features=FeatureCache(cache_dir, model))
    curve = [c["mean"] for c in report["summary"]["kclick"]["curve"]]
    return {"click1": curve[0], "click3": curve[2], "box": report["summary"]["box"]["dice"]["mean"],
            "targets": report["n_targets"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a model that has not seen --data")
    ap.add_argument("--data", required=True, help="the new organ's data folder (images/, masks/, splits.json)")
    ap.add_argument("--class-id", default="1", help="the label value of the organ (default 1)")
    ap.add_argument("--labels", type=int, default=20, help="labelled images the fine-tune gets")
    ap.add_argument("--test-limit", type=int, default=None, help="score only the first N test images")
    ap.add_argument("--feature-cache", default=".cache/features", help="cache of the test images' features")
    ap.add_argument("--epochs", type=int, default=None, help="default: the MONAI Label trainer's")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="default: the trainer's")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    class_id = int(args.class_id)
    defaults = trainer_option_defaults()
    epochs = args.epochs or defaults["max_epochs"]
    labelled = load_items(args.data, "train", class_id=class_id)
    files = list(dict.fromkeys(str(it["image"]) for it in labelled))[:args.labels]
    pairs = [(f, str(next(it["mask"] for it in labelled if str(it["image"]) == f))) for f in files]
    test = load_items(args.data, "test", class_id=class_id)[:args.test_limit]
    print(f"torch {torch.__version__}, {cpu_flags()}; {len(pairs)} labelled "
          f"images, {len(test)} test images, class {class_id}; trainer defaults {defaults}, epochs {epochs}, "
          f"{args.precision}")

    before = score(args.checkpoint, test, args.feature_cache)
    with tempfile.TemporaryDirectory() as tmp:
        steps = []
        last = [time.perf_counter()]

        def progress(epoch, step, loss, metrics):
            now = time.perf_counter()
            steps.append(now - last[0])
            last[0] = now

        start = time.perf_counter()
        result = train_on_pairs(
            pairs, val_fraction=0.2, progress=progress, arch="lite_medsam", checkpoint=args.checkpoint,
            feature_cache=os.path.join(tmp, "features"), mode="full", lr=defaults["learning_rate"],
            batch_size=defaults["train_batch_size"], epochs=epochs, seed=defaults["seed"],
            bf16=args.precision == "bf16", max_rounds=defaults["max_rounds"], out_dir=os.path.join(tmp, "run"),
            progress_bar=False, tensorboard=False, **label_recipe("full"))
        seconds = time.perf_counter() - start
        after = score(result["best"] or result["last"], test, args.feature_cache)

    print(f"fine-tune: {seconds:.1f} s wall (feature encoding of {len(pairs)} images included), "
          f"{result['epochs_done']} epochs, median step {statistics.median(steps):.2f} s, best val "
          f"{result['best_dice']:.3f}")
    print(f"{'':8s} {'click@1':>8s} {'click@3':>8s} {'box':>8s}   ({before['targets']} test targets)")
    for name, row in (("before", before), ("after", after)):
        print(f"{name:8s} {row['click1']:8.3f} {row['click3']:8.3f} {row['box']:8.3f}")
    print(f"{'change':8s} {after['click1'] - before['click1']:+8.3f} {after['click3'] - before['click3']:+8.3f} "
          f"{after['box'] - before['box']:+8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
