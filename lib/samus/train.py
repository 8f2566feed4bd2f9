"""Training SAMUS: the one implementation behind `samus train` and the MONAI Label trainer.

The authors' recipe: Adam, one random positive click per sample, 0.8 soft Dice + 0.2 BCE on the 128 x 128
logits, validation Dice with the deterministic middle click every epoch, best checkpoint by mean val Dice.
Runs on CPU or GPU, optionally under bf16 autocast, and data-parallel when started by torchrun
(gloo on CPU, nccl on CUDA; only rank 0 writes files).
"""
import argparse
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .atomic import atomic_path
from .build import build_samus, freeze_for_training, parameter_report
from .checkpoint import read_checkpoint, save_checkpoint
from .data import Item, SamusDataset, detect_layout, load_items, pair_items
from .losses import SamusLoss, iou_head_loss

log = logging.getLogger("samus.train")

# progress(epoch, step, loss, metrics): epoch is 0-based; step counts finished steps of the epoch (1-based);
# metrics holds "epochs", "steps", "images_per_s" and, at the end of an epoch (step == steps),
# "train_loss" and "val_dice" (None without validation data).
ProgressFn = Callable[[int, int, float, Dict[str, Any]], None]


@dataclass
class TrainConfig:
    config: Optional[str] = None  # None: the checkpoint's (vit_b for SAM / official SAMUS files), else "small"
    checkpoint: Optional[str] = None  # weights to start from (ours, official SAMUS or SAM ViT-B)
    mode: str = "adapter"  # "adapter": the official freezing rule; "full": train everything
    lr: float = 1e-4
    batch_size: int = 8
    epochs: int = 10
    num_workers: int = 0
    seed: int = 1234
    bf16: bool = False  # autocast to bfloat16 (CPU or CUDA)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    out_dir: str = "runs/samus"
    resume: Optional[str] = None  # a last.pt written by an earlier run
    clicks: int = 1  # positive clicks per training sample (the authors use 1)
    iou_loss_weight: float = 0.0  # > 0 also trains the IoU head (needed when training from scratch)
    neg_clicks: int = 0
    box: bool = False  # also feed the jittered box prompt
    augment: bool = True
    tensorboard: bool = True
    max_steps_per_epoch: Optional[int] = None
    val_batch_size: int = 16
    threads: Optional[int] = None  # torch.set_num_threads; None keeps the current setting
    progress_bar: bool = True
    data: Optional[str] = None  # free text recorded in the checkpoint provenance (e.g. the data folder)


# ----------------------------------------------------------------------------------------------- plumbing
@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: Sequence[float], device) -> List[float]:
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def _pick_device(name: str) -> torch.device:
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0)
        torch.cuda.set_device(device)
    return device


def _atomic_write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2))


def _build_model(cfg: TrainConfig):
    """-> (model, resume state or None)."""
    if cfg.resume:
        ckpt = read_checkpoint(cfg.resume)
        extra = ckpt.extra or {}
        if ckpt.kind != "samus" or "optimizer" not in extra:
            raise ValueError(f"{cfg.resume} is not a resumable checkpoint (use a last.pt written by samus train)")
        if extra.get("mode") not in (None, cfg.mode):
            raise ValueError(f"{cfg.resume} was trained with mode {extra['mode']!r}, not {cfg.mode!r}")
        return build_samus(config=None, checkpoint=ckpt), extra
    # No configuration: the checkpoint's own (official SAMUS and SAM files are vit_b), else the small model.
    config = "small" if cfg.config is None and cfg.checkpoint is None else cfg.config
    return build_samus(config=config, checkpoint=cfg.checkpoint), None


def _loader(ds, batch_size: int, sampler, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=False, pin_memory=False, drop_last=False)


