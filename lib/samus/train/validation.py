"""Validation: Dice after 1..k simulated clicks per data set, and the score that picks the best checkpoint."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..click_simulation import box_rows, embedding_click_curve, image_embeddings


@torch.no_grad()
def validate(model, loader, device: torch.device, bf16: bool = False, clicks: int = 1,
             n_datasets: int = 1, box: bool = False) -> torch.Tensor:
    """n_datasets x (clicks + 1) float64 sums: per data set, Dice summed over targets after 1..clicks clicks
    (the middle click, then deterministic corrective clicks with the previous mask fed back; 256 x 256
    logits > 0 against the 256 mask; empty vs empty scores 1, the authors' smoothing), with `box` then the
    Dice of the tight box alone, and the count."""
    model.eval()
    sums = torch.zeros(n_datasets, clicks + 1 + box, dtype=torch.float64)
    for batch in loader:
        images = batch["image"].to(device) if "image" in batch else None
        features = batch["embedding"].to(device).float() if "embedding" in batch else None
        masks = batch["mask"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            embeddings = image_embeddings(model, images, features)  # once for the clicks and the box
            dice = embedding_click_curve(model, embeddings, batch["point_coords"].to(device),
                                         batch["point_labels"].to(device), masks, clicks)
            if box:
                dice = torch.cat([dice, embedding_click_curve(model, embeddings, *box_rows(batch["box"].to(device)),
                                                              masks, 1)], 1)
        rows = torch.cat([dice.cpu(), torch.ones(len(dice), 1, dtype=torch.float64)], 1)
        sums.index_add_(0, torch.as_tensor(batch["dataset"]), rows)
    return sums


def validation_summary(sums: torch.Tensor, names: Sequence[str], box: bool = False
                       ) -> Tuple[Optional[float], Dict[str, List[float]], Dict[str, float]]:
    """(selection score, per-data-set Dice curve, per-data-set box Dice). The score is the mean over data
    sets of the mean of the first- and last-click Dice (with `box` also the box Dice): a model must start
    well, improve with clicks and (with `box`) keep its boxes on every organ."""
    mean = {name: (sums[i, :-1] / sums[i, -1]).tolist() for i, name in enumerate(names) if sums[i, -1] > 0}
    if not mean:
        return None, {}, {}
    curves = {n: m[:-1] if box else m for n, m in mean.items()}
    boxes = {n: m[-1] for n, m in mean.items()} if box else {}
    per_set = [[c[0], c[-1]] + ([boxes[n]] if box else []) for n, c in curves.items()]
    return float(np.mean([np.mean(v) for v in per_set])), curves, boxes


def validate_run(model, data, cfg, ctx, device) -> Tuple[Optional[float], Dict[str, List[float]], Dict[str, float]]:
    """The validation score, curves and box Dice of this epoch, summed over all processes ((None, {}, {})
    without data)."""
    if data.val_loader is None:
        return None, {}, {}
    sums = validate(model, data.val_loader, device, cfg.bf16, cfg.val_clicks, len(data.val_names), cfg.val_box)
    sums = torch.tensor(ctx.sum(sums.flatten().tolist(), device), dtype=torch.float64).view_as(sums)
    return validation_summary(sums, data.val_names, cfg.val_box)
