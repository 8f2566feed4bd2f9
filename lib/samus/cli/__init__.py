"""The `samus` command line: train, evaluate, predict, bench, download (one module per command; each
module's `register(subparsers)` adds its sub-command)."""
import argparse
import sys
from typing import List, Optional

from . import bench, download, evaluate, predict, train

_COMMANDS = (train, evaluate, predict, bench, download)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samus", description="SAMUS: point-prompted ultrasound segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: a readable message, not a traceback
        print(f"samus {args.command}: error: {e}", file=sys.stderr)
        return 2
