"""The SAMUS training loss: 0.8 soft Dice + 0.2 BCE-with-logits (pos_weight 2) on the 128 x 128 logits.

`iou_head_loss` is an optional extra for models trained from scratch: the authors keep SAM's pretrained
IoU head frozen, but a new model's head must learn to predict the quality of its own mask (SAM's recipe:
mean squared error against the mask's actual IoU)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """1 - (2 sum(p t) + s) / (sum(p^2) + sum(t^2) + s) with p = sigmoid(logits); the sums run over the
    whole batch (the authors' choice), not per image."""
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + smooth) / ((p * p).sum() + (target * target).sum() + smooth)


class SamusLoss(nn.Module):
    def __init__(self, dice_weight: float = 0.8, bce_weight: float = 0.2, pos_weight: float = 2.0,
                 smooth: float = 1e-5):
        super().__init__()
        self.dice_weight, self.bce_weight, self.smooth = dice_weight, bce_weight, smooth
        self.register_buffer("pos_weight", torch.tensor([pos_weight]), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: B x 1 x h x w (target {0, 1}, already resized to the logits with nearest)."""
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        logits, target = logits.float(), target.float()  # bf16 logits lose too much precision for the sums
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight.to(logits.device))
        return self.dice_weight * soft_dice_loss(logits, target, self.smooth) + self.bce_weight * bce


def iou_head_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between the predicted IoU (B x 1) and the IoU of the thresholded mask with the target."""
    with torch.no_grad():
        pred = (logits.float() > 0).flatten(1)
        gt = target.flatten(1) > 0.5
        inter = (pred & gt).sum(1).float()
        union = (pred | gt).sum(1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return F.mse_loss(iou_pred.float().flatten(), iou)


def per_sample_soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice of each sample (B) of B x 1 x h x w logits against {0, 1} targets."""
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    return (2 * (p * t).sum(1) + smooth) / ((p * p).sum(1) + (t * t).sum(1) + smooth)


def regression_loss(previous: torch.Tensor, current: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How much a corrective round made the mask worse: mean over samples of max(0, soft Dice of the
    previous round (a constant) - soft Dice of this round). A click should never cost Dice; the main loss
    alone lets a round trade a good mask for an average one."""
    before = per_sample_soft_dice(previous.detach(), target)
    return torch.relu(before - per_sample_soft_dice(current, target)).mean()
