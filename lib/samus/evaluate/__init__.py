"""Evaluation of a SAMUS predictor (1-click and k-click protocols) (the `samus evaluate` command is
`samus.cli.evaluate`).

Protocols
- ``1click``: the authors' test prompt, one positive click at the "middle" foreground pixel
  (`samus.prompts.middle_click`: element floor(n/2) of the row-major list of foreground pixels).
- ``kclick``: starts from that click; click i+1 goes into the largest connected error region of prediction i
  (missed foreground -> positive click, false foreground -> negative click), at the pixel farthest from the
  region's boundary (Euclidean distance transform, the image border counts as boundary), and prediction i is
  fed back as `mask_input`. Ties are broken by a generator seeded with (seed, image id), so runs repeat.
- ``kclick_nomask``: the same clicks rule with the clicks alone (no previous mask fed back), as a client
  that only sends clicks gets.
- ``box``: the tight box of the target (MedSAM's prompt), one prediction.
- ``box_kclick``: that box, then corrective clicks by the k-click rule, the box kept in every request and
  the previous mask fed back (a user who draws a box and then corrects it).

The k-click protocols report the Dice / IoU curve over clicks 1..k and NoC@85 / NoC@90 (clicks needed to
reach that Dice; k + 1 when never reached). Every report also gives how often the first mask contains the
clicked pixel. With `components`, every class and every separate structure of a label is its own target
(as training uses them), so a click on one nerve is scored against that nerve.

Metrics are computed at the original image resolution by default (the predictor returns full-size masks);
`eval_size=256` reproduces the authors' setting (image resized bilinearly, mask by nearest neighbour, to
256 x 256 before prompting and scoring).

Modules: `protocols` (one image), `runner` (a data set), `report` (files and summaries), `plots`.
"""
from ..prompts import next_click
from .plots import write_click_plot
from .protocols import (BASELINES, CLICK_PROTOCOLS, NOC_THRESHOLDS, PROTOCOLS, evaluate_image, first_click, item_rng,
                        number_of_clicks, resize_pair)
from .report import (CSV_FIELDS, REPORT_FORMAT, REPORT_VERSION, format_comparison, format_summary, write_curve_csv,
                     write_json, write_report)
from .runner import evaluate, item_id, load_item, load_item_label

__all__ = [
    "BASELINES", "CLICK_PROTOCOLS", "CSV_FIELDS", "NOC_THRESHOLDS", "PROTOCOLS", "REPORT_FORMAT", "REPORT_VERSION",
    "evaluate", "evaluate_image", "first_click", "format_comparison", "format_summary", "item_id", "item_rng",
    "load_item", "load_item_label", "next_click", "number_of_clicks", "resize_pair", "write_click_plot",
    "write_curve_csv", "write_json", "write_report",
]