# ----------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model, loader, device: torch.device, bf16: bool = False) -> Tuple[float, int]:
    """(sum of per-image Dice, number of images): middle click, 256 x 256 logits > 0 vs the 256 mask.
    An image with empty mask and empty prediction scores 1 (the authors' smoothing)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            low, _ = model(batch["image"].to(device), batch["point_coords"].to(device), batch["point_labels"].to(device))
        pred = model.upscale(low.float()) > 0
        gt = batch["mask"].to(device) > 0.5
        tp = (pred & gt).flatten(1).sum(1).double()
        fp_fn = (pred ^ gt).flatten(1).sum(1).double()
        total += ((2 * tp + 1e-5) / (2 * tp + fp_fn + 1e-5)).sum().item()
        count += len(tp)
    return total, count


# ----------------------------------------------------------------------------------------------- training
def train(cfg: TrainConfig, train_items: Sequence[Item], val_items: Optional[Sequence[Item]] = None,
          progress: Optional[ProgressFn] = None, should_stop: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Train and return {"best", "last" (checkpoint paths; best is None without validation data),
    "history" (one dict per epoch), "best_dice", "epochs_done", "stopped", "out_dir", "model" (the trained
    model in its final state, unwrapped)}.

    `progress` is called on rank 0 after every step (see ProgressFn); `should_stop()` is polled after every
    step and ends training early after writing last.pt (resumable from the last finished epoch).
    """
    if cfg.mode not in ("adapter", "full"):
        raise ValueError(f"unknown training mode {cfg.mode!r}; choose 'adapter' or 'full'")
    if cfg.batch_size < 1 or cfg.epochs < 0 or cfg.lr <= 0:
        raise ValueError(f"need batch_size >= 1, epochs >= 0, lr > 0 (got {cfg.batch_size}, {cfg.epochs}, {cfg.lr})")
    device = _pick_device(cfg.device)
    dd = _init_distributed(device)
    try:
        return _train(cfg, train_items, val_items or [], progress, should_stop, device, dd)
    finally:
        if dd.owns_group:
            dist.destroy_process_group()


