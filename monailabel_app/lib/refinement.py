"""Refinement without masks from the client.

A click request usually repeats the clicks of the previous request on the same frame plus one new click
(the official Slicer plugin and our module both send every click of the frame each time). The model was
trained to refine: fed the previous low-res logits as `mask_input`, a corrective click moves the mask more
reliably than the same clicks alone (see MODEL_CARD.md, `kclick` against `kclick_nomask`). Clients do not
send those logits, so the app keeps the logits of recent requests and looks them up itself:

    key = (image content, frame, model version, box, clicks as a multiset)

A request with clicks C reuses the entry of C minus one click, if one exists; that one click is the corrective
click (the predictor then changes the mask only around it, `samus.correction`). Removing a click (undo) finds
the request before it, so it gets the mask it had before. The memory is bounded (LRU in entries and bytes:
the accurate model's logits are 256 x 256, four times the small model's), holds only
model outputs for clicks a client sent, and a new model version never meets old entries.
"""
import threading
from collections import OrderedDict
from typing import Hashable, List, NamedTuple, Optional, Tuple

import numpy as np
from samus.propagate import FramePrompt

DEFAULT_ENTRIES = 512  # 512 x 128 x 128 float16 logits (the small and vit_b models) = 16 MiB
DEFAULT_BYTES = 32 * 2**20  # 256 x 256 float16 logits (the LiteMedSAM-based model): 256 entries


def _rounded_clicks(prompt: FramePrompt) -> List[Tuple]:
    """(x, y, label) of each click in the prompt's order, rounded so that the same click sent as 12 or 12.0
    (or through a float round trip) matches."""
    pts = np.zeros((0, 2)) if prompt.points is None else np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    labels = np.zeros(0, np.int64) if prompt.labels is None else np.asarray(prompt.labels).reshape(-1)
    return [(round(float(x), 2), round(float(y), 2), int(l)) for (x, y), l in zip(pts, labels)]


def _click_key(prompt: FramePrompt) -> Tuple:
    return tuple(sorted(_rounded_clicks(prompt)))


def _box_key(prompt: FramePrompt) -> Optional[Tuple]:
    return None if prompt.box is None else tuple(round(float(v), 2) for v in np.asarray(prompt.box).reshape(-1))


class Previous(NamedTuple):
    logits: np.ndarray  # float32 low-res logits of the earlier request
    new_click: int  # index, in this request's clicks, of the one click the earlier request did not have


class RefinementMemory:
    """Low-res logits of recent click requests, for the next request that adds one click. Thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.nbytes = 0
        self._items: "OrderedDict[Hashable, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    def previous(self, image_key: str, frame: int, version: str, prompt: FramePrompt) -> Optional[Previous]:
        """Logits stored for this prompt minus one click, and which click that is; or None."""
        rounded = _rounded_clicks(prompt)
        clicks = tuple(sorted(rounded))
        head = (image_key, frame, version, _box_key(prompt))
        with self._lock:
            for i in range(len(clicks)):
                if i and clicks[i] == clicks[i - 1]:
                    continue  # the same click twice: removing either gives the same key
                key = head + (clicks[:i] + clicks[i + 1:],)
                logits = self._items.get(key)
                if logits is not None:
                    self._items.move_to_end(key)
                    return Previous(logits.astype(np.float32), rounded.index(clicks[i]))
        return None

    def remember(self, image_key: str, frame: int, version: str, prompt: FramePrompt, logits: np.ndarray) -> None:
        if self.max_entries <= 0:
            return
        key = (image_key, frame, version, _box_key(prompt), _click_key(prompt))
        value = np.asarray(logits, dtype=np.float16)  # half the memory; logits need no more
        with self._lock:
            old = self._items.pop(key, None)
            self.nbytes += value.nbytes - (old.nbytes if old is not None else 0)
            self._items[key] = value
            while len(self._items) > self.max_entries or self.nbytes > self.max_bytes:
                self.nbytes -= self._items.popitem(last=False)[1].nbytes

    def __len__(self) -> int:
        return len(self._items)
