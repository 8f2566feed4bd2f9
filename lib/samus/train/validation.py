"""Validation: Dice after 1..k simulated clicks per data set, and the score that picks the best checkpoint."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..click_simulation import click_curve


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


def validation_summary(sums: torch.Tensor, names: Sequence[str]) -> Tuple[Optional[float], Dict[str, List[float]]]:
    """(selection score, per-data-set Dice curve). The score is the mean over data sets of the mean of the
    first- and last-click Dice: a model must start well and improve with clicks on every organ."""
    curves = {name: (sums[i, :-1] / sums[i, -1]).tolist() for i, name in enumerate(names) if sums[i, -1] > 0}
    if not curves:
        return None, {}
    return float(np.mean([(c[0] + c[-1]) / 2 for c in curves.values()])), curves


def validate_run(model, data, cfg, ctx, device) -> Tuple[Optional[float], Dict[str, List[float]]]:
    """The validation score and curves of this epoch, summed over all processes ((None, {}) without data)."""
    if data.val_loader is None:
        return None, {}
    sums = validate(model, data.val_loader, device, cfg.bf16, cfg.val_clicks, len(data.val_names))
    sums = torch.tensor(ctx.sum(sums.flatten().tolist(), device), dtype=torch.float64).view_as(sums)
    return validation_summary(sums, data.val_names)
