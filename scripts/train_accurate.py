"""The recipe of the bundled accurate model (weights/MODEL_CARD.md): SAMUS heads (and optionally SAMUS's
additions) on the frozen LiteMedSAM trunk, trained on its cached features with simulated clicks and boxes,
on the train splits of BUSI, HC18 (its first --hc18-images images: fetal heads are easy and plentiful) and
usgra; validation on all three val splits. Resumable with --resume OUT/last.pt.

    python scripts/train_accurate.py --config lite_medsam --out runs/accurate_b --data ../shared/data
"""
import argparse
import logging
import sys
from pathlib import Path

from samus.data import load_items
from samus.train import TrainConfig, train

WEIGHTS = {"busi": 1.0, "hc18": 1.0, "usgra": 1.5}


def items(root: Path, split: str, names, limit=None):
    out = []
    for name in names:
        its = load_items(root / name, split)
        if limit and name == "hc18":
            keep = list(dict.fromkeys(str(it["image"]) for it in its))[:limit]
            its = [it for it in its if str(it["image"]) in set(keep)]
        out += [dict(it, dataset=name) for it in its]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding busi/, hc18/ and usgra/")
    p.add_argument("--config", default="lite_medsam", choices=("lite_medsam", "lite_medsam_samus"))
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default=".cache/features")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--samples-per-epoch", type=int, default=400)
    p.add_argument("--hc18-images", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", default=None)
    p.add_argument("--checkpoint", default=None, help="weights to start from (an earlier run's best.pt)")
    p.add_argument("--box-prob", type=float, default=0.3)
    p.add_argument("--box-teacher-weight", type=float, default=0.0,
                   help="box-only predictions also learn LiteMedSAM's own answer with this weight")
    p.add_argument("--regression-weight", type=float, default=0.0,
                   help="penalise corrective rounds that lower the previous round's Dice (needs --loss-every-round)")
    p.add_argument("--val-box", action="store_true", help="the validation score also counts the tight box")
    p.add_argument("--max-rounds", type=int, default=2)
    p.add_argument("--mode", default="full", choices=("full", "heads", "box"),
                   help="what trains (full: heads and SAMUS additions; box: only what box prompts use)")
    p.add_argument("--box-decoder", action="store_true",
                   help="give the model a box decoder (a copy of its mask decoder) for every prompt holding a box")
    p.add_argument("--leave-out", nargs="*", default=(), choices=tuple(WEIGHTS),
                   help="data sets left out of training and validation (a model that has not seen them, for "
                        "benchmarks/bench_new_organ.py)")
    p.add_argument("--loss-every-round", action="store_true",
                   help="loss on the first prompt and every corrective round (the first click learns every step)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    weights = {name: w for name, w in WEIGHTS.items() if name not in args.leave_out}
    cfg = TrainConfig(
        arch="lite_medsam", config=args.config, mode=args.mode, box_decoder=args.box_decoder, lr=args.lr, lr_schedule="cosine", batch_size=8,
        epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, bf16=True, threads=args.threads,
        feature_cache=args.cache, views=("orig",), out_dir=args.out, resume=args.resume, prompts="interactive",
        max_rounds=args.max_rounds, loss_every_round=args.loss_every_round, mask_prob=0.7, box_prob=args.box_prob, click_loss_weight=0.5, iou_loss_weight=1.0, val_clicks=3,
        checkpoint=args.checkpoint, box_teacher_weight=args.box_teacher_weight, val_box=args.val_box,
        regression_weight=args.regression_weight,
        data_weights=weights, progress_bar=False, tensorboard=False,
        data=f"{args.data}: busi, hc18 (first {args.hc18_images} train images), usgra"
             + (f"; left out: {', '.join(args.leave_out)}" if args.leave_out else ""),
    )
    result = train(cfg, items(args.data, "train", weights, args.hc18_images), items(args.data, "val", weights))
    print({k: result[k] for k in ("best", "last", "best_dice", "epochs_done")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
