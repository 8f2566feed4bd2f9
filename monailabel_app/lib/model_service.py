"""The model the infer tasks and strategies serve, reloaded when training publishes new weights.

Served file = the published weights `<model_dir>/samus-<base tag>.pt` once training has written them, else
the base checkpoint (`--conf checkpoint`, or the bundled default model). The publish path depends on the
base, so weights trained from one base are never served on top of another. Each request calls `get()`,
which compares the served file's (path, mtime, size) with what is loaded: a newly published model is
loaded, and its predictor comes with a fresh (empty) embedding cache, so stale embeddings are dropped.
"""
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import samus
from samus import CheckpointError, SamusPredictor

from .app_conf import AppConf, ConfError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    predictor: SamusPredictor
    version: str  # changes whenever other weights are loaded; part of every embedding cache key
    path: str


def base_checkpoint(conf: AppConf) -> str:
    if conf.checkpoint:
        return conf.checkpoint
    path = str(samus.DEFAULT_CHECKPOINT)
    if not os.path.isfile(path):
        raise ConfError(f"the bundled default model {path} is missing and no --conf checkpoint was given; "
                        f"pass --conf checkpoint PATH (an official SAMUS .pth, a SAM ViT-B .pth or a samus checkpoint)")
    return path


def publish_path(conf: AppConf, model_dir: str) -> str:
    """Where training publishes weights trained from this base checkpoint (and configuration)."""
    base = base_checkpoint(conf)
    if not conf.checkpoint:
        tag = "default"
    else:
        stem = os.path.basename(base).split(".")[0][:40] or "checkpoint"
        digest = hashlib.sha1(f"{base}|{conf.config}".encode()).hexdigest()[:8]
        tag = f"{stem}-{digest}"
    return os.path.join(model_dir, f"samus-{tag}.pt")


class ModelService:
    def __init__(self, conf: AppConf, model_dir: str):
        self.conf = conf
        self.base_path = base_checkpoint(conf)
        self.publish_path = publish_path(conf, model_dir)
        self._lock = threading.Lock()
        self._served: Optional[Served] = None
        self._served_stamp: Optional[Tuple] = None
        self._bad_stamp: Optional[Tuple] = None  # a published file that failed to load: not retried until it changes

    def current_file(self) -> str:
        return self.publish_path if os.path.isfile(self.publish_path) else self.base_path

    @staticmethod
    def _stamp(path: str) -> Optional[Tuple]:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return path, st.st_mtime_ns, st.st_size

    def get(self) -> Served:
        """The served model, reloading it first if other weights were published since the last call."""
        path = self.current_file()
        stamp = self._stamp(path)
        served = self._served
        if served is not None and (stamp == self._served_stamp or stamp == self._bad_stamp or stamp is None):
            return served
        with self._lock:
            if self._served is not None and stamp in (self._served_stamp, self._bad_stamp):
                return self._served
            try:
                self._served = self._load(path, stamp)
                self._served_stamp = stamp
            except (CheckpointError, ValueError, OSError, RuntimeError) as e:
                if self._served is None:
                    raise
                # A half-copied or foreign file (e.g. PUT /model): keep serving what works.
                logger.error(f"cannot load {path} ({e}); still serving {self._served.path}")
                self._bad_stamp = stamp
            return self._served

    def _load(self, path: str, stamp: Tuple) -> Served:
        # Our own files name their configuration; official SAMUS / SAM files get `config` (default vit_b).
        model = samus.build_samus(config=self.conf.config, checkpoint=path, device=self.conf.device)
        predictor = SamusPredictor(model, device=self.conf.device, precision=self.conf.precision,
                                   cache_size=self.conf.cache_size, cache_bytes=self.conf.cache_mb * 2**20)
        predictor.embed(np.zeros((64, 64), np.uint8))  # warm-up: the first real click pays no kernel set-up
        version = f"{os.path.basename(path)}@{stamp[1]}"
        logger.info(f"serving SAMUS {model.config_name} from {path} (version {version})")
        return Served(predictor, version, path)
