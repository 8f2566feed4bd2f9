"""TrainConfig is the one home of the training defaults: the `samus train` flags are generated from it and the
MONAI Label trainer's option table takes its defaults from it."""
import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from samus.cli import build_parser
from samus.cli.train import config_from_args
from samus.train import TrainConfig, trainer_option_defaults

ROOT = Path(__file__).resolve().parents[2]


def test_train_flags_default_to_the_config():
    args = build_parser().parse_args(["train", "--data", "somewhere"])
    assert config_from_args(args) == TrainConfig()


def test_every_flagged_field_has_a_flag_that_sets_it():
    args = build_parser().parse_args(["train", "--data", "x", "--no-augment", "--workers", "3", "--out", "o",
                                      "--views", "orig,hflip", "--threads", "2", "--lr", "0.5"])
    cfg = config_from_args(args, data="x", data_weights={"x": 1.0})
    assert (cfg.augment, cfg.num_workers, cfg.out_dir, cfg.views, cfg.threads, cfg.lr) == (
        False, 3, "o", ("orig", "hflip"), 2, 0.5)
    flagless = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag") is False}
    assert flagless == {"val_batch_size", "data", "data_weights"}


def test_trainer_options_come_from_the_config():
    defaults = trainer_option_defaults()
    assert defaults == {"max_epochs": TrainConfig.epochs, "learning_rate": TrainConfig.lr,
                        "max_rounds": TrainConfig.max_rounds, "seed": TrainConfig.seed,
                        "train_batch_size": 4, "max_steps_per_epoch": 0}  # the trainer's own smaller batch; 0 = all
    pytest.importorskip("monailabel")
    sys.path.insert(0, str(ROOT / "monailabel_app"))
    from lib.trainers.samus import SamusTrainTask

    conf = SimpleNamespace(config="tiny", sharing=SimpleNamespace(train_nice=0, train_threads=None))
    service = SimpleNamespace(name="samus", base_path="base.pt", publish_path="model.pt", conf=conf)
    table = SamusTrainTask("models", service).config()
    assert {k: table[k] for k in defaults} == defaults
