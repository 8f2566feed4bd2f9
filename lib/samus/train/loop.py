"""The training run: set-up, the epochs with validation and checkpoints, and the result."""
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..click_simulation import ClickSimulation
from ..data.items import Item
from ..losses import SamusLoss
from .box_teacher import box_teacher
from .checkpointing import RunFiles, save_run
from .config import ProgressFn, TrainConfig, check_config
from .distributed import DistributedContext, init_distributed, pick_device
from .epoch import EpochResult, run_epoch
from .loaders import TrainData, training_data
from .model_setup import filled_feature_cache, model_and_optimizer, prepare_encoder
from .validation import validate_run

log = logging.getLogger("samus.train")


@dataclass
class TrainRun:
    """Everything one training run works with."""
    cfg: TrainConfig
    device: torch.device
    ctx: DistributedContext
    files: RunFiles
    model: Any
    optimizer: torch.optim.Optimizer
    data: TrainData
    net: torch.nn.Module  # the ClickSimulation (DistributedDataParallel-wrapped under torchrun)
    criterion: torch.nn.Module
    writer: Any = None  # TensorBoard SummaryWriter on rank 0
    teacher: Any = None  # LiteMedSAM as shipped, with box_teacher_weight (samus.train.box_teacher)
    start_epoch: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    best_dice: Optional[float] = None


def train(cfg: TrainConfig, train_items: Sequence[Item], val_items: Optional[Sequence[Item]] = None,
          progress: Optional[ProgressFn] = None, should_stop: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Train and return {"best", "last" (checkpoint paths; best is None without validation data),
    "history" (one dict per epoch), "best_dice", "epochs_done", "stopped", "out_dir", "model" (the trained
    model in its final state, unwrapped)}.

    `progress` is called on rank 0 after every step (see ProgressFn); `should_stop()` is polled after every
    step and ends training early after writing last.pt (resumable from the last finished epoch).
    """
    check_config(cfg)
    device = pick_device(cfg.device)
    ctx = init_distributed(device)
    try:
        run = set_up(cfg, train_items, val_items or [], device, ctx)
        return run_epochs(run, progress, should_stop)
    finally:
        ctx.close()


def set_up(cfg: TrainConfig, train_items, val_items, device: torch.device, ctx: DistributedContext) -> TrainRun:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    files = RunFiles(Path(cfg.out_dir).resolve())
    if ctx.main:
        files.out.mkdir(parents=True, exist_ok=True)
    model, optimizer, state = model_and_optimizer(cfg, device)
    started = time.time()
    features = filled_feature_cache(cfg, model, train_items, val_items)
    data = training_data(cfg, model, features, train_items, val_items, ctx, started)
    prepare_encoder(cfg, model, features)
    net = ClickSimulation(model, cfg.mask_prob, cfg.click_spread, cfg.loss_every_round)
    if ctx.world > 1:
        # In full mode the IoU head and the unused prompt embeddings get no gradient; DDP must look for them.
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.mode == "full")
    writer = None
    if ctx.main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(files.out / "tensorboard"), purge_step=state.epoch * data.steps)
    return TrainRun(cfg, device, ctx, files, model, optimizer, data, net, SamusLoss().to(device), writer,
                    box_teacher(cfg, model, device), state.epoch, state.history, state.best_dice)


def run_epochs(run: TrainRun, progress: Optional[ProgressFn], should_stop) -> Dict[str, Any]:
    stopped = False
    for epoch in range(run.start_epoch, run.cfg.epochs):
        result = run_epoch(run, epoch, progress, should_stop)
        if result.stopped:
            stopped = True
            break
        finish_epoch(run, epoch, result, progress)
        run.ctx.barrier()
    epochs_done = len(run.history)
    if run.ctx.main and (stopped or not run.files.last.exists()):
        save_run(run, epochs_done, False, run.history[-1]["val_dice"] if run.history else None)
    run.ctx.barrier()
    if run.writer is not None:
        run.writer.close()
    return {"best": str(run.files.best) if run.best_dice is not None else None, "last": str(run.files.last),
            "history": run.history, "best_dice": run.best_dice, "epochs_done": epochs_done, "stopped": stopped,
            "out_dir": str(run.files.out), "model": run.model}


def finish_epoch(run: TrainRun, epoch: int, result: EpochResult, progress: Optional[ProgressFn]) -> None:
    """Validate, record the epoch and (on rank 0) log it, save the checkpoints and report progress."""
    cfg, steps = run.cfg, run.data.steps
    loss_total, count = run.ctx.sum([result.loss_sum, result.seen], run.device)
    val_dice, val_curves, val_boxes = validate_run(run.model, run.data, cfg, run.ctx, run.device)
    is_best = val_dice is not None and (run.best_dice is None or val_dice > run.best_dice)
    if is_best:
        run.best_dice = val_dice
    record = {"epoch": epoch + 1, "train_loss": loss_total / count, "val_dice": val_dice,
              "val_curves": val_curves, "val_box": val_boxes, "images_per_s": count / result.seconds, "seconds": round(result.seconds, 2),
              "lr": run.optimizer.param_groups[0]["lr"]}
    run.history.append(record)
    if not run.ctx.main:
        return
    log_epoch(run, record)
    save_run(run, epoch + 1, is_best, val_dice)
    if progress is not None:
        progress(epoch, steps, record["train_loss"], {"epochs": cfg.epochs, "steps": steps,
                                                      "images_per_s": record["images_per_s"],
                                                      "train_loss": record["train_loss"], "val_dice": val_dice})


def log_epoch(run: TrainRun, record: Dict[str, Any]) -> None:
    epoch, val_dice = record["epoch"], record["val_dice"]
    log.info("epoch %d/%d: loss %.4f, val score %s, %.2f images/s%s", epoch, run.cfg.epochs,
             record["train_loss"], "n/a" if val_dice is None else f"{val_dice:.4f}", record["images_per_s"],
             "".join(f"\n  {n}: Dice by clicks " + " ".join(f"{d:.3f}" for d in c)
                     + (f", box {record['val_box'][n]:.3f}" if n in record.get("val_box", {}) else "")
                     for n, c in record["val_curves"].items()))
    if run.writer is not None:
        run.writer.add_scalar("epoch/train_loss", record["train_loss"], epoch)
        run.writer.add_scalar("epoch/images_per_s", record["images_per_s"], epoch)
        if val_dice is not None:
            run.writer.add_scalar("epoch/val_dice", val_dice, epoch)
        run.writer.flush()
