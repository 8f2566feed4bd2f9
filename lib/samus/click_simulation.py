"""Click simulation (simulated interactive sessions): the click-simulation training of interactive segmentation models.

The recipe of RITM and SAM: after a first prompt the model predicts, a simulated user clicks into the
largest error region (positive in a miss, negative in a false alarm, away from the region's border), and
the previous low-res logits go back in as `mask_input`. Earlier rounds run without gradients, so a round
costs one prompt-encoder + mask-decoder pass; the loss is taken on the last round (or on every round).

Prompts are padded rows (x, y, label) in 256-pixel space with SAM's point-embedding labels: 0 negative,
1 positive, 2 / 3 box corners, -1 padding. `embed_points` turns such rows into exactly the sparse
embedding SAM's `PromptEncoder` gives for the same clicks and box. The decoder attends to padding rows, so
sessions and click curves decode every group of alike first prompts with exactly the padding SAM's prompt
encoder adds at inference (`prompt_groups`, `compact_rows`, `sam_padded`).
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .prompts import BOX_BR_LABEL, BOX_TL_LABEL, PAD_LABEL, next_click


def embed_points(prompt_encoder, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """B x N x 2 coordinates and B x N labels in {-1, 0, 1, 2, 3} -> B x N x C sparse embeddings."""
    pe = prompt_encoder
    with _full_precision(coords):  # random Fourier features of pixel positions need float32, as at inference
        emb = pe.pe_layer.forward_with_coords(coords.float() + 0.5, pe.input_image_size)  # pixel centres
        lab = labels[..., None]
        emb = torch.where(lab == PAD_LABEL, pe.not_a_point_embed.weight, emb)
        for i, point_embedding in enumerate(pe.point_embeddings):
            emb = emb + (lab == i).to(emb.dtype) * point_embedding.weight
    return emb


def _full_precision(t: torch.Tensor):
    return torch.autocast(t.device.type, enabled=False)


def dense_embedding(prompt_encoder, batch: int, mask_input: Optional[torch.Tensor] = None,
                    use_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SAM's dense prompt embedding: the encoded previous mask where `use_mask` is set, the learned
    "no mask" embedding elsewhere."""
    pe = prompt_encoder
    h, w = pe.image_embedding_size
    none = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
    if mask_input is None or use_mask is None or not bool(use_mask.any()):
        return none
    encoded = pe.mask_downscaling(mask_input)
    return torch.where(use_mask.view(-1, 1, 1, 1), encoded, none.to(encoded.dtype))


