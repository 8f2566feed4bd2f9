"""The models the infer tasks and strategies serve, each reloaded when training publishes new weights.

One `ModelService` per served model (lib/configs: accurate, fast, custom). Served file = the published
weights `<model_dir>/samus-<model tag>.pt` once training has written them, else the model's base checkpoint
(the bundled file, or `--conf checkpoint` for custom). The publish path depends on the base, so weights
trained from one base are never served on top of another. Each request calls `get()`,
which compares the served file's (path, mtime, size) with what is loaded: a newly published model is
loaded, and its predictor comes with a fresh (empty) embedding cache, so stale embeddings are dropped.
"""
import logging
import os
import threading
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import samus
from samus import CheckpointError, SamusPredictor
from samus.openvino_trunk import served_backend

from .app_conf import AppConf
from .configs import MODEL_CONFIGS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    predictor: SamusPredictor
    version: str  # changes whenever other weights are loaded; part of every embedding cache key
    path: str
    model: str = ""  # the served model's name (lib/configs)


def base_checkpoint(conf: AppConf, name: Optional[str] = None) -> str:
    """The base weights of served model `name` (default: the first served)."""
    return MODEL_CONFIGS[name or conf.models[0]].checkpoint(conf)


def publish_path(conf: AppConf, model_dir: str, name: Optional[str] = None) -> str:
    """Where training publishes weights trained from this model's base checkpoint (and configuration)."""
    return os.path.join(model_dir, MODEL_CONFIGS[name or conf.models[0]].publish_name(conf))


def current_file(publish_path: str, base_path: str) -> str:
    """The weights to serve (and to continue training from): those training published, else the base ones."""
    return publish_path if os.path.isfile(publish_path) else base_path


class ModelService:
    def __init__(self, conf: AppConf, model_dir: str, name: Optional[str] = None):
        self.conf = conf
        self.name = name or conf.models[0]
        self.description = MODEL_CONFIGS[self.name].description
        self.base_path = base_checkpoint(conf, self.name)
        self.publish_path = publish_path(conf, model_dir, self.name)
        self._lock = threading.Lock()
        self._served: Optional[Served] = None
        self._served_stamp: Optional[Tuple] = None
        self._bad_stamp: Optional[Tuple] = None  # a published file that failed to load: not retried until it changes

    def current_file(self) -> str:
        return current_file(self.publish_path, self.base_path)

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
        model = load_model(path, self.conf.config, self.conf.device)
        backend = served_backend(self.conf.backend, model, self.conf.device)
        predictor = SamusPredictor(model, device=self.conf.device, precision=self.conf.precision,
                                   cache_size=self.conf.cache_size, cache_bytes=self.conf.cache_mb * 2**20,
                                   backend=backend)
        predictor.embed(np.zeros((64, 64), np.uint8))  # warm-up: the first real click pays no kernel set-up
        version = f"{os.path.basename(path)}@{stamp[1]}"
        logger.info(f"serving {self.name}: {model.arch} {model.config_name} from {path} (version {version}, "
                    f"encoder on {backend})")
        return Served(predictor, version, path, self.name)


def load_model(path: str, config: Optional[str] = None, device: str = "cpu"):
    """Any checkpoint samus reads. Our files name their architecture and configuration; official SAMUS / SAM
    files get `config` (default vit_b)."""
    ckpt = samus.read_checkpoint(path)
    if ckpt.arch == "samus":
        return samus.build_samus(config=config, checkpoint=ckpt, device=device)
    return samus.build_model(ckpt.arch, checkpoint=ckpt, device=device)
