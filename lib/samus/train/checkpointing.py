"""What a training run writes: last.pt (resumable), best.pt (highest validation score) and history.json."""
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import torch

from ..atomic import write_json
from ..checkpoint import save_checkpoint


@dataclass
class RunFiles:
    out: Path

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def history(self) -> Path:
        return self.out / "history.json"


def provenance(run, epoch_done: int, val_dice) -> Dict[str, Any]:
    """Where the weights come from, recorded in the checkpoint."""
    cfg, model, data, history = run.cfg, run.model, run.data, run.history
    return {
        "source": "samus train", "arch": model.arch, "config": model.config_name, "mode": cfg.mode,
        "base_checkpoint": cfg.checkpoint, "data": cfg.data, "train_samples": len(data.train_ds),
        "val_samples": len(data.val_ds) if data.val_ds else 0, "epochs": epoch_done, "lr": cfg.lr,
        "batch_size": cfg.batch_size * run.ctx.world, "seed": cfg.seed, "val_dice": val_dice,
        "prompts": cfg.prompts, "max_rounds": cfg.max_rounds, "mask_prob": cfg.mask_prob,
        "data_weights": cfg.data_weights, "val_curves": history[-1].get("val_curves") if history else None,
        "box_prob": cfg.box_prob, "views": list(cfg.views),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": str(torch.__version__),
    }


def save_run(run, epoch_done: int, is_best: bool, val_dice) -> None:
    """last.pt (with the optimizer, to resume), best.pt when `is_best`, and history.json."""
    meta = provenance(run, epoch_done, val_dice)
    extra = {"epoch": epoch_done, "history": run.history, "best_dice": run.best_dice, "mode": run.cfg.mode,
             "train_config": dataclasses.asdict(run.cfg)}
    save_checkpoint(run.files.last, run.model, meta, dict(extra, optimizer=run.optimizer.state_dict()))
    if is_best:
        save_checkpoint(run.files.best, run.model, meta, extra)
    write_json(run.files.history, run.history, indent=2)
