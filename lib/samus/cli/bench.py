"""`samus bench`: time the encoder, a click and peak memory."""
import json
import os

from ..bench import report, run


def run_bench(args) -> int:
    r = run(args.config, args.repeats, args.sam_repeats, args.threads, args.skip_sam)
    print(report(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time the encoder, a click and peak memory (prints medians)")
    p.add_argument("--config", default="vit_b")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sam-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--skip-sam", action="store_true", help="skip SAM ViT-B @1024 (about 9 s a run)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.set_defaults(func=run_bench)
