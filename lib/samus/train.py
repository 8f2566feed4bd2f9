"""Training SAMUS: the one implementation behind `samus train` and the MONAI Label trainer.

The authors' recipe (Adam, 0.8 soft Dice + 0.2 BCE on the 128 x 128 logits) with click simulation
(`samus.interactive`): each sample starts from a varied first prompt (one click, several positive and
negative clicks, or a box), then 0..`max_rounds` corrective rounds add a click in the largest error region
and feed the previous logits back; the loss covers the last round. `prompts="fixed", max_rounds=0` is the
authors' original single-click recipe. Several data sets train together with balanced sampling; every class
and separate structure of a label is its own target. Validation scores Dice after 1..`val_clicks` clicks
(deterministic corrective clicks) per data set every epoch; the best checkpoint has the highest mean.
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
from torch.utils.data import DataLoader, Subset

from .atomic import atomic_path
from .build import build_model, build_samus, freeze_for_training, parameter_report
from .checkpoint import read_checkpoint, save_checkpoint
from .data import (ALL_CLASSES, BalancedSampler, Item, SamusDataset, dataset_name, detect_layout, load_items,
                   pair_items, parse_data_spec)
from .interactive import InteractiveSession, click_curve, click_logits
from .losses import SamusLoss, iou_head_loss
from .prompts import BOX_BR_LABEL, BOX_TL_LABEL

log = logging.getLogger("samus.train")

# progress(epoch, step, loss, metrics): epoch is 0-based; step counts finished steps of the epoch (1-based);
# metrics holds "epochs", "steps", "images_per_s" and, at the end of an epoch (step == steps),
# "train_loss" and "val_dice" (None without validation data).
ProgressFn = Callable[[int, int, float, Dict[str, Any]], None]


@dataclass
class TrainConfig:
    arch: str = "samus"  # "samus", or "lite_medsam": SAMUS heads on the frozen LiteMedSAM trunk (samus.build)
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
    # Click simulation (see samus.interactive).
    prompts: str = "interactive"  # "interactive": varied first prompts; "fixed": clicks / neg_clicks / box
    max_rounds: int = 3  # corrective rounds per step, drawn uniformly from 0..max_rounds
    mask_prob: float = 0.7  # chance a corrective round feeds the previous logits back as mask_input
    click_spread: float = 0.5  # simulated clicks land at >= (1 - spread) x the deepest error-pixel depth
    loss_every_round: bool = False  # loss on every round (slower: all rounds keep gradients)
    components: bool = True  # every separate structure of a class is its own target
    min_target_fraction: float = 0.001  # smaller structures (fraction of the image) are not targets
    data_weights: Optional[Dict[str, float]] = None  # sampling weight per data set name (default: equal)
    samples_per_epoch: Optional[int] = None  # default: the number of training samples
    val_clicks: int = 3  # validation Dice after 1..val_clicks clicks
    channels_last: bool = False  # channels-last memory format for the image encoder
    compile: bool = False  # torch.compile the image encoder
    click_loss_weight: float = 0.0  # > 0: BCE that the mask holds every positive click and no negative one
    lr_schedule: str = "constant"  # "constant" or "cosine" (lr * (0.05 + 0.95 * half-cosine) over epochs)
    box_prob: float = 0.2  # chance that an interactive first prompt is a jittered box (half of them + a click)
    # Frozen-trunk models (lite_medsam) train on the trunk's cached output: the folder of the feature cache
    # (filled first for whatever is missing) and the cached views drawn as augmentation.
    feature_cache: Optional[str] = None
    views: Tuple[str, ...] = ("orig",)


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
        return build_model(checkpoint=ckpt), extra
    if cfg.arch != "samus":
        return build_model(cfg.arch, config=cfg.config, checkpoint=cfg.checkpoint), None
    # No configuration: the checkpoint's own (official SAMUS and SAM files are vit_b), else the small model.
    config = "small" if cfg.config is None and cfg.checkpoint is None else cfg.config
    return build_samus(config=config, checkpoint=cfg.checkpoint), None


def _feature_cache(cfg: TrainConfig, model, train_items: Sequence[Item], val_items: Sequence[Item]):
    """The filled feature cache of a frozen-trunk model (None for models whose encoder trains): every cached
    view of the training images, the plain view of the validation images."""
    if not hasattr(model.image_encoder, "trunk"):
        if cfg.feature_cache:
            raise ValueError(f"{model.arch} trains its image encoder; feature_cache needs a frozen-trunk model")
        return None
    if not cfg.feature_cache:
        raise ValueError(f"{model.arch} trains on cached trunk features: set feature_cache to a folder")
    from .feature_cache import FeatureCache

    cache = FeatureCache(cfg.feature_cache, model)
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    for items, views in ((train_items, cfg.views), (val_items, ("orig",))):
        todo = cache.missing(items, views)
        if todo:
            log.info("feature cache %s: encoding %d image views (about 1 s each on a CPU)", cache.root, len(todo))
            cache.fill(items, views, dtype=dtype)
    return cache


def _loader(ds, batch_size: int, sampler, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=False, pin_memory=False, drop_last=False)


# ----------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model, loader, device: torch.device, bf16: bool = False, clicks: int = 1,
             n_datasets: int = 1) -> torch.Tensor:
    """n_datasets x (clicks + 1) float64 sums: per data set, Dice summed over targets after 1..clicks clicks
    (the middle click, then deterministic corrective clicks with the previous mask fed back; 256 x 256
    logits > 0 against the 256 mask; empty vs empty scores 1, the authors' smoothing), and the count."""
    model.eval()
    sums = torch.zeros(n_datasets, clicks + 1, dtype=torch.float64)
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            dice = click_curve(model, batch["image"].to(device) if "image" in batch else None,
                               batch["point_coords"].to(device), batch["point_labels"].to(device),
                               batch["mask"].to(device), clicks,
                               features=batch["embedding"].to(device).float() if "embedding" in batch else None)
        rows = torch.cat([dice.cpu(), torch.ones(len(dice), 1, dtype=torch.float64)], 1)
        sums.index_add_(0, torch.as_tensor(batch["dataset"]), rows)
    return sums


def _val_summary(sums: torch.Tensor, names: Sequence[str]) -> Tuple[Optional[float], Dict[str, List[float]]]:
    """(selection score, per-data-set Dice curve). The score is the mean over data sets of the mean of the
    first- and last-click Dice: a model must start well and improve with clicks on every organ."""
    curves = {name: (sums[i, :-1] / sums[i, -1]).tolist() for i, name in enumerate(names) if sums[i, -1] > 0}
    if not curves:
        return None, {}
    return float(np.mean([(c[0] + c[-1]) / 2 for c in curves.values()])), curves


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
    if cfg.max_rounds < 0 or cfg.val_clicks < 1:
        raise ValueError(f"need max_rounds >= 0 and val_clicks >= 1 (got {cfg.max_rounds}, {cfg.val_clicks})")
    _epoch_lr(cfg, 0)  # an unknown schedule fails now, not after the data is decoded
    if cfg.samples_per_epoch is not None and cfg.samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be >= 1 (got {cfg.samples_per_epoch})")
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
    features = _feature_cache(cfg, model, train_items, val_items)
    on_canvas = dict(model=model if model.arch != "samus" else None, features=features)
    train_ds = SamusDataset(train_items, train=True, augment=cfg.augment, clicks=cfg.clicks,
                            neg_clicks=cfg.neg_clicks, seed=cfg.seed, prompts=cfg.prompts,
                            components=cfg.components, min_fraction=cfg.min_target_fraction,
                            box_prob=cfg.box_prob, views=cfg.views, **on_canvas)
    val_ds = SamusDataset(val_items, train=False, components=cfg.components,
                          min_fraction=cfg.min_target_fraction, **on_canvas) if val_items else None
    weights = dict(cfg.data_weights or {})
    unknown = set(weights) - set(train_ds.dataset_names)
    if unknown:
        raise ValueError(f"weights for unknown data sets {sorted(unknown)} (have {train_ds.dataset_names})")
    sampler = BalancedSampler(train_ds.sample_dataset, [weights.get(n, 1.0) for n in train_ds.dataset_names],
                              cfg.samples_per_epoch or len(train_ds), cfg.seed, dd.rank, dd.world)
    loader = _loader(train_ds, cfg.batch_size, sampler, cfg.num_workers)
    val_names = val_ds.dataset_names if val_ds is not None else []
    val_loader = None
    if val_ds is not None:  # each rank scores its share; the sums are reduced
        val_loader = _loader(Subset(val_ds, range(dd.rank, len(val_ds), dd.world)), cfg.val_batch_size, None,
                             cfg.num_workers)
    steps = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    if dd.main:
        log.info("data: %d training and %d validation samples decoded in %.1f s (data sets: %s)", len(train_ds),
                 len(val_ds) if val_ds else 0, time.time() - t0,
                 ", ".join(f"{n} {train_ds.sample_dataset.count(i)}" for i, n in enumerate(train_ds.dataset_names)))
        log.info("model %s (%s): %s", model.config_name, cfg.mode, parameter_report(model))

    if cfg.channels_last and features is None:
        model.image_encoder.to(memory_format=torch.channels_last)
    if cfg.compile and features is None:
        model.image_encoder.compile()  # in place: parameter names (and checkpoints) stay the same
    net = InteractiveSession(model, cfg.mask_prob, cfg.click_spread, cfg.loss_every_round)
    if dd.world > 1:
        # In full mode the IoU head and the unused prompt embeddings get no gradient; DDP must look for them.
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.mode == "full")
    criterion = SamusLoss().to(device)
    writer = None
    if dd.main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch * steps)

    def save(epoch_done: int, is_best: bool, val_dice) -> None:
        provenance = {
            "source": "samus train", "arch": model.arch, "config": model.config_name, "mode": cfg.mode,
            "base_checkpoint": cfg.checkpoint, "data": cfg.data, "train_samples": len(train_ds),
            "val_samples": len(val_ds) if val_ds else 0, "epochs": epoch_done, "lr": cfg.lr,
            "batch_size": cfg.batch_size * dd.world, "seed": cfg.seed, "val_dice": val_dice,
            "prompts": cfg.prompts, "max_rounds": cfg.max_rounds, "mask_prob": cfg.mask_prob,
            "data_weights": cfg.data_weights, "val_curves": history[-1].get("val_curves") if history else None,
            "box_prob": cfg.box_prob, "views": list(cfg.views),
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
        lr = _epoch_lr(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, seen, t_epoch = 0.0, 0, time.time()
        bar = _progress_bar(dd.main and cfg.progress_bar, steps, f"epoch {epoch + 1}/{cfg.epochs}")
        for step, batch in enumerate(loader, 1):
            images = batch["image"].to(device, non_blocking=True) if "image" in batch else None
            feats = batch["embedding"].to(device).float() if "embedding" in batch else None
            if cfg.channels_last and images is not None:
                images = images.contiguous(memory_format=torch.channels_last)
            coords, labels = _prompt_rows(batch, cfg.box and cfg.prompts == "fixed")
            rng = np.random.default_rng([cfg.seed, epoch, step, dd.rank])  # resumed runs repeat the clicks
            rounds = int(rng.integers(0, cfg.max_rounds + 1))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                outputs = net(images, coords.to(device), labels.to(device), batch["mask"].to(device), rounds, rng,
                              feats)
            target = batch["low_mask"].to(device)
            loss = 0.0
            for low, iou, final_coords, final_labels in outputs:
                loss = loss + criterion(low, target)
                if cfg.iou_loss_weight:
                    loss = loss + cfg.iou_loss_weight * iou_head_loss(low, iou, target)
                if cfg.click_loss_weight:
                    at_clicks, click_targets = click_logits(low, final_coords, final_labels, model.img_size)
                    loss = loss + cfg.click_loss_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                        at_clicks, click_targets)
            loss = loss / len(outputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            n = len(batch["mask"])
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
        val_dice, val_curves = None, {}
        if val_loader is not None:
            sums = validate(model, val_loader, device, cfg.bf16, cfg.val_clicks, len(val_names))
            sums = torch.tensor(dd.sum(sums.flatten().tolist(), device), dtype=torch.float64).view_as(sums)
            val_dice, val_curves = _val_summary(sums, val_names)
        is_best = val_dice is not None and (best_dice is None or val_dice > best_dice)
        if is_best:
            best_dice = val_dice
        record = {"epoch": epoch + 1, "train_loss": loss_total / count, "val_dice": val_dice,
                  "val_curves": val_curves, "images_per_s": count / seconds, "seconds": round(seconds, 2),
                  "lr": lr}
        history.append(record)
        if dd.main:
            log.info("epoch %d/%d: loss %.4f, val score %s, %.2f images/s%s", epoch + 1, cfg.epochs,
                     record["train_loss"], "n/a" if val_dice is None else f"{val_dice:.4f}", record["images_per_s"],
                     "".join(f"\n  {n}: Dice by clicks " + " ".join(f"{d:.3f}" for d in c)
                             for n, c in val_curves.items()))
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


def _epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * epoch / max(cfg.epochs, 1))))
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; choose constant or cosine")


