"""The `samus` command line: train, evaluate, predict, bench, download."""
import argparse
import importlib
import sys
from typing import List, Optional

# Each module owns its sub-commands through a `register(subparsers)` function.
_COMMAND_MODULES = ("samus.train", "samus.evaluate", "samus.bench", "samus.checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samus", description="SAMUS: point-prompted ultrasound segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: a readable message, not a traceback
        print(f"samus {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
