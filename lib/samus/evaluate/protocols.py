"""The evaluation protocols on one image: 1-click, k-click (with and without the previous mask), box and
box + k-click; the click rule and NoC (see `samus.evaluate`)."""
import copy
import zlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..data.decode import resize_mask
from ..metrics import dice_score, iou_score, segmentation_metrics
from ..preprocess import preprocess_image
from ..prompts import middle_click, next_click, tight_box

PROTOCOLS = ("1click", "kclick", "kclick_nomask", "box", "box_kclick")
CLICK_PROTOCOLS = ("kclick", "kclick_nomask", "box_kclick")  # protocols with a click curve
BASELINES = ("litemedsam",)  # models printed beside ours on the same targets (--baseline)
NOC_THRESHOLDS = (0.85, 0.90)


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """One generator per image, so an image's clicks do not depend on which images come before it."""
    return np.random.default_rng([int(seed), zlib.crc32(str(item_id).encode("utf-8"))])


def first_click(gt: np.ndarray) -> Tuple[int, int, int]:
    """The authors' deterministic click (`samus.prompts.middle_click`) as (x, y, label); on an empty mask
    it is the middle background pixel with label 0."""
    coords, labels = middle_click(gt)
    return int(coords[0, 0]), int(coords[0, 1]), int(labels[0])


# ---- per-image evaluation -----------------------------------------------------------------------------
def resize_pair(image: np.ndarray, gt: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The authors' test-time resize with the functions training uses: the image through
    `preprocess_image` (grayscale [0, 1], bilinear), the mask by nearest neighbour (`data.resize_mask`)."""
    small = preprocess_image(image, size)[0, 0].numpy()
    return small, resize_mask(np.asarray(gt, dtype=bool), size).numpy().astype(bool)


def predict_clicks(predictor, clicks, mask_input=None, box=None, correction: str = "local"):
    """The predictor on (x, y, label) clicks; with `mask_input` the last click is the corrective one."""
    if not clicks:
        return predictor.predict(box=box, mask_input=mask_input)
    pts = np.array([[c[0], c[1]] for c in clicks], dtype=np.float64)
    labels = np.array([c[2] for c in clicks], dtype=np.int32)
    return predictor.predict(pts, labels, box=box, mask_input=mask_input, correction=correction)


def evaluate_image(predictor, image: np.ndarray, gt: np.ndarray, protocols: Sequence[str] = PROTOCOLS,
                   k: int = 5, rng: Optional[np.random.Generator] = None, key=None, embedding=None,
                   correction: str = "local") -> Dict[str, dict]:
    """Runs the protocols on one image; -> {protocol: {clicks, pred, score, first_contains_click, **metrics}
    (+ dice_per_click, iou_per_click, noc85, noc90 for the k-click protocols)}. `embedding` (an
    `ImageEmbedding` of this image, e.g. from cached features) skips the image encoder. `correction`: how a
    corrective click changes the mask fed back (`samus.correction`)."""
    gt = np.asarray(gt, dtype=bool)
    if embedding is not None:
        predictor.set_embedding(embedding)
    else:
        predictor.set_image(image, key=key)
    results = {}
    if "box" in protocols or "box_kclick" in protocols:
        results.update(box_protocols(predictor, gt, protocols, k, rng, correction))
    if not any(p in protocols for p in ("1click", "kclick", "kclick_nomask")):
        return results
    click = first_click(gt)
    pred, score, logits = predict_clicks(predictor, [click])
    contains = bool(pred[click[1], click[0]]) == bool(click[2])  # a positive click inside, a negative outside
    if "1click" in protocols:
        results["1click"] = {"clicks": [click], "pred": pred, "score": score, "first_contains_click": contains,
                             **segmentation_metrics(pred, gt)}
    for protocol in ("kclick", "kclick_nomask"):
        if protocol in protocols:
            state = copy.deepcopy(rng)  # both k-click protocols break ties alike
            results[protocol] = click_session(predictor, gt, click, pred, score, logits, k, state,
                                               feed_mask=protocol == "kclick", correction=correction)
            results[protocol]["first_contains_click"] = contains
    return results


def box_protocols(predictor, gt, protocols, k, rng, correction: str = "local") -> Dict[str, dict]:
    box = tight_box(gt) if gt.any() else np.array([0, 0, gt.shape[1] - 1, gt.shape[0] - 1], np.float32)
    pred, score, logits = predict_clicks(predictor, [], box=box)
    out = {}
    if "box" in protocols:
        out["box"] = {"clicks": [], "pred": pred, "score": score, "first_contains_click": None,
                      **segmentation_metrics(pred, gt)}
    if "box_kclick" in protocols:
        # the box counts as the first interaction: the curve's point 1 is the box alone
        res = click_session(predictor, gt, None, pred, score, logits, k, copy.deepcopy(rng), True, box=box,
                            correction=correction)
        out["box_kclick"] = dict(res, first_contains_click=None)  # no click to contain
    return out


def click_session(predictor, gt, click, pred, score, logits, k, rng, feed_mask: bool, box=None,
                  correction: str = "local") -> dict:
    clicks, dice, iou = ([click] if click is not None else []), [dice_score(pred, gt)], [iou_score(pred, gt)]
    while len(dice) < k:
        nxt = next_click(pred, gt, rng, previous=clicks)
        if nxt is None:  # perfect: more clicks would not change anything
            dice.append(dice[-1])
            iou.append(iou[-1])
            continue
        clicks.append(nxt)
        pred, score, logits = predict_clicks(predictor, clicks, mask_input=logits if feed_mask else None, box=box,
                                             correction=correction)
        dice.append(dice_score(pred, gt))
        iou.append(iou_score(pred, gt))
    noc = {f"noc{round(t * 100)}": number_of_clicks(dice, t) for t in NOC_THRESHOLDS}
    return {"clicks": clicks, "pred": pred, "score": score, "dice_per_click": dice, "iou_per_click": iou,
            **noc, **segmentation_metrics(pred, gt)}


def number_of_clicks(dice_per_click: Sequence[float], threshold: float) -> int:
    """Clicks needed to reach `threshold` Dice (1-based); len + 1 when the curve never gets there."""
    for i, d in enumerate(dice_per_click):
        if d >= threshold:
            return i + 1
    return len(dice_per_click) + 1