def _train(cfg, train_items, val_items, progress, should_stop, device, dd: _Dist) -> Dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir).resolve()
    best_path, last_path = out / "best.pt", out / "last.pt"
    if dd.main:
        out.mkdir(parents=True, exist_ok=True)

    model, state = _build_model(cfg)
    freeze_for_training(model, cfg.mode)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"mode {cfg.mode!r} leaves no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    history: List[Dict[str, Any]] = []
    start_epoch, best_dice = 0, None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr
        start_epoch, history, best_dice = int(state["epoch"]), list(state.get("history", [])), state.get("best_dice")

    t0 = time.time()
    train_ds = SamusDataset(train_items, train=True, augment=cfg.augment, clicks=cfg.clicks,
                            neg_clicks=cfg.neg_clicks, seed=cfg.seed)
    val_ds = SamusDataset(val_items, train=False) if val_items else None
    sampler = DistributedSampler(train_ds, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=cfg.seed)
    loader = _loader(train_ds, cfg.batch_size, sampler, cfg.num_workers)
    val_loader = None
    if val_ds is not None:  # each rank scores its share; the sums are reduced
        val_loader = _loader(Subset(val_ds, range(dd.rank, len(val_ds), dd.world)), cfg.val_batch_size, None,
                             cfg.num_workers)
    steps = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    if dd.main:
        log.info("data: %d training and %d validation samples decoded in %.1f s", len(train_ds),
                 len(val_ds) if val_ds else 0, time.time() - t0)
        log.info("model %s (%s): %s", model.config_name, cfg.mode, parameter_report(model))

    net = model
    if dd.world > 1:
        # In full mode the IoU head and the unused prompt embeddings get no gradient; DDP must look for them.
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.mode == "full")
    criterion = SamusLoss().to(device)
    writer = None
    if dd.main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch * steps)

    def save(epoch_done: int, is_best: bool, val_dice) -> None:
        provenance = {
            "source": "samus train", "config": model.config_name, "mode": cfg.mode,
            "base_checkpoint": cfg.checkpoint, "data": cfg.data, "train_samples": len(train_ds),
            "val_samples": len(val_ds) if val_ds else 0, "epochs": epoch_done, "lr": cfg.lr,
            "batch_size": cfg.batch_size * dd.world, "seed": cfg.seed, "val_dice": val_dice,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": str(torch.__version__),
        }
        extra = {"epoch": epoch_done, "history": history, "best_dice": best_dice, "mode": cfg.mode,
                 "train_config": dataclasses.asdict(cfg)}
        save_checkpoint(last_path, model, provenance, dict(extra, optimizer=optimizer.state_dict()))
        if is_best:
            save_checkpoint(best_path, model, provenance, extra)
        _atomic_write_json(out / "history.json", history)

    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, seen, t_epoch = 0.0, 0, time.time()
        bar = _progress_bar(dd.main and cfg.progress_bar, steps, f"epoch {epoch + 1}/{cfg.epochs}")
        for step, batch in enumerate(loader, 1):
            images = batch["image"].to(device, non_blocking=True)
            boxes = batch["box"].to(device) if cfg.box else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                low, iou = net(images, batch["point_coords"].to(device), batch["point_labels"].to(device), boxes)
            target = batch["low_mask"].to(device)
            loss = criterion(low, target)
            if cfg.iou_loss_weight:
                loss = loss + cfg.iou_loss_weight * iou_head_loss(low, iou, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            n = images.shape[0]
            loss_sum += loss.item() * n
            seen += n
            rate = seen * dd.world / max(time.time() - t_epoch, 1e-9)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{rate:.2f}", refresh=False)
                bar.update(1)
            if writer is not None:
                writer.add_scalar("train/loss", loss.item(), epoch * steps + step)
            if dd.main and progress is not None and step < steps:
                progress(epoch, step, loss_sum / seen, {"epochs": cfg.epochs, "steps": steps, "images_per_s": rate})
            if should_stop is not None and dd.sum([float(bool(should_stop()))], device)[0] > 0:
                stopped = True
                break
            if step >= steps:
                break
        if bar is not None:
            bar.close()
        if stopped:
            break

        seconds = time.time() - t_epoch
        loss_total, count = dd.sum([loss_sum, seen], device)
        val_dice = None
        if val_loader is not None:
            dice_sum, n_val = dd.sum(validate(model, val_loader, device, cfg.bf16), device)
            val_dice = dice_sum / n_val
        is_best = val_dice is not None and (best_dice is None or val_dice > best_dice)
        if is_best:
            best_dice = val_dice
        record = {"epoch": epoch + 1, "train_loss": loss_total / count, "val_dice": val_dice,
                  "images_per_s": count / seconds, "seconds": round(seconds, 2), "lr": cfg.lr}
        history.append(record)
        if dd.main:
            log.info("epoch %d/%d: loss %.4f, val Dice %s, %.2f images/s", epoch + 1, cfg.epochs,
                     record["train_loss"], "n/a" if val_dice is None else f"{val_dice:.4f}", record["images_per_s"])
            if writer is not None:
                writer.add_scalar("epoch/train_loss", record["train_loss"], epoch + 1)
                writer.add_scalar("epoch/images_per_s", record["images_per_s"], epoch + 1)
                if val_dice is not None:
                    writer.add_scalar("epoch/val_dice", val_dice, epoch + 1)
                writer.flush()
            save(epoch + 1, is_best, val_dice)
            if progress is not None:
                progress(epoch, steps, record["train_loss"], {"epochs": cfg.epochs, "steps": steps,
                                                              "images_per_s": record["images_per_s"],
                                                              "train_loss": record["train_loss"], "val_dice": val_dice})
        dd.barrier()

    epochs_done = len(history)
    if dd.main and (stopped or not last_path.exists()):
        save(epochs_done, False, history[-1]["val_dice"] if history else None)
    dd.barrier()
    if writer is not None:
        writer.close()
    return {"best": str(best_path) if best_dice is not None else None, "last": str(last_path),
            "history": history, "best_dice": best_dice, "epochs_done": epochs_done, "stopped": stopped,
            "out_dir": str(out), "model": model}


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=True)


