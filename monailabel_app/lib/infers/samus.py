"""Interactive SAMUS: clicks (and an optional box) on one frame -> mask, reusing cached image embeddings."""
import time

import numpy as np
from samus.correction import check_correction

from ..errors import bad_request, show
from ..image_io import check_result_format, write_label
from ..refinement import RefinementMemory
from ..request_prompts import interactive_prompt, mask_input
from ..scheduler import INTERACTIVE
from .base import SamusInferBase


class SamusInfer(SamusInferBase):
    def __init__(self, *args, refine: bool = True, **kwargs):
        super().__init__(*args, description="SAMUS: click on a frame to segment the object under the clicks "
                                            "(positive / negative points, optional box)", **kwargs)
        self.refine_default = refine
        self.memory = RefinementMemory()

    def __call__(self, request):
        t0 = time.perf_counter()
        info = self.open_image(request)
        frame, prompt = interactive_prompt(request, info, self.limits)
        ext, dtype = check_result_format(info, request.get("result_extension"), request.get("result_dtype"))
        served = self.served(request)
        previous = mask_input(request, served.predictor.model.low_res_size)
        refine = request.get("refine", self.refine_default)
        if not isinstance(refine, bool):
            raise bad_request(f"refine must be true or false, got {show(refine)}")
        try:  # checked before the frame is encoded, which a bad value would otherwise cost
            correction = check_correction(request.get("correction", "local"), show)
        except ValueError as e:
            raise bad_request(str(e)) from None
        refined, new_click = False, -1  # an explicit mask_input: the last click is the corrective one
        if previous is None and refine:
            found = self.memory.previous(info.key, frame, served.version, prompt)
            if found is not None:
                previous, new_click, refined = found.logits, found.new_click, True

        t1 = time.perf_counter()
        with self.scheduler.job("samus", INTERACTIVE) as job:  # clicks go before other users' long jobs
            try:
                with job.slot():
                    emb, cache_hit = self.embedding(served, info, frame)
                    t2 = time.perf_counter()
                    mask, score, logits = served.predictor.predict_embedding(
                        emb, prompt.points, prompt.labels, prompt.box, previous, correction, new_click)
            except ValueError as e:  # prompts or pixels the predictor refuses
                raise bad_request(str(e)) from None
        self.encode_ahead.after_click(served, info, frame)
        t3 = time.perf_counter()
        self.memory.remember(info.key, frame, served.version, prompt, logits)

        label = np.zeros((info.rows, info.cols, info.frames), np.uint8)
        label[:, :, frame] = mask
        path = write_label(info, label, ext, dtype)
        t4 = time.perf_counter()
        return path, {
            "frame": frame,
            "score": score,
            "cache_hit": cache_hit,
            "refined": refined,  # the previous request's mask (these clicks minus one) was fed back
            "model_version": served.version,
            "variant": served.model,
            "area": int(mask.sum()),
            "label_names": {name: i + 1 for i, name in enumerate(self.labels)},
            "scheduler": job.report(intervals=True),
            "latencies": {"pre": round(t1 - t0, 4), "encode": round(t2 - t1, 4), "decode": round(t3 - t2, 4),
                          "write": round(t4 - t3, 4), "total": round(t4 - t0, 4)},
        }
