"""`TrainConfig`: every training option and its default, in one place.

Each field's metadata describes its `samus train` flag (`samus.cli.train` generates the flags from it) and,
for the options the MONAI Label trainer offers, that option's name (`trainer_option_defaults`). A field
without a flag has ``flag=False``.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ..build import TRAIN_MODES
from ..data.dataset import PROMPT_MODES

# progress(epoch, step, loss, metrics): epoch is 0-based; step counts finished steps of the epoch (1-based);
# metrics holds "epochs", "steps", "images_per_s" and, at the end of an epoch (step == steps),
# "train_loss" and "val_dice" (None without validation data).
ProgressFn = Callable[[int, int, float, Dict[str, Any]], None]

LR_SCHEDULES = ("constant", "cosine")


def option(default, help: Optional[str] = None, flag=None, **meta):
    """A TrainConfig field. `flag`: its command-line flag (default ``--field-name``; False: none; a True
    default makes a ``--no-...`` flag that turns it off); `meta` may hold `choices`, `type` (for fields whose
    default is None), `app_option` (the MONAI Label trainer's name for it) and `app_default` (the trainer's
    own default where it differs)."""
    return field(default=default, metadata=dict(meta, help=help, flag=flag))


@dataclass
class TrainConfig:
    arch: str = option("samus", choices=("samus", "lite_medsam"),
                       help="samus (default): SAMUS trained end to end; lite_medsam: SAMUS heads and additions on the "
                            "frozen LiteMedSAM trunk, trained on its cached features (--feature-cache)")
    config: Optional[str] = option(
        None, help="vit_b, small or tiny for samus (default: the checkpoint's; vit_b for SAM / official SAMUS files; "
                   "small without --checkpoint); lite_medsam or lite_medsam_samus (with SAMUS's feature adapter and "
                   "CNN branch) for lite_medsam")
    checkpoint: Optional[str] = option(None, help="weights to start from (samus, official SAMUS or SAM ViT-B)")
    mode: str = option("adapter", choices=TRAIN_MODES,
                       help="adapter: official freezing rule; full: train every parameter; heads: the prompt "
                            "encoder and mask decoder only; box: what only box prompts use, the two box-corner "
                            "embeddings and the box decoder (--box-decoder; click-only answers stay bit-identical)")
    lr: float = option(1e-4, help="Adam learning rate (default %(default)s)", app_option="learning_rate")
    batch_size: int = option(8, help="samples per step and process (default %(default)s)",
                             app_option="train_batch_size", app_default=4)
    epochs: int = option(10, help="epochs (default %(default)s)", app_option="max_epochs")
    num_workers: int = option(0, flag="--workers", help="data loader worker processes")
    seed: int = option(1234, help="seed of the model's initialisation, the prompts and the sampling",
                       app_option="seed")
    bf16: bool = option(False, help="bfloat16 autocast (CPU or CUDA)")
    device: str = option("auto", help='"auto", "cpu", "cuda", "cuda:1"')
    out_dir: str = option("runs/samus", flag="--out", help="output folder")
    resume: Optional[str] = option(None, help="continue from a last.pt")
    clicks: int = option(1, help="positive clicks per sample (--prompts fixed)")
    iou_loss_weight: float = option(
        0.0, help="also train the IoU head (MSE to the mask's IoU); use ~1 when training from scratch")
    neg_clicks: int = option(0, help="negative clicks per sample (--prompts fixed)")
    box: bool = option(False, help="also prompt with a jittered box (--prompts fixed)")
    augment: bool = option(True, flag="--no-augment", help="no augmentation")
    tensorboard: bool = option(True, flag="--no-tensorboard", help="no TensorBoard logs")
    max_steps_per_epoch: Optional[int] = option(None, type=int, help="stop each epoch after this many steps",
                                                app_option="max_steps_per_epoch", app_default=0)
    val_batch_size: int = option(16, flag=False)
    threads: Optional[int] = option(None, type=int, help="CPU threads (torch.set_num_threads)")
    progress_bar: bool = option(True, flag="--no-progress", help="no progress bar")
    data: Optional[str] = option(None, flag=False)  # free text recorded in the checkpoint provenance (the data folder)
    # Click simulation (see samus.click_simulation).
    prompts: str = option("interactive", choices=PROMPT_MODES,
                          help="first prompt: interactive = one click, several +/- clicks or a box at random "
                               "(default); fixed = --clicks / --neg-clicks (/ --box), the authors' rule")
    max_rounds: int = option(3, help="corrective click rounds per step, drawn from 0..N (default %(default)s; 0: no "
                                     "click simulation)", app_option="max_rounds")
    mask_prob: float = option(0.7, help="chance that a corrective round feeds the previous mask back "
                                        "(default %(default)s)")
    click_spread: float = option(0.5, help="simulated clicks land at >= (1 - s) x the deepest error-pixel depth "
                                           "(default %(default)s)")
    loss_every_round: bool = option(False, help="loss on every round, not only the last")
    components: bool = option(True, flag="--no-components",
                              help="one target per class instead of one per separate structure")
    min_target_fraction: float = option(
        0.001, help="structures smaller than this fraction of the image are not targets (default %(default)s)")
    data_weights: Optional[Dict[str, float]] = option(None, flag=False)  # sampling weight per data set name
    samples_per_epoch: Optional[int] = option(None, type=int, help="samples drawn per epoch (default: the number "
                                                                   "of training samples)")
    val_clicks: int = option(3, help="validation Dice after 1..N clicks (default %(default)s)")
    channels_last: bool = option(False, help="channels-last memory format for the encoder")
    compile: bool = option(False, help="torch.compile the image encoder")
    click_loss_weight: float = option(0.0, help="extra BCE on the logits under each click (positive inside, "
                                                "negative outside)")
    lr_schedule: str = option("constant", choices=LR_SCHEDULES,
                              help="cosine: decay from --lr to 5%% of it over --epochs")
    box_prob: float = option(0.2, help="chance that an interactive first prompt is a jittered box (default "
                                       "%(default)s); single clicks take min(0.5, 1 - box_prob), multi-clicks the rest")
    # Frozen-trunk models (lite_medsam) train on the trunk's cached output: the folder of the feature cache
    # (filled first for whatever is missing) and the cached views drawn as augmentation.
    feature_cache: Optional[str] = option(
        None, metavar="DIR", help="folder of the frozen trunk's cached features (lite_medsam); missing entries are "
                                  "encoded first, and later runs reuse them")
    views: Tuple[str, ...] = option(("orig",), help="cached views drawn as augmentation: orig or orig,hflip")
    box_teacher_weight: float = option(
        0.0, help="lite_medsam: box-only predictions also learn LiteMedSAM's own answer (its frozen heads on the "
                  "same trunk features) with this weight, so training for clicks keeps what boxes give")
    regression_weight: float = option(
        0.0, help="with --loss-every-round: extra loss on each corrective round by how much it lowered the soft "
                  "Dice of the round before (a click should never make the mask worse)")
    box_decoder: bool = option(
        False, help="give the model a box decoder first (a copy of its mask decoder that answers every "
                    "prompt holding a box); with --mode box only it and the box-corner embeddings train, so "
                    "answers to clicks alone stay bit-identical")
    val_box: bool = option(False, help="validation also scores the tight box; the selection score then averages "
                                       "the first click, the last click and the box")


def default_of(name: str):
    """The default value of a TrainConfig field."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}[name]


