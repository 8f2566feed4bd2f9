"""LiteMedSAM as its own teacher for boxes: fine-tuning its heads for clicks must not cost what a box gives.

The teacher is LiteMedSAM as shipped (frozen); on box-only first prompts the student's logits also learn
the teacher's probabilities for the same box on the same trunk features (soft targets, BCE).
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..click_simulation import compact_rows, decode_rows
from ..prompts import BOX_TL_LABEL
from .config import TrainConfig


def box_teacher(cfg: TrainConfig, model, device: torch.device) -> Optional[torch.nn.Module]:
    """The frozen teacher, or None when `box_teacher_weight` is 0."""
    if not cfg.box_teacher_weight:
        return None
    if model.arch != "lite_medsam":
        raise ValueError(f"box_teacher_weight needs a lite_medsam model (the teacher is LiteMedSAM), not {model.arch}")
    from ..build import build_lite_medsam

    teacher = build_lite_medsam().to(device).eval()
    teacher.requires_grad_(False)
    return teacher


def box_teacher_loss(teacher, features: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                     first_logits: torch.Tensor) -> torch.Tensor:
    """BCE of the first-round logits of the box-only samples against the teacher's probabilities for the
    same box on the (raw trunk) `features`; 0 when the batch has no box-only sample."""
    clicks = (labels == 0) | (labels == 1)
    box_only = (labels == BOX_TL_LABEL).any(1) & ~clicks.any(1)
    if not bool(box_only.any()):
        return first_logits.sum() * 0.0
    with torch.no_grad():
        target, _ = decode_rows(teacher, features[box_only], *compact_rows(coords[box_only], labels[box_only]))
    return F.binary_cross_entropy_with_logits(first_logits[box_only].float(), torch.sigmoid(target.float()))
