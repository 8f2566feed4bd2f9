"""What both SAMUS infer tasks share: the served models, image access rules, decoded-image cache.

Several models may be served (lib/configs); a request names one in its `variant` parameter (`model` is
MONAI Label's name for the infer task), which /info shows as a list in the task's config, the default
first, so MONAI Label's Slicer plugin and ours offer the choice."""
import logging
from typing import Dict, Optional, Tuple

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from ..app_conf import RequestLimits
from ..errors import bad_request, show, unavailable
from ..image_access import DATASTORE, UPLOAD, ImageAccess
from ..image_io import DecodedImages, ImageInfo, inspect_image
from ..model_service import ModelService, Served

logger = logging.getLogger(__name__)

LABELS = ["object"]  # SAMUS segments whatever is clicked: one binary label


class SamusInferBase(InferTask):
    scheduler = None  # scheduler.Scheduler and encode_ahead.EncodeAhead, set by the app (main.py)
    encode_ahead = None

    def __init__(self, services: Dict[str, ModelService], access: ImageAccess, decoded: DecodedImages,
                 limits: RequestLimits, description: str, config: Optional[Dict] = None, default: Optional[str] = None):
        self.services = dict(services) if isinstance(services, dict) else {services.name: services}
        self.default_model = default or next(iter(self.services))
        choices = [self.default_model] + [n for n in self.services if n != self.default_model]
        # DEEPGROW makes the official Slicer plugin offer the task under SmartEdit; dimension 2 makes it send
        # the current frame as `slice` with the clicks of that frame.
        super().__init__(type=InferType.DEEPGROW, labels=LABELS, dimension=2, description=description,
                         config=dict(config or {}, variant=choices))
        self.service = self.services[self.default_model]
        self.access = access
        self.decoded = decoded
        self.limits = limits

    def is_valid(self) -> bool:
        return True

    def info(self) -> Dict:
        info = super().info()
        info["variants"] = {name: {"description": s.description, "default": name == self.default_model}
                            for name, s in self.services.items()}
        return info

    def get_path(self, validate=True):
        """The default model's weights (GET /model/<task>); its publish path for PUT /model/<task>."""
        return self.service.current_file() if validate else self.service.publish_path

    def service_for(self, request: Optional[dict]) -> ModelService:
        name = (request or {}).get("variant")
        if name in (None, ""):
            return self.service
        if not isinstance(name, str) or name not in self.services:
            raise bad_request(f"variant must be one of {', '.join(self.services)} (the models this server serves), "
                              f"got {show(name)}")
        return self.services[name]

    def served(self, request: Optional[dict] = None) -> Served:
        service = self.service_for(request)
        try:
            return service.get()
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