def _prompt_rows(batch, box: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The batch's first prompts as padded rows; with `box` the jittered box is appended as corner rows."""
    coords, labels = batch["point_coords"], batch["point_labels"]
    if box:
        b = batch["box"]
        corners = torch.stack([b[:, :2], b[:, 2:]], 1)
        corner_labels = torch.tensor([BOX_TL_LABEL, BOX_BR_LABEL]).expand(len(b), 2)
        coords, labels = torch.cat([coords, corners], 1), torch.cat([labels, corner_labels], 1)
    return coords, labels


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
    p.add_argument("--arch", default="samus", choices=("samus", "lite_medsam"),
                   help="samus (default): SAMUS trained end to end; lite_medsam: SAMUS heads and additions on the "
                        "frozen LiteMedSAM trunk, trained on its cached features (--feature-cache)")
    p.add_argument("--config", default=None, help="vit_b, small or tiny for samus (default: the checkpoint's; vit_b for "
                   "SAM / official SAMUS files; small without --checkpoint); lite_medsam or lite_medsam_samus (with "
                   "SAMUS's feature adapter and CNN branch) for lite_medsam")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="folder of the frozen trunk's cached features (lite_medsam); missing entries are encoded "
                        "first, and later runs reuse them")
    p.add_argument("--views", default="orig", help="cached views drawn as augmentation: orig or orig,hflip")
    p.add_argument("--box-prob", type=float, default=0.2,
                   help="chance that an interactive first prompt is a jittered box (default 0.2)")
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
    p.add_argument("--prompts", default="interactive", choices=("interactive", "fixed"),
                   help="first prompt: interactive = one click, several +/- clicks or a box at random (default); "
                        "fixed = --clicks / --neg-clicks (/ --box), the authors' rule")
    p.add_argument("--clicks", type=int, default=1, help="positive clicks per sample (--prompts fixed)")
    p.add_argument("--neg-clicks", type=int, default=0, help="negative clicks per sample (--prompts fixed)")
    p.add_argument("--box", action="store_true", help="also prompt with a jittered box (--prompts fixed)")
    p.add_argument("--max-rounds", type=int, default=3,
                   help="corrective click rounds per step, drawn from 0..N (default 3; 0: no click simulation)")
    p.add_argument("--mask-prob", type=float, default=0.7,
                   help="chance that a corrective round feeds the previous mask back (default 0.7)")
    p.add_argument("--click-spread", type=float, default=0.5,
                   help="simulated clicks land at >= (1 - s) x the deepest error-pixel depth (default 0.5)")
    p.add_argument("--loss-every-round", action="store_true", help="loss on every round, not only the last")
    p.add_argument("--no-components", action="store_true",
                   help="one target per class instead of one per separate structure")
    p.add_argument("--min-target-fraction", type=float, default=0.001,
                   help="structures smaller than this fraction of the image are not targets (default 0.001)")
    p.add_argument("--samples-per-epoch", type=int, default=None,
                   help="samples drawn per epoch (default: the number of training samples)")
    p.add_argument("--val-clicks", type=int, default=3, help="validation Dice after 1..N clicks (default 3)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for the encoder")
    p.add_argument("--compile", action="store_true", help="torch.compile the image encoder")
    p.add_argument("--click-loss-weight", type=float, default=0.0,
                   help="extra BCE on the logits under each click (positive inside, negative outside)")
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                   help="cosine: decay from --lr to 5%% of it over --epochs")
    p.add_argument("--iou-loss-weight", type=float, default=0.0,
                   help="also train the IoU head (MSE to the mask's IoU); use ~1 when training from scratch")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.set_defaults(func=run_cli)