# ----------------------------------------------------------------------------------------------- in-process API
def split_items(items: Sequence[Item], val_fraction: float, seed: int = 0) -> Tuple[List[Item], List[Item]]:
    """Random train/val split by image file (frames of one volume stay together)."""
    files = sorted({str(it["image"]) for it in items})
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1) (got {val_fraction})")
    n_val = int(round(len(files) * val_fraction))
    if val_fraction > 0 and len(files) > 1:
        n_val = min(max(n_val, 1), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    val_files = {files[i] for i in order[:n_val]}
    return [it for it in items if str(it["image"]) not in val_files], [it for it in items if str(it["image"]) in val_files]


def train_on_pairs(pairs: Sequence[Tuple[str, str]], val_pairs: Optional[Sequence[Tuple[str, str]]] = None,
                   val_fraction: float = 0.2, class_id: int = 1, progress: Optional[ProgressFn] = None,
                   should_stop: Optional[Callable[[], bool]] = None, **options) -> Dict[str, Any]:
    """Train on (image path, label path) pairs - 2D images or volumes (labelled frames only). Without
    `val_pairs`, `val_fraction` of the files is held out for validation. `options` are TrainConfig fields.
    This is what the MONAI Label trainer calls in-process."""
    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}")
    cfg = TrainConfig(**options)
    items = pair_items(pairs, class_id)
    if not items:
        raise ValueError("no labelled samples in the given image/label pairs")
    if val_pairs is not None:
        train_items, val_items = items, pair_items(val_pairs, class_id)
    else:
        train_items, val_items = split_items(items, val_fraction, cfg.seed)
    return train(cfg, train_items, val_items, progress=progress, should_stop=should_stop)


# ----------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune SAMUS on a folder of images and masks",
                              description="Train SAMUS (the authors' recipe: Adam, 1 random click, Dice+BCE). "
                              "Writes best.pt / last.pt (samus checkpoint format), history.json and "
                              "TensorBoard logs to --out. Use torchrun for data-parallel training.")
    p.add_argument("--data", required=True, help="images/ + masks/ folder (optional splits.json) or US30K root")
    p.add_argument("--layout", default="auto", choices=("auto", "folder", "us30k"))
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="'none' to skip validation")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="held-out fraction when the folder has no splits.json")
    p.add_argument("--class-id", type=int, default=1, help="label value to segment (folder layout)")
    p.add_argument("--config", default=None, help="vit_b, small or tiny (default: the checkpoint's; vit_b for SAM / official "
                   "SAMUS files; small without --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="weights to start from (samus, official SAMUS or SAM ViT-B)")
    p.add_argument("--mode", default="adapter", choices=("adapter", "full"),
                   help="adapter: official freezing rule; full: train every parameter")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/samus", help="output folder")
    p.add_argument("--resume", default=None, help="continue from a last.pt")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--clicks", type=int, default=1, help="positive clicks per sample")
    p.add_argument("--neg-clicks", type=int, default=0, help="negative clicks per sample")
    p.add_argument("--box", action="store_true", help="also prompt with a jittered box")
    p.add_argument("--iou-loss-weight", type=float, default=0.0,
                   help="also train the IoU head (MSE to the mask's IoU); use ~1 when training from scratch")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.set_defaults(func=run_cli)


def _cli_items(args) -> Tuple[List[Item], List[Item]]:
    layout = detect_layout(args.data) if args.layout == "auto" else args.layout
    has_splits = layout == "us30k" or (Path(args.data) / "splits.json").is_file()
    if not has_splits:
        items = load_items(args.data, None, layout, args.class_id)
        if args.val_split == "none":
            return items, []
        return split_items(items, args.val_fraction, args.seed)
    train_items = load_items(args.data, args.train_split, layout, args.class_id)
    val_items = [] if args.val_split == "none" else load_items(args.data, args.val_split, layout, args.class_id)
    return train_items, val_items


def run_cli(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.setLevel(logging.INFO)
    train_items, val_items = _cli_items(args)
    cfg = TrainConfig(
        config=args.config, checkpoint=args.checkpoint, mode=args.mode, lr=args.lr, batch_size=args.batch_size,
        epochs=args.epochs, num_workers=args.workers, seed=args.seed, bf16=args.bf16, device=args.device,
        out_dir=args.out, resume=args.resume, clicks=args.clicks, neg_clicks=args.neg_clicks, box=args.box,
        augment=not args.no_augment, tensorboard=not args.no_tensorboard,
        max_steps_per_epoch=args.max_steps_per_epoch, threads=args.threads, progress_bar=not args.no_progress,
        iou_loss_weight=args.iou_loss_weight,
        data=os.path.abspath(args.data),
    )
    result = train(cfg, train_items, val_items)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: result[k] for k in ("best", "last", "best_dice", "epochs_done", "stopped")}
        if result["history"]:
            summary["final"] = result["history"][-1]
        print(json.dumps(summary, indent=2))
    return 0