def trainer_option_defaults() -> Dict[str, Any]:
    """The MONAI Label trainer's options that are TrainConfig fields, by the trainer's names, with their
    defaults (the trainer's own where `app_default` sets one)."""
    return {f.metadata["app_option"]: f.metadata.get("app_default", f.default)
            for f in dataclasses.fields(TrainConfig) if "app_option" in f.metadata}


def check_config(cfg: TrainConfig) -> None:
    """Raises ValueError for an option out of range, before any data is decoded."""
    if cfg.mode not in TRAIN_MODES:
        raise ValueError(f"unknown training mode {cfg.mode!r}; choose one of {', '.join(TRAIN_MODES)}")
    if cfg.batch_size < 1 or cfg.epochs < 0 or cfg.lr <= 0:
        raise ValueError(f"need batch_size >= 1, epochs >= 0, lr > 0 (got {cfg.batch_size}, {cfg.epochs}, {cfg.lr})")
    if cfg.max_rounds < 0 or cfg.val_clicks < 1:
        raise ValueError(f"need max_rounds >= 0 and val_clicks >= 1 (got {cfg.max_rounds}, {cfg.val_clicks})")
    if cfg.regression_weight and not cfg.loss_every_round:
        raise ValueError("regression_weight compares consecutive rounds: it needs loss_every_round")
    epoch_lr(cfg, 0)  # an unknown schedule fails now, not after the data is decoded
    if cfg.samples_per_epoch is not None and cfg.samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be >= 1 (got {cfg.samples_per_epoch})")


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of a (0-based) epoch under the configured schedule."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * epoch / max(cfg.epochs, 1))))
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; choose constant or cosine")
