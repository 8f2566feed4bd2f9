"""MONAI Label app serving SAMUS (SAM adapted to ultrasound): interactive clicks, frame propagation,
fine-tuning on submitted labels, and active learning.

    monailabel start_server --app monailabel_app --studies DIR [--conf key value ...]

`--conf` keys are listed in lib/app_conf.py (and printed when a key is unknown).
"""
import logging
import os
import sys
from typing import Dict

import torch

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from lib.activelearning.diversity import Diversity
from lib.app_conf import ConfError, parse_conf
from lib.datastore import CheckedDatastore
from lib.image_access import ImageAccess
from lib.image_io import DecodedImages
from lib.infers.samus import SamusInfer
from lib.infers.samus_propagate import SamusPropagate
from lib.model_service import ModelService
from lib.trainers.samus import SamusTrainTask

logger = logging.getLogger(__name__)


class SamusApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        try:
            self.app_conf = parse_conf(conf)
            model_dir = self.app_conf.model_dir or os.path.join(app_dir, "model")
            os.makedirs(model_dir, exist_ok=True)
            self.service = ModelService(self.app_conf, model_dir)
        except ConfError as e:
            # Stop the start with the reason; a traceback from deep inside uvicorn would hide it.
            print(f"\nSAMUS app: {e}\n", file=sys.stderr, flush=True)
            logger.error(str(e))
            raise SystemExit(2) from None
        torch.set_num_threads(self.app_conf.threads)
        self.model_dir = model_dir
        self.decoded = DecodedImages()
        self.access = ImageAccess(studies)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="SAMUS",
                         description="SAMUS point-prompted ultrasound segmentation", version="1.0")
        sessions = self.sessions()  # created by MONAILabelApp after the tasks
        if sessions is not None:  # (an empty Sessions is a falsy dict)
            self.access.allow_sessions(sessions.store_path)

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()  # remote datastores as MONAI Label provides them
        return CheckedDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            max_voxels=self.app_conf.max_image_voxels,
        )

    def init_infers(self) -> Dict[str, InferTask]:
        args = (self.service, self.access, self.decoded, self.app_conf.max_image_voxels)
        return {"samus": SamusInfer(*args), "samus_propagate": SamusPropagate(*args)}

    def init_trainers(self) -> Dict[str, TrainTask]:
        if self.app_conf.skip_trainers:
            return {}
        return {"samus": SamusTrainTask(self.model_dir, self.service)}

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), "first": First(), "diversity": Diversity(self.service, self.decoded,
                                                                             self.app_conf.max_image_voxels)}

    def on_init_complete(self):
        # Load (and warm up) the model before the first click; only the server calls this, not the train
        # subprocess, which re-creates the app but never serves clicks.
        try:
            self.service.get()
        except Exception as e:
            print(f"\nSAMUS app: cannot load the model {self.service.current_file()}: {e}\n", file=sys.stderr,
                  flush=True)
            raise SystemExit(2) from None
        super().on_init_complete()

    def infer(self, request, datastore=None):
        self.access.check_id(request.get("image"), datastore or self.datastore(), request.get("session"))
        return super().infer(request, datastore)
