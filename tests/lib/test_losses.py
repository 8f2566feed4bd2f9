"""The training loss against a hand-computed case."""
import math

import pytest
import torch

from samus.losses import SamusLoss, soft_dice_loss


def _case():
    # p = sigmoid(logits) = [[1/2, 3/4], [1/4, 1/2]]; target = [[1, 1], [0, 0]]
    logits = torch.tensor([[[[0.0, math.log(3)], [-math.log(3), 0.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    return logits, target


def test_soft_dice_hand_computed():
    logits, target = _case()
    # sum(p t) = 1/2 + 3/4 = 1.25; sum(p^2) = 1/4 + 9/16 + 1/16 + 1/4 = 1.125; sum(t^2) = 2
    expected = 1 - (2 * 1.25 + 1e-5) / (1.125 + 2 + 1e-5)
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.2, abs=1e-5)


def test_total_loss_hand_computed():
    logits, target = _case()
    # BCE with pos_weight 2: positives cost -2 log p, negatives -log(1 - p); mean over the 4 pixels
    bce = (-2 * math.log(0.5) - 2 * math.log(0.75) - math.log(0.75) - math.log(0.5)) / 4
    dice = 1 - (2 * 1.25 + 1e-5) / (3.125 + 1e-5)
    expected = 0.8 * dice + 0.2 * bce
    assert SamusLoss()(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.307124, abs=1e-5)


def test_dice_sums_over_whole_batch_not_per_image():
    logits, target = _case()
    empty_logits = torch.full_like(logits, -20.0)
    batch_l, batch_t = torch.cat([logits, empty_logits]), torch.cat([target, torch.zeros_like(target)])
    # the near-empty second image adds ~0 to every sum, so the batch value equals the first image's
    assert soft_dice_loss(batch_l, batch_t).item() == pytest.approx(soft_dice_loss(logits, target).item(), abs=1e-6)
    per_image_mean = (soft_dice_loss(logits, target) + soft_dice_loss(empty_logits, torch.zeros_like(target))) / 2
    assert abs(per_image_mean.item() - soft_dice_loss(batch_l, batch_t).item()) > 0.05


def test_loss_gradient_and_bf16_input():
    logits, target = _case()
    logits = logits.clone().requires_grad_(True)
    SamusLoss()(logits, target).backward()
    assert logits.grad is not None and logits.grad[0, 0, 0, 0] < 0 < logits.grad[0, 0, 1, 0]
    lb = SamusLoss()(_case()[0].bfloat16(), target)
    assert lb.dtype == torch.float32 and lb.item() == pytest.approx(0.307124, abs=1e-2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        SamusLoss()(torch.zeros(1, 1, 128, 128), torch.zeros(1, 1, 256, 256))


def test_iou_head_loss_against_the_actual_iou():
    from samus.losses import iou_head_loss

    logits = torch.full((2, 1, 4, 4), -1.0)
    logits[0, 0, :2, :2] = 1.0  # 4 predicted pixels
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, :2, :] = 1.0  # 8 target pixels: IoU 4/8; image 1: both empty -> IoU 1
    iou_pred = torch.tensor([[0.25], [1.0]], requires_grad=True)
    loss = iou_head_loss(logits, iou_pred, target)
    assert loss.item() == pytest.approx(((0.25 - 0.5) ** 2 + 0) / 2)
    loss.backward()
    assert iou_pred.grad[0, 0] < 0  # pushes the low prediction up


def test_regression_loss_counts_only_rounds_that_made_the_mask_worse():
    from samus.losses import regression_loss

    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    good = (target * 2 - 1) * 6  # logits that match the target
    bad = torch.full_like(target, -6.0)  # an empty mask
    assert float(regression_loss(bad, good, target)) == 0.0  # better than before: no cost
    current = bad.clone().requires_grad_(True)
    loss = regression_loss(good.requires_grad_(True), current, target)
    assert float(loss) > 0.9
    loss.backward()
    assert good.grad is None and current.grad is not None  # the previous round is a constant


def test_regression_weight_needs_every_round():
    from samus.train import TrainConfig
    from samus.train.config import check_config

    with pytest.raises(ValueError, match="loss_every_round"):
        check_config(TrainConfig(regression_weight=1.0))
    check_config(TrainConfig(regression_weight=1.0, loss_every_round=True))
