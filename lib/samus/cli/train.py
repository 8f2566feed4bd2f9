"""`samus train`: the flags are generated from TrainConfig (one default per option), plus the data selection."""
import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Tuple

from ..data import ALL_CLASSES, Item, dataset_name, detect_layout, load_items, parse_data_spec
from ..train import TrainConfig, split_items, train

log = logging.getLogger("samus.train")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field that has one (see `samus.train.config.option`)."""
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta.get("flag") is False:
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kwargs = {"dest": f.name, "help": meta.get("help")}
        if isinstance(f.default, bool):
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["default"] = ",".join(f.default) if isinstance(f.default, tuple) else f.default
            kwargs["type"] = meta.get("type") or (type(f.default) if isinstance(f.default, (int, float)) else None)
            kwargs.update({k: meta[k] for k in ("choices", "metavar") if k in meta})
            if "choices" not in kwargs:
                kwargs.setdefault("metavar", flag[2:].upper().replace("-", "_"))
        parser.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace, **fields) -> TrainConfig:
    """The TrainConfig of parsed `add_config_flags` flags; `fields` set the fields that have no flag."""
    values = {}
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("flag") is False:
            continue
        value = getattr(args, f.name)
        if isinstance(f.default, tuple):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        values[f.name] = value
    return TrainConfig(**values, **fields)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune SAMUS on folders of images and masks",
                              description="Train SAMUS with click simulation (varied first prompts, corrective "
                              "rounds with the previous mask fed back; Adam, Dice+BCE) on one or more data sets "
                              "with balanced sampling. Writes best.pt / last.pt (samus checkpoint format), "
                              "history.json and TensorBoard logs to --out. Use torchrun for data-parallel training.")
    p.add_argument("--data", required=True, nargs="+", metavar="FOLDER[:WEIGHT]",
                   help="one or more images/ + masks/ folders (optional splits.json) or US30K roots; a weight "
                        "after a colon sets how often a data set is drawn (default: all equal)")
    p.add_argument("--layout", default="auto", choices=("auto", "folder", "us30k"))
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="'none' to skip validation")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="held-out fraction when the folder has no splits.json")
    p.add_argument("--class-id", default=ALL_CLASSES,
                   help="label value to segment (folder layout), or 'all' (default): every class a target")
    add_config_flags(p)
    p.set_defaults(func=run_cli)


def folder_split(folder: str, args) -> Tuple[List[Item], List[Item]]:
    layout = detect_layout(folder) if args.layout == "auto" else args.layout
    has_splits = layout == "us30k" or (Path(folder) / "splits.json").is_file()
    if not has_splits:
        items = load_items(folder, None, layout, args.class_id)
        if args.val_split == "none":
            return items, []
        return split_items(items, args.val_fraction, args.seed)
    train_items = load_items(folder, args.train_split, layout, args.class_id)
    val_items = [] if args.val_split == "none" else load_items(folder, args.val_split, layout, args.class_id)
    return train_items, val_items


def cli_items(args) -> Tuple[List[Item], List[Item], Dict[str, float]]:
    """Items of every --data folder, each tagged with its data set's name, and the weights by name."""
    train_items: List[Item] = []
    val_items: List[Item] = []
    weights: Dict[str, float] = {}
    for spec in args.data:
        folder, weight = parse_data_spec(spec)
        name = dataset_name(folder)
        if name in weights:
            raise ValueError(f"two --data folders are named {name!r}; data sets need distinct folder names")
        weights[name] = weight
        tr, va = folder_split(folder, args)
        train_items += [dict(it, dataset=name) for it in tr]
        val_items += [dict(it, dataset=name) for it in va]
    return train_items, val_items, weights


def run_cli(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.setLevel(logging.INFO)
    train_items, val_items, weights = cli_items(args)
    cfg = config_from_args(args, data=" ".join(os.path.abspath(parse_data_spec(d)[0]) for d in args.data),
                           data_weights=weights)
    result = train(cfg, train_items, val_items)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: result[k] for k in ("best", "last", "best_dice", "epochs_done", "stopped")}
        if result["history"]:
            summary["final"] = result["history"][-1]
        print(json.dumps(summary, indent=2))
    return 0
