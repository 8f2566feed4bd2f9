"""What both SAMUS infer tasks share: the served model, image access rules, decoded-image cache."""
import logging
from typing import Dict, Optional, Tuple

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from ..app_conf import RequestLimits
from ..errors import unavailable
from ..image_access import DATASTORE, UPLOAD, ImageAccess
from ..image_io import DecodedImages, ImageInfo, inspect_image
from ..model_service import ModelService, Served

logger = logging.getLogger(__name__)

LABELS = ["object"]  # SAMUS segments whatever is clicked: one binary label


class SamusInferBase(InferTask):
    scheduler = None  # scheduler.Scheduler and encode_ahead.EncodeAhead, set by the app (main.py)
    encode_ahead = None

    def __init__(self, service: ModelService, access: ImageAccess, decoded: DecodedImages, limits: RequestLimits,
                 description: str, config: Optional[Dict] = None):
        # DEEPGROW makes the official Slicer plugin offer the task under SmartEdit; dimension 2 makes it send
        # the current frame as `slice` with the clicks of that frame.
        super().__init__(type=InferType.DEEPGROW, labels=LABELS, dimension=2, description=description,
                         config=config)
        self.service = service
        self.access = access
        self.decoded = decoded
        self.limits = limits

    def is_valid(self) -> bool:
        return True

    def get_path(self, validate=True):
        """The weights being served (GET /model/<task>); the publish path for PUT /model/<task>."""
        return self.service.current_file() if validate else self.service.publish_path

    def served(self) -> Served:
        try:
            return self.service.get()
        except Exception as e:  # the base checkpoint was removed or broken after start-up
            logger.exception("cannot load the model")
            raise unavailable(f"the model cannot be loaded: {e}") from None

    def open_image(self, request: dict) -> ImageInfo:
        source = self.access.check_path(request)
        return inspect_image(request["image"], self.limits, uploaded=source == UPLOAD, client_file=source != DATASTORE)

    def embedding(self, served: Served, info: ImageInfo, frame: int) -> Tuple[object, bool]:
        """(image embedding of the frame, whether it came from the cache). Decodes only on a miss."""
        key = (info.key, frame, served.version)
        emb = served.predictor.cache.get(key)
        if emb is not None:
            return emb, True
        pixels = self.decoded.get(info)[:, :, frame]
        emb, _ = served.predictor.embed(pixels, key)
        return emb, False
