"""SAMUS propagation: clicks on one or more frames of a cine loop / volume -> label volume, frame by frame
(the algorithm lives in `samus.propagate`, usable outside the server)."""
import time

import numpy as np
from samus.propagate import DIRECTIONS, FramePrompt, PropagationOptions, propagate

from ..errors import bad_request
from ..image_io import check_result_format, write_label
from ..request_prompts import number, parse_clicks, parse_roi, propagation_range, requested_slice
from .base import SamusInferBase


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


class SamusPropagate(SamusInferBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, description="SAMUS propagation: clicks on one or more frames of a cine loop or "
                                            "volume are carried frame by frame, forward and backward",
                         config={"direction": list(DIRECTIONS), "min_area": 20}, **kwargs)

    def __call__(self, request):
        t0 = time.perf_counter()
        info = self.open_image(request)
        prompts = parse_clicks(request, info, self.limits)  # frame -> FramePrompt
        box, roi_frame = parse_roi(request, info)
        opts = _options(request)
        ext, dtype = check_result_format(info, request.get("result_extension"), request.get("result_dtype"))
        frame_range = propagation_range(request, info, self.limits)

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

        served = self.served(request)
        pixels = self.decoded.get(info)
        hits_before = served.predictor.cache.hits
        try:
            result = propagate(served.predictor, lambda k: pixels[:, :, k], info.frames, prompts,
                               frame_key=lambda k: (info.key, k, served.version), frame_range=frame_range,
                               options=opts)
        except ValueError as e:
            raise bad_request(str(e)) from None
        t1 = time.perf_counter()

        label = np.zeros((info.rows, info.cols, info.frames), np.uint8)
        for k, mask in result.masks.items():
            label[:, :, k] = mask
        path = write_label(info, label, ext, dtype)
        t2 = time.perf_counter()
        frames = result.frames
        return path, {
            "frames": frames,
            "scores": [result.scores[k] for k in frames],
            "areas": [int(result.masks[k].sum()) for k in frames],
            "seeds": result.seeds,
            "stopped_at": result.stopped_at,
            "cached_frames": served.predictor.cache.hits - hits_before,
            "model_version": served.version,
            "variant": served.model,
            "label_names": {name: i + 1 for i, name in enumerate(self.labels)},
            "latencies": {"propagate": round(t1 - t0, 4), "write": round(t2 - t1, 4), "total": round(t2 - t0, 4),
                          "frames_per_second": round(len(frames) / max(t1 - t0, 1e-9), 2)},
        }
