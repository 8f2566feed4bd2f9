"""Idle-time encoding of the frames around the one a user clicks on.

A frame's first click costs an encoder pass; the next click of a user stepping through a cine or volume
is usually on a neighbouring frame. After a click on frame k, one background thread encodes frames k+1,
k-1, k+2, k-2, ... (`--conf encode_ahead` frames on each side) into the shared embedding cache, at the
scheduler's lowest priority: it starts only when no request has been active for `--conf encode_ahead_delay`
seconds, holds the model for one frame at a time, and drops its plan as soon as real work arrives (a newer
click brings a new plan). A pass of the accurate model's trunk through OpenVINO (the app's default) stops
within milliseconds when real work arrives (`samus.openvino_trunk.interruptible`); a PyTorch pass cannot be
stopped (the fast model's takes about 0.1 s, the accurate one's on PyTorch about 0.6 s), so the delay keeps
encode-ahead out of a user's quick follow-up clicks.
"""
import logging
import threading
from typing import List, Optional

from samus.openvino_trunk import TrunkInterrupted, interruptible

from .scheduler import PREFETCH, Cancelled, Scheduler

logger = logging.getLogger(__name__)


def neighbour_order(frame: int, n_frames: int, window: int) -> List[int]:
    order = []
    for d in range(1, window + 1):
        order += [k for k in (frame + d, frame - d) if 0 <= k < n_frames]
    return order


class EncodeAhead:
    def __init__(self, scheduler: Scheduler, decoded, window: int, delay: float = 0.0):
        self.scheduler = scheduler
        self.decoded = decoded
        self.window = window
        self.delay = delay
        self._plan: Optional[tuple] = None
        self._wake = threading.Condition()
        self.encoded = 0  # frames encoded ahead so far (for tests and logs)
        self.dropped = 0  # plans dropped because real work arrived
        self._thread: Optional[threading.Thread] = None

    def after_click(self, served, info, frame: int) -> None:
        """Plan the neighbours of `frame` (replacing any older plan); no-op for 2D images or window 0."""
        if self.window <= 0 or info.frames <= 1:
            return
        with self._wake:
            self._plan = (served, info, neighbour_order(frame, info.frames, self.window))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="samus-encode-ahead", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._plan is None:
                    self._wake.wait()
            if not self.scheduler.wait_idle(timeout=5.0, quiet=self.delay):
                continue  # still busy: look again (a newer plan may have replaced this one)
            with self._wake:
                plan, self._plan = self._plan, None
            if plan is not None:
                self._encode(*plan)

    def _encode(self, served, info, frames: List[int]) -> None:
        job = self.scheduler.start("encode_ahead", PREFETCH)
        try:
            pixels = None
            for k in frames:
                key = (info.key, k, served.version)
                if key in served.predictor.cache:
                    continue
                if pixels is None:
                    pixels = self.decoded.get(info)
                with job.slot(), interruptible(job.cancel_event):
                    served.predictor.embed(pixels[:, :, k], key)
                self.encoded += 1
        except (Cancelled, TrunkInterrupted):
            self.dropped += 1
        except Exception:  # the image was removed meanwhile, ...: encode-ahead is only a speed-up
            logger.exception("encode-ahead failed")
        finally:
            self.scheduler.finish(job)
