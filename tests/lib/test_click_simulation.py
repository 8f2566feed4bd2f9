"""samus.click_simulation: corrective clicks, prompt rows, the simulated session, click curves."""
import numpy as np
import pytest
import torch

import samus
from samus.click_simulation import ClickSimulation, click_curve, click_logits, corrective_clicks, embed_points
from samus.prompts import PAD_LABEL, next_click

pytestmark = pytest.mark.usefixtures("one_thread")


def test_corrective_click_lands_in_the_largest_error_region_with_its_label():
    gt = np.zeros((64, 64), bool)
    gt[10:40, 10:40] = True
    pred = gt.copy()
    pred[10:40, 25:40] = False  # a large miss: positive click inside it
    pred[50:54, 50:54] = True  # a small false alarm
    rng = np.random.default_rng(0)
    for spread in (0.0, 0.5):
        for _ in range(20):
            x, y, label = next_click(pred, gt, rng, spread=spread)
            assert label == 1 and gt[y, x] and not pred[y, x]
            assert 27 <= x <= 37 and 12 <= y <= 37  # away from the region's border
    pred2 = gt.copy()
    pred2[40:60, 5:45] = True  # a false alarm larger than any miss: negative click
    x, y, label = next_click(pred2, gt, rng, spread=0.5)
    assert label == 0 and pred2[y, x] and not gt[y, x]
    # spread 0 is the deterministic deepest pixel, which the crop-based distance computes exactly
    from samus.prompts import interior_distance

    x, y, _ = next_click(pred2, gt)
    region = pred2 & ~gt
    assert interior_distance(region)[y, x] == interior_distance(region).max()


def test_batched_corrective_clicks_and_padding_for_perfect_samples(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    masks = torch.zeros(2, 1, 256, 256)
    masks[0, 0, 50:150, 60:160] = 1
    low = torch.full((2, 1, 128, 128), -10.0)  # predicts nothing: sample 0 misses, sample 1 is perfect
    coords, labels = corrective_clicks(model, low, masks, np.random.default_rng(1), spread=0.5)
    assert coords.shape == (2, 1, 2) and labels.tolist() == [[1], [PAD_LABEL]]
    x, y = coords[0, 0].long().tolist()
    assert masks[0, 0, y, x] == 1 and 70 <= x <= 150 and 60 <= y <= 140


def test_embed_points_matches_sams_prompt_encoder(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    pe = model.prompt_encoder
    pts = torch.tensor([[[10.0, 20.0], [100.0, 200.0]]])
    lab = torch.tensor([[1, 0]])
    box = torch.tensor([[5.0, 6.0, 120.0, 130.0]])
    with torch.no_grad():
        # clicks only: SAM pads one "not a point"
        ours = embed_points(pe, torch.cat([pts, torch.zeros(1, 1, 2)], 1), torch.cat([lab, torch.tensor([[-1]])], 1))
        sams, _ = pe(points=(pts, lab), boxes=None, masks=None)
        torch.testing.assert_close(ours, sams)
        # clicks + box: the box corners are rows labelled 2 and 3
        rows = torch.cat([pts, box.view(1, 2, 2)], 1)
        ours = embed_points(pe, rows, torch.tensor([[1, 0, 2, 3]]))
        sams, _ = pe(points=(pts, lab), boxes=box, masks=None)
        torch.testing.assert_close(ours, sams)


def test_session_forward_returns_the_rounds_that_carry_a_loss(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint)
    images = torch.rand(2, 1, 256, 256)
    masks = torch.zeros(2, 1, 256, 256)
    masks[:, :, 60:160, 60:160] = 1
    coords = torch.tensor([[[100.0, 100.0], [0.0, 0.0]]] * 2)
    labels = torch.tensor([[1, PAD_LABEL]] * 2)
    last = ClickSimulation(model)(images, coords, labels, masks, 3, np.random.default_rng(0))
    assert len(last) == 1 and last[0][2].shape[1] == 1 + 3  # the click and three corrective ones (padding is SAM's, at decode)
    assert last[0][0].requires_grad
    every = ClickSimulation(model, loss_every_round=True)(images, coords, labels, masks, 2, np.random.default_rng(0))
    assert len(every) == 3 and all(o[0].requires_grad for o in every)
    at, target = click_logits(last[0][0], last[0][2], last[0][3])
    assert at.shape == target.shape and set(target.tolist()) <= {0.0, 1.0} and len(at) >= 2


def test_click_curve_of_a_perfect_model_is_flat_at_one(tiny_checkpoint):
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    masks = torch.zeros(1, 1, 256, 256)
    masks[0, 0, 64:192, 64:192] = 1

    class Oracle(torch.nn.Module):  # a decoder that returns the target: every click scores Dice 1
        def forward(self, **kw):
            return masks[:, :, ::2, ::2] * 20 - 10, torch.ones(1, 1)

    model.mask_decoder = Oracle()
    d = click_curve(model, torch.rand(1, 1, 256, 256), torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]]), masks, 3)
    assert d.shape == (1, 3) and torch.allclose(d, torch.ones(1, 3, dtype=d.dtype))


def test_the_session_decodes_every_prompt_with_the_padding_inference_uses(tiny_checkpoint):
    # Training rows are padded to a common length, but SAM's prompt encoder adds exactly one padding row to
    # clicks without a box (none to a box), and the decoder attends to padding: the session must decode
    # every sample as inference would, or a single click learns to come out too small.
    model = samus.build_samus(None, checkpoint=tiny_checkpoint).eval()
    torch.manual_seed(0)
    images = torch.rand(3, 1, 256, 256)
    masks = torch.zeros(3, 1, 256, 256)
    masks[:, :, 60:160, 60:160] = 1
    coords = torch.tensor([[[100.0, 100.0], [0, 0], [0, 0], [0, 0]],
                           [[0, 0], [60.0, 60.0], [160.0, 160.0], [0, 0]],
                           [[90.0, 110.0], [0, 0], [200.0, 30.0], [0, 0]]])
    labels = torch.tensor([[1, PAD_LABEL, PAD_LABEL, PAD_LABEL], [PAD_LABEL, 2, 3, PAD_LABEL],
                           [1, PAD_LABEL, 0, PAD_LABEL]])
    with torch.no_grad():
        (low, _, _, _), = ClickSimulation(model)(images, coords, labels, masks, 0, np.random.default_rng(0))
        click, _ = model(images[:1], point_coords=coords[:1, :1], point_labels=labels[:1, :1])
        box, _ = model(images[1:2], boxes=torch.tensor([[60.0, 60.0, 160.0, 160.0]]))
        two, _ = model(images[2:], point_coords=coords[2:, [0, 2]], point_labels=labels[2:, [0, 2]])
        for i, expected in enumerate((click, box, two)):
            torch.testing.assert_close(low[i:i + 1], expected, atol=1e-4, rtol=1e-4)
        dice = click_curve(model, images, coords, labels, masks, 1)[:, 0]
        for i, expected in enumerate((click, box, two)):
            pred, gt = model.upscale(expected)[0, 0] > 0, masks[i, 0] > 0.5
            want = (2 * (pred & gt).sum() + 1e-5) / (pred.sum() + gt.sum() + 1e-5)
            assert abs(float(dice[i]) - float(want)) < 1e-6
