"""Where earlier propagations' chains ended, so that a long propagation can be requested in chunks.

A client that propagates through a long loop asks for one range of frames after another (`frames: [a, b]`,
from the clicked frame outward), each with the same clicks. A chain's next frame depends on its previous
frame's mask and on the clicks carried along so far, so a chunk that started afresh would differ from the
one-shot result; a chunk that walked from the seed again would re-do (and, beyond the embedding cache,
re-encode) every frame before it. The ends of the chains are kept here per (image content, model version,
clicks, options), and the next chunk continues from them: chunked and one-shot results are identical.
"""
import threading
from collections import OrderedDict
from typing import Dict, Hashable, Optional, Tuple

import numpy as np


def prompts_key(prompts) -> Hashable:
    """The request's clicks and boxes, frame by frame, as a hashable value (exact coordinates)."""
    def arr(a):
        return None if a is None else (np.asarray(a).dtype.str, np.asarray(a).shape, np.asarray(a).tobytes())

    return tuple((k, arr(p.points), arr(p.labels), arr(p.box)) for k, p in sorted(prompts.items()))


class ChainEnds:
    """LRU of chain ends; each entry holds a few low-res logits and masks per chain."""

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._items: "OrderedDict[Hashable, Dict[Tuple[int, int], tuple]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[Dict[Tuple[int, int], tuple]]:
        with self._lock:
            ends = self._items.get(key)
            if ends is not None:
                self._items.move_to_end(key)
                return dict(ends)
            return None

    def update(self, key: Hashable, ends: Dict[Tuple[int, int], tuple]) -> None:
        with self._lock:
            merged = dict(self._items.pop(key, {}))
            merged.update(ends)
            self._items[key] = merged
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
