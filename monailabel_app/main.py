"""MONAI Label app serving SAMUS (SAM adapted to ultrasound): interactive clicks, frame propagation,
fine-tuning on submitted labels, and active learning.

    monailabel start_server --app monailabel_app --studies DIR [--conf key value ...]

`--conf` keys are listed in lib/app_conf.py (and printed when a key is unknown).
"""
import logging
import os
import sys
from typing import Dict

import samus
import torch

from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.utils.async_tasks.utils import tasks as async_tasks

from lib import request_guard
from lib.activelearning.diversity import Diversity
from lib.activelearning.random_strategy import RandomStrategy
from lib.app_conf import ConfError, parse_conf
from lib.datastore import CheckedDatastore, discard_temp
from lib.encode_ahead import EncodeAhead
from lib.errors import bad_request, no_whole_slide, not_found
from lib.image_access import UPLOAD_KEY, ImageAccess, is_temp_file
from lib.image_io import DecodedImages
from lib.job_routes import add_job_routes
from lib.infers.samus import SamusInfer
from lib.infers.samus_propagate import SamusPropagate
from lib.model_service import ModelService, load_model
from lib.scheduler import Scheduler
from lib.storage_limits import check_session_room
from lib.threaded_routes import run_in_threads
from lib.trainers.samus import SamusTrainTask, TrainRequestError

logger = logging.getLogger(__name__)


class SamusApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        try:
            self.app_conf = parse_conf(conf)
            model_dir = self.app_conf.model_dir or os.path.join(app_dir, "model")
            os.makedirs(model_dir, exist_ok=True)
            # One service per served model (lib/configs); the first is the default for clicks.
            self.services = {name: ModelService(self.app_conf, model_dir, name) for name in self.app_conf.models}
            self.service = self.services[self.app_conf.models[0]]
        except ConfError as e:
            # Stop the start with the reason; a traceback from deep inside uvicorn would hide it.
            print(f"\nSAMUS app: {e}\n", file=sys.stderr, flush=True)
            logger.error(str(e))
            raise SystemExit(2) from None
        torch.set_num_threads(self.app_conf.threads)
        self.model_dir = model_dir
        self.decoded = DecodedImages()
        sharing = self.app_conf.sharing
        self.scheduler = Scheduler(max_batch_jobs=sharing.max_long_jobs)
        self.encode_ahead = EncodeAhead(self.scheduler, self.decoded, sharing.encode_ahead,
                                        sharing.encode_ahead_delay)
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
            limits=self.app_conf.limits,
            room=(self.app_conf.sharing.max_datastore_files, self.app_conf.sharing.max_datastore_mb),
        )

    def init_infers(self) -> Dict[str, InferTask]:
        args = (self.services, self.access, self.decoded, self.app_conf.limits)
        infers = {"samus": SamusInfer(*args, refine=self.app_conf.refine),
                  "samus_propagate": SamusPropagate(*args, default=self.app_conf.propagation_model)}
        for task in infers.values():
            task.scheduler, task.encode_ahead = self.scheduler, self.encode_ahead
        infers["samus_propagate"].batch_frames = self.app_conf.sharing.batch_frames
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        """`samus` fine-tunes the default model; every other served model has its own `samus_<name>`."""
        if self.app_conf.skip_trainers:
            return {}
        names = {name: "samus" if s is self.service else f"samus_{name}" for name, s in self.services.items()}
        return {names[name]: SamusTrainTask(self.model_dir, s, folder=names[name]) for name, s in self.services.items()}

    def init_strategies(self) -> Dict[str, Strategy]:
        # Pooled embeddings of the fastest served model: scoring touches every unlabelled image.
        scorer = self.services.get("fast", self.service)
        return {"random": RandomStrategy(), "first": First(),
                "diversity": Diversity(scorer, self.decoded, self.app_conf.limits, self.scheduler)}

    def on_init_complete(self):
        # Load (and warm up) the model before the first click; only the server calls this, not the train
        # subprocess, which re-creates the app but never serves clicks.
        for service in self.services.values():
            try:
                service.get()
            except Exception as e:
                print(f"\nSAMUS app: cannot load the model {service.current_file()} (served as {service.name}): {e}\n",
                      file=sys.stderr, flush=True)
                raise SystemExit(2) from None
        from monailabel import app as server  # the FastAPI app uvicorn serves; it is starting up now

        request_guard.install(server.app, self.app_conf.limits, self.guard_hooks())
        # Model work leaves the event loop, so a click is read and scheduled while another user propagates.
        run_in_threads(server.app, [("POST", "/infer/{model}"), ("POST", "/activelearning/{strategy}")])
        add_job_routes(server.app, self.scheduler)
        if settings.MONAI_LABEL_INFER_CONCURRENCY >= 0:
            logger.warning("MONAI_LABEL_INFER_CONCURRENCY is set: MONAI Label's own pool then runs at most that "
                           "many infer requests at once, and a click can wait there behind whole propagations")
        super().on_init_complete()

    # ------------------------------------------------------------------------------------------- entry points
    def infer(self, request, datastore=None):
        # MONAI Label passes an uploaded file on as a temporary path in `image`, which a client could type as
        # well; only the guard knows that a file came with this request.
        state = request_guard.current()
        image = request.get("image")
        upload = image if state is not None and state.uploaded and is_temp_file(image) else None
        request = dict(request, **{UPLOAD_KEY: upload})
        try:
            self.access.check_id(image, datastore or self.datastore(), request.get("session"), upload)
            if request.get("save_label") and request.get("label_tag", "original") != "original":
                raise bad_request("infer results are saved only as `original` predictions; submit final labels "
                                  "with PUT /datastore/label")
            if "timeout" in request:
                raise bad_request("timeout is the server's (MONAI_LABEL_INFER_TIMEOUT), not a request parameter")
            request.pop("device", None)  # the tasks run on the server's --conf device
            return super().infer(request, datastore)
        except BaseException:
            discard_temp(upload)  # MONAI Label deletes it only after a successful request
            raise

    def infer_wsi(self, request, datastore=None):
        raise no_whole_slide()

    def train(self, request):
        # Inside an HTTP request (POST /train/...?run_sync=true), training would run in the server process.
        if request_guard.current() is not None or self._server_mode:
            raise bad_request("run_sync is not supported: training runs in its own process; start it without "
                              "run_sync and follow its progress with GET /train/")
        return super().train(request)

    def next_sample(self, request):
        strategy = request.get("strategy") or "random"
        if not isinstance(strategy, str) or strategy not in self._strategies:
            raise not_found(f"no active learning strategy {strategy!r}; this app has {', '.join(self._strategies)}")
        return super().next_sample(request)

    # ------------------------------------------------------------------------------------------- guard hooks
    def guard_hooks(self) -> request_guard.GuardHooks:
        """What the request guard asks this app."""
        return request_guard.GuardHooks(
            infer_models=self.infer_models, trainer_names=self.trainer_names, scoring_methods=self.scoring_methods,
            dicomweb_datastore=self.dicomweb_datastore, session_exists=self.session_exists,
            check_session_room=self.check_session_room, check_train_request=self.check_train_request,
            train_queued=self.train_queued, check_model_file=self.check_model_file,
            check_model_delete=self.check_model_delete)

    def infer_models(self):
        return list(self._infers)

    def trainer_names(self):
        return list(self._trainers)

    def scoring_methods(self):
        return list(self._scoring_methods)

    def dicomweb_datastore(self) -> bool:  # dicom_seg results and /proxy/dicom need one
        return isinstance(self.datastore(), DICOMWebDatastore)

    def session_exists(self, session_id: str) -> bool:
        sessions = self.sessions()
        return sessions is not None and sessions.get_session(session_id, update_ts=False) is not None

    def check_session_room(self, new_bytes: int) -> None:
        sessions = self.sessions()
        if sessions is not None:
            sharing = self.app_conf.sharing
            check_session_room(sessions, new_bytes, sharing.max_sessions, sharing.max_sessions_mb)

    def check_train_request(self, model: str, params: dict) -> None:
        try:
            self._trainers[model].check_request(dict(params, model=model))
        except TrainRequestError as e:
            raise bad_request(str(e)) from None

    def train_queued(self) -> bool:
        return any(t.get("status") == "SUBMITTED" for t in async_tasks("train"))

    def check_model_file(self, path: str):
        """None if the file can be served, else why not."""
        try:
            load_model(path, self.app_conf.config)
        except Exception as e:  # a foreign or truncated file: CheckpointError, RuntimeError, ...
            return str(e)[:300]
        return None

    def check_model_delete(self, model: str):
        """None if DELETE /model may move the served file away, else why not."""
        if self.service.current_file() != self.service.publish_path:
            return ("DELETE /model removes weights published by training; the base model "
                    f"{os.path.basename(self.service.base_path)} (--conf checkpoint or the bundled one) stays")
        return None
