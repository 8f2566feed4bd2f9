"""Propagation quality: Dice on the clicked frame vs the propagated frames, for several option settings.

    .venv/bin/python benchmarks/bench_propagate.py --data ../shared/data/busi ../shared/data/hc18 ../shared/data/usgra

Each test image (one target: a BUSI lesion, a fetal head, a usgra vessel - class 2 - or nerve) becomes a
short cine by simulated probe motion (`samus.cine_sim`; `--frames` frames over the whole path, so each step is
a large move, like expert masks drawn every tenth frame). Frame 0 gets the authors' middle click; the mask is
propagated forward with each setting. Frames are encoded once and shared by all settings.
"""
import argparse
import itertools
import statistics
import sys

import numpy as np

import samus
from samus.cine_sim import simulate_cine
from samus.data import class_map, dataset_name, folder_items, label_targets
from samus.evaluate import first_click, load_item_label
from samus.metrics import dice_score
from samus.preprocess import to_unit_grayscale
from samus.propagate import FramePrompt, PropagationOptions, propagate


def cases(folder: str, per_dataset: int, frames: int, amplitude: float):
    """(case id, cine, truth) for the first `per_dataset` test images; usgra-like labels use class 2."""
    for item in folder_items(folder, "test", "all")[:per_dataset]:
        image, label = load_item_label(item)
        classes = np.unique(class_map(label))
        target_class = 2 if 2 in classes else 1
        targets = label_targets(label, target_class, components=True, min_fraction=0.002)
        mask = max(targets, key=lambda t: t[1].sum())[1]  # the largest structure of that class
        gray = (to_unit_grayscale(image) * 255).round().astype(np.uint8)
        cine, truth = simulate_cine(gray, mask, frames, seed=len(item["id"]), amplitude=amplitude)
        yield f"{item['id']}:{target_class}", cine, truth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--per-dataset", type=int, default=10)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--amplitude", type=float, default=1.5, help="motion strength (1: the app tests' cine)")
    ap.add_argument("--negatives", type=int, nargs="+", default=[0, 2], help="negative clicks to try")
    args = ap.parse_args()
    model = samus.load_default_model() if args.checkpoint is None else samus.build_samus(None, args.checkpoint)
    predictor = samus.SamusPredictor(model, cache_size=4096, cache_bytes=2 * 2**30)
    settings = {}
    for carry, track, mask_input, pos, neg, box in itertools.product(
            (False, True), (False, True), (False, True), (1, 3), args.negatives, (None, 0.1)):
        if carry and (not track or pos > 1 or neg):
            continue  # carried seed clicks replace the derived ones, and are always tracked
        name = f"carry={int(carry)} track={int(track)} mask_input={int(mask_input)} pos={pos} neg={neg} box={box}"
        settings[name] = PropagationOptions(direction="forward", use_mask_input=mask_input, positive_clicks=pos,
                                            negative_clicks=neg, box_margin=box, track_motion=track,
                                            carry_seed_clicks=carry)
    oracle = "oracle: the middle click of the true mask on every frame"
    scores = {name: {"clicked": [], "propagated": []} for name in list(settings) + [oracle]}
    per_dataset = {}
    for folder in args.data:
        name_ds = dataset_name(folder)
        for case, cine, truth in cases(folder, args.per_dataset, args.frames, args.amplitude):
            x, y, label = first_click(truth[:, :, 0] > 0)
            prompt = {0: FramePrompt(np.array([[x, y]], float), np.array([label]))}
            for name, opts in settings.items():
                result = propagate(predictor, lambda k: cine[:, :, k], args.frames, prompt,
                                   lambda k, case=case: (case, k), options=opts)
                dice = [dice_score(result.masks.get(k, np.zeros(truth.shape[:2], bool)), truth[:, :, k] > 0)
                        for k in range(args.frames)]
                scores[name]["clicked"].append(dice[0])
                scores[name]["propagated"].append(float(np.mean(dice[1:])))
                per_dataset.setdefault((name, name_ds), []).append(float(np.mean(dice[1:])) - dice[0])
            # What a user clicking every frame would get: the bound for any propagation.
            dice = []
            for k in range(args.frames):
                emb, _ = predictor.embed(cine[:, :, k], (case, k))
                x, y, label = first_click(truth[:, :, k] > 0)
                m, _, _ = predictor.predict_embedding(emb, [[x, y]], [label])
                dice.append(dice_score(m, truth[:, :, k] > 0))
            scores[oracle]["clicked"].append(dice[0])
            scores[oracle]["propagated"].append(float(np.mean(dice[1:])))
            per_dataset.setdefault((oracle, name_ds), []).append(float(np.mean(dice[1:])) - dice[0])
    print(f"{len(scores[next(iter(scores))]['clicked'])} cines x {args.frames} frames, amplitude {args.amplitude}")
    print(f"{'setting':66s} {'clicked':>8s} {'propagated':>11s} {'gap':>7s}   gap per data set")
    for name, s in sorted(scores.items(), key=lambda kv: -np.mean(kv[1]["propagated"])):
        c, p = np.mean(s["clicked"]), np.mean(s["propagated"])
        gaps = "  ".join(f"{ds} {statistics.mean(v):+.3f}" for (n, ds), v in per_dataset.items() if n == name)
        print(f"{name:66s} {c:8.3f} {p:11.3f} {p - c:+7.3f}   {gaps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
