"""Training throughput (samples/s including the corrective click rounds) for several settings, side by side.

    .venv/bin/python benchmarks/bench_train.py --data ../shared/data/busi ../shared/data/hc18 ../shared/data/usgra

Each setting trains `--steps` steps (after `--warmup` untimed ones) of the `small` configuration from the
bundled weights on the same samples and prints the median step time; run it on an otherwise idle machine.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from samus.data import dataset_name, folder_items
from samus.default import DEFAULT_CHECKPOINT
from samus.train import TrainConfig, train

SETTINGS = {
    # the recipe before click simulation: one random positive click, no corrective rounds, fp32
    "authors fp32": dict(prompts="fixed", max_rounds=0, bf16=False),
    "authors bf16": dict(prompts="fixed", max_rounds=0, bf16=True),
    "interactive bf16": dict(bf16=True),
    "interactive bf16 channels-last": dict(bf16=True, channels_last=True),
    "interactive bf16 compile": dict(bf16=True, compile=True),
    "interactive bf16 compile channels-last": dict(bf16=True, compile=True, channels_last=True),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--per-dataset", type=int, default=48, help="training images taken from each data set")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    items = []
    for folder in args.data:
        items += [dict(it, dataset=dataset_name(folder)) for it in folder_items(folder, "train", "all")[:args.per_dataset]]
    flags = open("/proc/cpuinfo").read().split("flags", 2)[1].split("\n")[0].split() if os.path.exists("/proc/cpuinfo") else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, AMX: {'amx_bf16' in flags}, "
          f"AVX-512 BF16: {'avx512_bf16' in flags}; {len(items)} images")
    print(f"{'setting':34s} {'batch':>5s} {'s/step':>8s} {'samples/s':>10s}")
    for batch in args.batch_size:
        for name in args.settings:
            times = []
            last = [time.perf_counter()]

            def progress(epoch, step, loss, metrics):
                now = time.perf_counter()
                if step > args.warmup:
                    times.append(now - last[0])
                last[0] = now

            with tempfile.TemporaryDirectory() as out:
                cfg = TrainConfig(checkpoint=str(DEFAULT_CHECKPOINT), mode="full", batch_size=batch, epochs=1,
                                  out_dir=out, tensorboard=False, progress_bar=False,
                                  max_steps_per_epoch=args.steps + args.warmup + 1, iou_loss_weight=1.0,
                                  **SETTINGS[name])
                train(cfg, items, None, progress=progress)
            step = statistics.median(times)
            print(f"{name:34s} {batch:5d} {step:8.3f} {batch / step:10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
