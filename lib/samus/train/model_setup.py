"""Set-up of a training run: the model (new, fine-tuned or resumed), its optimizer and, for frozen-trunk
models, the filled feature cache."""
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..build import build_model, build_samus, freeze_for_training, train_mode
from ..checkpoint import read_checkpoint
from ..data.items import Item
from .config import TrainConfig

log = logging.getLogger("samus.train")


@dataclass
class ResumeState:
    """Where a run starts: epoch 0 with no history, or where a resumed last.pt stopped."""
    epoch: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    best_dice: Optional[float] = None


def build_training_model(cfg: TrainConfig):
    """-> (model, the resumed checkpoint's extra dict or None)."""
    model, extra = _start_model(cfg)
    if cfg.box_decoder:
        model.add_box_decoder()
    return model, extra


def _start_model(cfg: TrainConfig):
    if cfg.resume:
        ckpt = read_checkpoint(cfg.resume)
        extra = ckpt.extra or {}
        if ckpt.kind != "samus" or "optimizer" not in extra:
            raise ValueError(f"{cfg.resume} is not a resumable checkpoint (use a last.pt written by samus train)")
        if extra.get("mode") not in (None, cfg.mode):
            raise ValueError(f"{cfg.resume} was trained with mode {extra['mode']!r}, not {cfg.mode!r}")
        return build_model(checkpoint=ckpt), extra
    if cfg.arch != "samus":
        return build_model(cfg.arch, config=cfg.config, checkpoint=cfg.checkpoint), None
    # No configuration: the checkpoint's own (official SAMUS and SAM files are vit_b), else the small model.
    config = "small" if cfg.config is None and cfg.checkpoint is None else cfg.config
    return build_samus(config=config, checkpoint=cfg.checkpoint), None


def model_and_optimizer(cfg: TrainConfig, device: torch.device):
    """-> (model frozen for `cfg.mode` on `device`, Adam over its trainable parameters, ResumeState)."""
    model, extra = build_training_model(cfg)
    freeze_for_training(model, cfg.mode)
    train_mode(model.to(device))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"mode {cfg.mode!r} leaves no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    if extra is None:
        return model, optimizer, ResumeState()
    optimizer.load_state_dict(extra["optimizer"])
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
    return model, optimizer, ResumeState(int(extra["epoch"]), list(extra.get("history", [])), extra.get("best_dice"))


def filled_feature_cache(cfg: TrainConfig, model, train_items: Sequence[Item], val_items: Sequence[Item]):
    """The filled feature cache of a frozen-trunk model (None for models whose encoder trains): every cached
    view of the training images, the plain view of the validation images."""
    if not hasattr(model.image_encoder, "trunk"):
        if cfg.feature_cache:
            raise ValueError(f"{model.arch} trains its image encoder; feature_cache needs a frozen-trunk model")
        return None
    if not cfg.feature_cache:
        raise ValueError(f"{model.arch} trains on cached trunk features: set feature_cache to a folder")
    from ..feature_cache import FeatureCache

    cache = FeatureCache(cfg.feature_cache, model)
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    for items, views in ((train_items, cfg.views), (val_items, ("orig",))):
        todo = cache.missing(items, views)
        if todo:
            log.info("feature cache %s: encoding %d image views (about 1 s each on a CPU)", cache.root, len(todo))
            cache.fill(items, views, dtype=dtype)
    return cache


def prepare_encoder(cfg: TrainConfig, model, features) -> None:
    """Channels-last and torch.compile apply to an encoder that runs (not to cached features)."""
    if cfg.channels_last and features is None:
        model.image_encoder.to(memory_format=torch.channels_last)
    if cfg.compile and features is None:
        model.image_encoder.compile()  # in place: parameter names (and checkpoints) stay the same