def decode_rows(model, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                mask_input: Optional[torch.Tensor] = None,
                use_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder + mask decoder for prompt rows -> (B x 1 x L x L low-res logits, B x 1 IoU)."""
    sparse = embed_points(model.prompt_encoder, coords, labels)
    dense = dense_embedding(model.prompt_encoder, coords.shape[0], mask_input, use_mask).to(sparse.dtype)
    with _full_precision(coords):
        image_pe = model.prompt_encoder.get_dense_pe()

    def run(decoder, rows):
        return decoder(image_embeddings=embeddings[rows], image_pe=image_pe, sparse_prompt_embeddings=sparse[rows],
                       dense_prompt_embeddings=dense[rows], multimask_output=False)

    # Each row goes to the decoder `decoder_for` picks for it: rows holding a box to the box decoder, if any.
    has_box = (labels == BOX_TL_LABEL).any(1)
    box_decoder, click_decoder = model.decoder_for(True), model.decoder_for(False)
    if box_decoder is click_decoder or not bool(has_box.any()) or bool(has_box.all()):
        return run(box_decoder if bool(has_box.any()) else click_decoder, slice(None))
    (box_logits, box_iou), (click_logits, click_iou) = run(box_decoder, has_box), run(click_decoder, ~has_box)
    logits = box_logits.new_empty((len(labels),) + tuple(box_logits.shape[1:]))
    iou = box_iou.new_empty((len(labels),) + tuple(box_iou.shape[1:]))
    logits[has_box], logits[~has_box] = box_logits, click_logits
    iou[has_box], iou[~has_box] = box_iou, click_iou
    return logits, iou


def corrective_clicks(model, low_logits: torch.Tensor, masks: torch.Tensor, rng: Optional[np.random.Generator],
                      spread: float = 0.0, previous: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One simulated click per sample against the B x 1 x 256 x 256 target `masks`: (B x 1 x 2, B x 1);
    a sample already perfect gets a padding row. `previous` (coords, labels) keeps clicks off pixels
    already clicked."""
    pred = (model.upscale(low_logits.float()) > 0)[:, 0].cpu().numpy()
    gt = (masks[:, 0] > 0.5).cpu().numpy()
    coords = np.zeros((len(pred), 1, 2), np.float32)
    labels = np.full((len(pred), 1), PAD_LABEL, np.int64)
    for b in range(len(pred)):
        done = []
        if previous is not None:
            rows = zip(previous[0][b].tolist(), previous[1][b].tolist())
            done = [(x, y) for (x, y), lab in rows if lab in (0, 1)]
        click = next_click(pred[b], gt[b], rng, previous=done, spread=spread)
        if click is not None:
            coords[b, 0], labels[b, 0] = click[:2], click[2]
    device = low_logits.device
    return torch.from_numpy(coords).to(device), torch.from_numpy(labels).to(device)


class ClickSimulation(nn.Module):
    """A whole simulated session in one forward call (DistributedDataParallel needs exactly one).

    forward(images, coords, labels, masks, rounds, rng) encodes the images once, runs `rounds` corrective
    rounds and returns [(low-res logits, IoU prediction, prompt coords, prompt labels)] of the rounds that carry a loss: the last one, or
    with `loss_every_round` every one (then all rounds keep their gradients). `mask_prob` is the chance that
    a round feeds the previous logits back (so the model also learns to refine from clicks alone), `spread`
    how far from the deepest error pixel a simulated click may land (see `samus.prompts.next_click`).
    """

    def __init__(self, model, mask_prob: float = 0.7, spread: float = 0.5, loss_every_round: bool = False):
        super().__init__()
        if not 0 <= mask_prob <= 1 or not 0 <= spread < 1:
            raise ValueError(f"need 0 <= mask_prob <= 1 and 0 <= spread < 1 (got {mask_prob}, {spread})")
        self.model = model
        self.mask_prob, self.spread, self.loss_every_round = mask_prob, spread, loss_every_round

    def forward(self, images: Optional[torch.Tensor], coords: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                rounds: int, rng: np.random.Generator, features: Optional[torch.Tensor] = None
                ) -> List[Tuple[torch.Tensor, ...]]:
        embeddings = image_embeddings(self.model, images, features)
        sessions, order = per_prompt_group(
            coords, labels, lambda idx, c, l: self._session(embeddings[idx], c, l, masks[idx], rounds, rng))
        return [tuple(_merge([s[r][k] for s in sessions], order, k >= 2) for k in range(4))
                for r in range(len(sessions[0]))]

    def _session(self, embeddings, coords, labels, masks, rounds, rng) -> List[Tuple[torch.Tensor, ...]]:
        """One group's session (its samples share the kind of first prompt, so their padding is SAM's)."""
        outputs: List[Tuple[torch.Tensor, ...]] = []
        logits, use_mask = None, None
        for r in range(rounds + 1):
            last = r == rounds
            with torch.set_grad_enabled(torch.is_grad_enabled() and (last or self.loss_every_round)):
                emb = embeddings if torch.is_grad_enabled() else embeddings.detach()
                low, iou = decode_rows(self.model, emb, *sam_padded(coords, labels), logits, use_mask)
            if last or self.loss_every_round:
                outputs.append((low, iou, coords, labels))
            if last:
                break
            new_xy, new_lab = corrective_clicks(self.model, low.detach(), masks, rng, self.spread, (coords, labels))
            coords, labels = torch.cat([coords, new_xy], 1), torch.cat([labels, new_lab], 1)
            logits = low.detach().float()
            use_mask = torch.from_numpy(rng.random(len(masks)) < self.mask_prob).to(masks.device)
        return outputs


# ---- SAM's padding ---------------------------------------------------------------------------------------
# SAM's prompt encoder adds one "not a point" row to clicks without a box, none otherwise, and the mask
# decoder attends to that row like to any prompt. A model trained on rows padded to a common length learns
# with more padding tokens than it gets at inference (a single click then came out much too small), so a
# batch is split into groups whose first prompts have the same number of rows and box or not, and every
# group is decoded with exactly the padding inference uses.
def box_rows(boxes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """B x 4 boxes (x1, y1, x2, y2) -> their corner rows (B x 2 x 2) and labels (B x 2: 2, 3)."""
    labels = torch.tensor([BOX_TL_LABEL, BOX_BR_LABEL], device=boxes.device).expand(len(boxes), 2)
    return torch.stack([boxes[:, :2], boxes[:, 2:]], 1), labels


def per_prompt_group(coords: torch.Tensor, labels: torch.Tensor, run) -> Tuple[list, torch.Tensor]:
    """`run(indices, real rows, their labels)` for every group of alike first prompts -> (the results in
    group order, the permutation that puts rows concatenated in group order back in batch order)."""
    groups = prompt_groups(labels)
    results = [run(idx, *compact_rows(coords[idx], labels[idx])) for idx in groups]
    return results, torch.argsort(torch.cat(groups))


def prompt_groups(labels: torch.Tensor) -> List[torch.Tensor]:
    """Indices of the samples that share their number of real prompt rows and whether one is a box."""
    key = (labels != PAD_LABEL).sum(1) * 2 + (labels == BOX_TL_LABEL).any(1).long()
    return [torch.nonzero(key == k).flatten() for k in torch.unique(key)]


def compact_rows(coords: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The real rows of a group (padding dropped; the group shares their count)."""
    real = labels != PAD_LABEL
    n = int(real.sum(1).max())
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)
    coords = torch.gather(coords, 1, order[..., None].expand(-1, -1, coords.shape[-1]))
    return coords[:, :n], torch.gather(labels, 1, order)[:, :n]


def sam_padded(coords: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows as SAM's prompt encoder lays the same prompt out: one padding row after clicks without a box."""
    if bool((labels == BOX_TL_LABEL).any()):
        return coords, labels
    return (torch.cat([coords, coords.new_zeros(len(coords), 1, coords.shape[-1])], 1),
            torch.cat([labels, labels.new_full((len(labels), 1), PAD_LABEL)], 1))


def _merge(parts: List[torch.Tensor], order: torch.Tensor, rows: bool) -> torch.Tensor:
    """Groups' outputs back in batch order (prompt rows padded to a common length first)."""
    if rows:
        n = max(p.shape[1] for p in parts)
        fill = PAD_LABEL if parts[0].dim() == 2 else 0
        parts = [torch.cat([p, p.new_full((p.shape[0], n - p.shape[1], *p.shape[2:]), fill)], 1) for p in parts]
    return torch.cat(parts)[order]


def image_embeddings(model, images: Optional[torch.Tensor], features: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The image encoder's output, or with `features` (a frozen trunk's cached output) what the model's
    trainable part makes of them."""
    if features is None:
        return model.image_encoder(images)
    if not hasattr(model.image_encoder, "adapt"):
        raise ValueError(f"{type(model).__name__} has no frozen trunk: it cannot train on cached features")
    return model.image_encoder.adapt(features, images)


@torch.no_grad()
def click_curve(model, images: Optional[torch.Tensor], coords: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                clicks: int, feed_mask: bool = True, features: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Deterministic evaluation session on a batch: the given first prompt, then `clicks - 1` corrective
    clicks at the deepest error pixel -> B x clicks Dice on the model's canvas (empty vs empty scores 1)."""
    return embedding_click_curve(model, image_embeddings(model, images, features), coords, labels, masks, clicks,
                                 feed_mask)


@torch.no_grad()
def embedding_click_curve(model, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                          masks: torch.Tensor, clicks: int, feed_mask: bool = True) -> torch.Tensor:
    """`click_curve` on image embeddings already computed (several prompts on one batch encode it once)."""
    curves, order = per_prompt_group(
        coords, labels, lambda idx, c, l: _curve(model, embeddings[idx], c, l, masks[idx], clicks, feed_mask))
    return torch.cat(curves)[order]


def _curve(model, embeddings, coords, labels, masks, clicks: int, feed_mask: bool) -> torch.Tensor:
    gt = masks > 0.5
    logits, use_mask, dice = None, None, []
    for r in range(clicks):
        low, _ = decode_rows(model, embeddings, *sam_padded(coords, labels), logits, use_mask)
        pred = model.upscale(low.float()) > 0
        tp = (pred & gt).flatten(1).sum(1).double()
        err = (pred ^ gt).flatten(1).sum(1).double()
        dice.append((2 * tp + 1e-5) / (2 * tp + err + 1e-5))
        if r + 1 < clicks:
            new_xy, new_lab = corrective_clicks(model, low, masks, None, 0.0, (coords, labels))
            coords, labels = torch.cat([coords, new_xy], 1), torch.cat([labels, new_lab], 1)
            logits = low.float()
            use_mask = torch.full((len(masks),), feed_mask, dtype=torch.bool, device=masks.device)
    return torch.stack(dice, 1)


def click_logits(low_logits: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, input_size: Optional[int] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Logits under each positive / negative click (bilinear on the low-res grid; coordinates in the model's
    `input_size` space, by default SAMUS's: twice the grid) and the click labels as float targets, for
    clicks only (no padding or box rows)."""
    size = float(input_size or 2 * low_logits.shape[-1])  # the model input size the coordinates live in
    grid = ((coords.float() + 0.5) / size * 2 - 1)[:, :, None, :]  # B x N x 1 x 2, (x, y) in [-1, 1]
    values = torch.nn.functional.grid_sample(low_logits.float(), grid, mode="bilinear", align_corners=False)
    values = values[:, 0, :, 0]  # B x N
    is_click = (labels == 0) | (labels == 1)
    return values[is_click], labels[is_click].float()
