"""The data of a training run: datasets, the balanced sampler and the loaders (validation split by rank)."""
import logging
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from torch.utils.data import DataLoader, Subset

from ..build import parameter_report
from ..data.dataset import SamusDataset
from ..data.items import Item
from ..data.sampler import BalancedSampler
from .config import TrainConfig
from .distributed import DistributedContext

log = logging.getLogger("samus.train")


@dataclass
class TrainData:
    train_ds: SamusDataset
    val_ds: Optional[SamusDataset]
    sampler: BalancedSampler
    loader: DataLoader
    val_loader: Optional[DataLoader]
    val_names: List[str]
    steps: int  # steps per epoch


def make_loader(ds, batch_size: int, sampler, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=False, pin_memory=False, drop_last=False)


def make_datasets(cfg: TrainConfig, model, features, train_items: Sequence[Item], val_items: Sequence[Item]):
    """-> (training dataset, validation dataset or None), on the model's canvas."""
    on_canvas = dict(model=model if model.arch != "samus" else None, features=features)
    train_ds = SamusDataset(train_items, train=True, augment=cfg.augment, clicks=cfg.clicks,
                            neg_clicks=cfg.neg_clicks, seed=cfg.seed, prompts=cfg.prompts,
                            components=cfg.components, min_fraction=cfg.min_target_fraction,
                            box_prob=cfg.box_prob, views=cfg.views, **on_canvas)
    val_ds = SamusDataset(val_items, train=False, components=cfg.components,
                          min_fraction=cfg.min_target_fraction, **on_canvas) if val_items else None
    return train_ds, val_ds


def balanced_sampler(cfg: TrainConfig, train_ds: SamusDataset, ctx: DistributedContext) -> BalancedSampler:
    weights = dict(cfg.data_weights or {})
    unknown = set(weights) - set(train_ds.dataset_names)
    if unknown:
        raise ValueError(f"weights for unknown data sets {sorted(unknown)} (have {train_ds.dataset_names})")
    return BalancedSampler(train_ds.sample_dataset, [weights.get(n, 1.0) for n in train_ds.dataset_names],
                           cfg.samples_per_epoch or len(train_ds), cfg.seed, ctx.rank, ctx.world)


def training_data(cfg: TrainConfig, model, features, train_items: Sequence[Item], val_items: Sequence[Item],
                  ctx: DistributedContext, started: float) -> TrainData:
    train_ds, val_ds = make_datasets(cfg, model, features, train_items, val_items)
    sampler = balanced_sampler(cfg, train_ds, ctx)
    loader = make_loader(train_ds, cfg.batch_size, sampler, cfg.num_workers)
    val_loader = None
    if val_ds is not None:  # each rank scores its share; the sums are reduced
        val_loader = make_loader(Subset(val_ds, range(ctx.rank, len(val_ds), ctx.world)), cfg.val_batch_size, None,
                                 cfg.num_workers)
    steps = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    data = TrainData(train_ds, val_ds, sampler, loader, val_loader,
                     val_ds.dataset_names if val_ds is not None else [], steps)
    if ctx.main:
        log.info("data: %d training and %d validation samples decoded in %.1f s (data sets: %s)", len(train_ds),
                 len(val_ds) if val_ds else 0, time.time() - started,
                 ", ".join(f"{n} {train_ds.sample_dataset.count(i)}" for i, n in enumerate(train_ds.dataset_names)))
        log.info("model %s (%s): %s", model.config_name, cfg.mode, parameter_report(model))
    return data
