"""One training step: the batch's prompts, the simulated session, the loss and the optimizer step.

`step_loss` is the whole per-step objective; a new loss term belongs there.
"""
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..click_simulation import box_rows, click_logits
from ..losses import iou_head_loss, regression_loss
from .box_teacher import box_teacher_loss
from .config import TrainConfig


def prompt_rows(batch, box: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The batch's first prompts as padded rows; with `box` the jittered box is appended as corner rows."""
    coords, labels = batch["point_coords"], batch["point_labels"]
    if box:
        corners, corner_labels = box_rows(batch["box"])
        coords, labels = torch.cat([coords, corners], 1), torch.cat([labels, corner_labels], 1)
    return coords, labels


def step_loss(outputs: Sequence[Tuple[torch.Tensor, ...]], target: torch.Tensor, criterion, cfg: TrainConfig,
              img_size: int) -> torch.Tensor:
    """The loss of one step, averaged over the rounds that carry one: SAMUS's Dice + BCE on the low-res
    logits, plus the optional IoU-head, click and regression terms. `outputs` are ClickSimulation's
    (low-res logits, IoU prediction, prompt coords, prompt labels) rows, one per round that carries a loss."""
    loss = 0.0
    for r, (low, iou, final_coords, final_labels) in enumerate(outputs):
        if cfg.regression_weight and r > 0:  # every round is here only with loss_every_round (check_config)
            loss = loss + cfg.regression_weight * regression_loss(outputs[r - 1][0], low, target)
        loss = loss + criterion(low, target)
        if cfg.iou_loss_weight:
            loss = loss + cfg.iou_loss_weight * iou_head_loss(low, iou, target)
        if cfg.click_loss_weight:
            at_clicks, click_targets = click_logits(low, final_coords, final_labels, img_size)
            loss = loss + cfg.click_loss_weight * F.binary_cross_entropy_with_logits(at_clicks, click_targets)
    return loss / len(outputs)


def train_step(run, batch, epoch: int, step: int) -> torch.Tensor:
    """Simulate a session on `batch`, take the loss and update the weights; -> the (detached) loss."""
    cfg, device = run.cfg, run.device
    images = batch["image"].to(device, non_blocking=True) if "image" in batch else None
    feats = batch["embedding"].to(device).float() if "embedding" in batch else None
    if cfg.channels_last and images is not None:
        images = images.contiguous(memory_format=torch.channels_last)
    coords, labels = (t.to(device) for t in prompt_rows(batch, cfg.box and cfg.prompts == "fixed"))
    rng = np.random.default_rng([cfg.seed, epoch, step, run.ctx.rank])  # resumed runs repeat the clicks
    rounds = int(rng.integers(0, cfg.max_rounds + 1))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        outputs = run.net(images, coords, labels, batch["mask"].to(device), rounds, rng, feats)
    loss = step_loss(outputs, batch["low_mask"].to(device), run.criterion, cfg, run.model.img_size)
    if run.teacher is not None and (cfg.loss_every_round or rounds == 0):  # outputs[0] is then the first round
        loss = loss + cfg.box_teacher_weight * box_teacher_loss(run.teacher, feats, coords, labels, outputs[0][0])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss.detach()