def _folder_items(folder: str, args) -> Tuple[List[Item], List[Item]]:
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


def _cli_items(args) -> Tuple[List[Item], List[Item], Dict[str, float]]:
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
        tr, va = _folder_items(folder, args)
        train_items += [dict(it, dataset=name) for it in tr]
        val_items += [dict(it, dataset=name) for it in va]
    return train_items, val_items, weights


def run_cli(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.setLevel(logging.INFO)
    train_items, val_items, weights = _cli_items(args)
    cfg = TrainConfig(
        arch=args.arch, feature_cache=args.feature_cache, box_prob=args.box_prob,
        views=tuple(v.strip() for v in args.views.split(",") if v.strip()),
        config=args.config, checkpoint=args.checkpoint, mode=args.mode, lr=args.lr, batch_size=args.batch_size,
        epochs=args.epochs, num_workers=args.workers, seed=args.seed, bf16=args.bf16, device=args.device,
        out_dir=args.out, resume=args.resume, clicks=args.clicks, neg_clicks=args.neg_clicks, box=args.box,
        augment=not args.no_augment, tensorboard=not args.no_tensorboard,
        max_steps_per_epoch=args.max_steps_per_epoch, threads=args.threads, progress_bar=not args.no_progress,
        iou_loss_weight=args.iou_loss_weight,
        data=" ".join(os.path.abspath(parse_data_spec(d)[0]) for d in args.data),
        prompts=args.prompts, max_rounds=args.max_rounds, mask_prob=args.mask_prob, click_spread=args.click_spread,
        loss_every_round=args.loss_every_round, components=not args.no_components,
        min_target_fraction=args.min_target_fraction, data_weights=weights,
        samples_per_epoch=args.samples_per_epoch, val_clicks=args.val_clicks, channels_last=args.channels_last,
        compile=args.compile, click_loss_weight=args.click_loss_weight, lr_schedule=args.lr_schedule,
    )
    result = train(cfg, train_items, val_items)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: result[k] for k in ("best", "last", "best_dice", "epochs_done", "stopped")}
        if result["history"]:
            summary["final"] = result["history"][-1]
        print(json.dumps(summary, indent=2))
    return 0
