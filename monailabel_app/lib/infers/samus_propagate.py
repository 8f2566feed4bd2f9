"""SAMUS propagation: clicks on one or more frames of a cine loop / volume -> label volume, frame by frame
(the algorithm lives in `samus.propagate`, usable outside the server)."""
import re
import time
from typing import Dict, Tuple

import numpy as np
from samus.propagate import DIRECTIONS, FramePrompt, PropagationOptions, propagate

from .. import request_guard
from ..errors import bad_request, conflict, show, too_large, too_many
from ..propagation_chains import ChainEnds, prompts_key
from ..scheduler import BATCH, Cancelled, JobIdInUse, ScheduledPredictor, TooManyJobs
from ..image_io import check_result_format, write_label
from ..request_prompts import number, parse_clicks, parse_roi, propagation_range, requested_slice
from .base import SamusInferBase


JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _options(request: dict) -> PropagationOptions:
    direction = request.get("direction", "both")
    if direction not in DIRECTIONS:
        raise bad_request(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    min_area = number(request.get("min_area", 20), "min_area")
    min_score = request.get("min_score")
    min_score = None if min_score in (None, "") else number(min_score, "min_score")
    if min_area < 0:
        raise bad_request(f"min_area must be >= 0 pixels, got {min_area:g}")
    return PropagationOptions(direction=direction, min_area=int(min_area), min_score=min_score)


def _ends_before(ends, lo: int, hi: int):
    """The recorded chain ends a request for frames lo..hi may continue from: those its chains reach before
    the range (a forward chain's end before lo, a backward chain's after hi); frames inside are recomputed."""
    if not ends:
        return None
    return {(seed, step): end for (seed, step), end in ends.items() if (end[0] < lo if step > 0 else end[0] > hi)}


class SamusPropagate(SamusInferBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, description="SAMUS propagation: clicks on one or more frames of a cine loop or "
                                            "volume are carried frame by frame, forward and backward",
                         config={"direction": list(DIRECTIONS), "min_area": 20}, **kwargs)
        self.chain_ends = ChainEnds()
        self.batch_frames = 4  # frames encoded per turn of the scheduler (--conf batch_frames, set by the app)

    def __call__(self, request):
        t0 = time.perf_counter()
        info = self.open_image(request)
        prompts = parse_clicks(request, info, self.limits)  # frame -> FramePrompt
        box, roi_frame = parse_roi(request, info)
        opts = _options(request)
        ext, dtype = check_result_format(info, request.get("result_extension"), request.get("result_dtype"))
        frame_range = propagation_range(request, info, self.limits)
        _add_roi_box(prompts, box, roi_frame, request, info)
        lo, hi, walk = self._walk(prompts, frame_range, info)
        job_id = request.get("job")
        if job_id is not None and (not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id)):
            raise bad_request(f"job must be 1-64 letters, digits, - or _, got {show(job_id)}")

        served = self.served(request)
        hits_before = served.predictor.cache.hits
        memo_key = (info.key, served.version, prompts_key(prompts), repr(opts))
        result, job = self._propagate(info, served, prompts, opts, (lo, hi), walk, job_id, memo_key)
        self.chain_ends.update(memo_key, result.chain_ends)
        t1 = time.perf_counter()

        frames = [k for k in result.frames if lo <= k <= hi]
        label = np.zeros((info.rows, info.cols, info.frames), np.uint8)
        for k in frames:
            label[:, :, k] = result.masks[k]
        path = write_label(info, label, ext, dtype)
        t2 = time.perf_counter()
        return path, {
            "frames": frames,
            "scores": [result.scores[k] for k in frames],
            "areas": [int(result.masks[k].sum()) for k in frames],
            "seeds": result.seeds,
            "stopped_at": result.stopped_at,
            "cached_frames": served.predictor.cache.hits - hits_before,
            "model_version": served.version,
            "variant": served.model,
            "scheduler": job.report(intervals=True),
            "label_names": {name: i + 1 for i, name in enumerate(self.labels)},
            "latencies": {"propagate": round(t1 - t0, 4), "write": round(t2 - t1, 4), "total": round(t2 - t0, 4),
                          "frames_per_second": round(len(frames) / max(t1 - t0, 1e-9), 2)},
        }

    def _walk(self, prompts, frame_range, info) -> Tuple[int, int, Tuple[int, int]]:
        """(lo, hi) of the frames to return, and the frames the chains walk. The chains still start at the
        seeds, which may lie outside the range (a chunk of a longer propagation)."""
        lo, hi = frame_range if frame_range is not None else (0, info.frames - 1)
        walk = (min(lo, min(prompts)), max(hi, max(prompts)))
        if walk[1] - walk[0] + 1 > self.limits.propagation_frames:
            raise too_large(f"frames {walk[0]}..{walk[1]} (from the clicked frames to the requested range) are "
                            f"{walk[1] - walk[0] + 1} frames; one propagation covers at most "
                            f"{self.limits.propagation_frames} (--conf max_propagation_frames)")
        return lo, hi, walk

    def _propagate(self, info, served, prompts, opts, frames: Tuple[int, int], walk, job_id, memo_key):
        """(PropagationResult, scheduler job): a batch job of the scheduler, continuing from where an earlier
        chunk's chains ended; scheduler and propagation errors as 4xx."""
        lo, hi = frames
        pixels = self.decoded.get(info)
        try:
            with self.scheduler.job("samus_propagate", BATCH, job_id) as job:
                job.total = hi - lo + 1
                request_guard.on_disconnect(job.cancel)  # the client gave up (a viewer's Stop): stop too
                predictor = ScheduledPredictor(served.predictor, job, self.batch_frames)
                result = propagate(predictor, lambda k: pixels[:, :, k], info.frames, prompts,
                                   frame_key=lambda k: (info.key, k, served.version), frame_range=walk,
                                   options=opts, resume=_ends_before(self.chain_ends.get(memo_key), lo, hi))
        except ValueError as e:
            raise bad_request(str(e)) from None
        except TooManyJobs as e:
            raise too_many(str(e)) from None
        except JobIdInUse as e:
            raise conflict(str(e)) from None
        except Cancelled:
            raise conflict(f"propagation {job_id or ''} was cancelled (DELETE /samus/jobs/<job>, or the client "
                           "closed the connection)") from None
        return result, job


def _add_roi_box(prompts: Dict, box, roi_frame, request, info) -> None:
    """Put the `roi` box on its frame's prompt; 400 when the frame is unclear or nothing was given."""
    if box is not None:
        k = roi_frame if roi_frame is not None else requested_slice(request, info)
        if k is None:
            k = next(iter(prompts), None) if len(prompts) == 1 else None
        if k is None:
            raise bad_request("a 4-number roi on a volume needs `slice` to say which frame it is on")
        prompts.setdefault(k, FramePrompt()).box = np.asarray(box, dtype=np.float64)
    if not prompts:
        raise bad_request("no clicks: give at least one click in `foreground` as [i, j, k] (the frame to start "
                          "from), or a box in `roi`")
