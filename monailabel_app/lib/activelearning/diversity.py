"""Active learning by diversity in SAMUS' own feature space.

Each image is summarised by its SAMUS image embedding, average-pooled over the 32 x 32 grid (volumes: the
mean over a few evenly spaced frames) and L2-normalised. The next sample is the unlabelled image whose
nearest labelled image is farthest away (cosine distance): the part of the data the labels cover least.
With no labels yet it is the most typical image (closest to the mean), a good first example.
Pooled vectors are kept per (image content, model version), so each image is encoded once per model.
"""
import logging
import random
import threading
from typing import Dict, Optional

import numpy as np
from fastapi import HTTPException
from monailabel.interfaces.tasks.strategy import Strategy

from ..app_conf import RequestLimits
from ..image_io import DecodedImages, inspect_image
from ..errors import too_many
from ..model_service import ModelService
from ..scheduler import BATCH, Scheduler, TooManyJobs

logger = logging.getLogger(__name__)


class Diversity(Strategy):
    def __init__(self, service: ModelService, decoded: DecodedImages, limits: RequestLimits, scheduler: Scheduler,
                 frames_per_volume: int = 4, max_candidates: int = 256):
        super().__init__("Unlabelled image whose pooled SAMUS embedding is farthest from the labelled images")
        self.service = service
        self.scheduler = scheduler
        self.decoded = decoded
        self.limits = limits
        self.frames_per_volume = frames_per_volume
        self.max_candidates = max_candidates
        self._vectors: Dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def _vector(self, path: str, served, job) -> Optional[np.ndarray]:
        try:
            info = inspect_image(path, self.limits)
        except HTTPException as e:
            logger.warning(f"diversity: skipping {path}: {e.detail}")
            return None
        key = (info.key, served.version)
        with self._lock:
            if key in self._vectors:
                return self._vectors[key]
        pixels = self.decoded.get(info)
        frames = np.unique(np.linspace(0, info.frames - 1, min(self.frames_per_volume, info.frames)).round().astype(int))
        pooled = []
        for k in frames:  # one frame per turn: clicks of other users go first (scheduler.py)
            with job.slot():
                pooled.append(served.predictor.embed(pixels[:, :, k])[0].embedding.mean(dim=(2, 3))[0].cpu().numpy())
        v = np.mean(pooled, axis=0)
        v = v / (np.linalg.norm(v) + 1e-12)
        with self._lock:
            self._vectors[key] = v
        return v

    def __call__(self, request, datastore):
        unlabeled = sorted(datastore.get_unlabeled_images())
        if not unlabeled:
            return None
        rng = random.Random(0)
        if len(unlabeled) > self.max_candidates:
            unlabeled = rng.sample(unlabeled, self.max_candidates)
        labeled = sorted(datastore.get_labeled_images())
        if len(labeled) > self.max_candidates:
            labeled = rng.sample(labeled, self.max_candidates)
        served = self.service.get()
        try:
            with self.scheduler.job("diversity", BATCH) as job:
                cand = {i: self._vector(datastore.get_image_uri(i), served, job) for i in unlabeled}
                L = [v for v in (self._vector(datastore.get_image_uri(i), served, job) for i in labeled)
                     if v is not None]
        except TooManyJobs as e:
            raise too_many(str(e)) from None
        cand = {i: v for i, v in cand.items() if v is not None}
        if not cand:
            return None
        ids = list(cand)
        U = np.stack([cand[i] for i in ids])
        if L:
            distance = 1.0 - (U @ np.stack(L).T).max(axis=1)  # cosine distance to the nearest labelled image
            best = int(np.argmax(distance))
            score = float(distance[best])
        else:
            mean = U.mean(axis=0)
            best = int(np.argmax(U @ mean))
            score = 0.0
        logger.info(f"diversity: picked {ids[best]} (distance {score:.4f}) among {len(ids)} unlabelled images")
        return {"id": ids[best], "diversity_distance": score}
