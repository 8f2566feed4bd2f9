"""Fill the LiteMedSAM trunk feature cache for data-set splits (resumable: cached entries are skipped).

    python scripts/cache_features.py --cache .cache/features --data ../shared/data/busi ../shared/data/hc18 \
        --splits train val test --views orig
"""
import argparse
import sys
import time

import torch

from samus.build import build_lite_medsam
from samus.data import load_items
from samus.feature_cache import FeatureCache


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    p.add_argument("--views", nargs="+", default=["orig"])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_lite_medsam()
    cache = FeatureCache(args.cache, model)
    dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16
    for split in args.splits:
        for root in args.data:
            items = list({str(it["image"]): it for it in load_items(root, split)}.values())[: args.limit]
            t0 = time.time()
            n = cache.fill(items, args.views, batch_size=1, dtype=dtype,
                           progress=lambda d, t: print(f"\r{root} {split}: {d}/{t}", end="", flush=True))
            print(f"\n{root} {split}: {n} encoded, {len(items) - n // len(args.views)} cached, "
                  f"{time.time() - t0:.0f} s", flush=True)
    print("cache:", cache.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
