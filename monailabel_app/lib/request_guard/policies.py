"""Route rules: for each MONAI Label endpoint the guard knows, a check of its path and query (before the
body is read) and one of its body, answering 4xx for what MONAI Label would fail on or should not do."""
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from ..errors import bad_request, conflict, forbidden, no_whole_slide, not_found, too_large, too_many
from .hooks import GuardHooks
from .parsing import Parsed

TRAIN_BODY_BYTES = 64 * 1024  # MONAI Label passes a train request to its subprocess on the command line
INFER_RESERVED = ("image", "model", "session")  # MONAI Label reads these from the merged request
_TRUE = ("true", "1", "yes", "on")
_SESSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")  # MONAI Label makes uuid1 ids; they become folder names

Check = Callable[..., None]  # (parsed, *groups of the path pattern)


@dataclass(frozen=True)
class Route:
    method: str  # or "*"
    pattern: re.Pattern
    before: Optional[Check]  # path and query, before the body is read
    after: Optional[Check]  # the parsed body


@dataclass(frozen=True)
class Match:
    route: Route
    groups: Tuple[str, ...]

    def before(self, parsed: Parsed) -> None:
        if self.route.before:
            self.route.before(parsed, *self.groups)

    def after(self, parsed: Parsed) -> None:
        if self.route.after:
            self.route.after(parsed, *self.groups)


class RoutePolicies:
    """The checks of each route; `hooks` answers what only the app knows."""

    def __init__(self, hooks: GuardHooks):
        self.hooks = hooks
        table = [
            ("POST", r"/infer/(wsi|wsi_v2)/[^/]+/?", self._wsi, None),
            ("POST", r"/infer/([^/]+)/?", self._infer_query, self._infer_body),
            ("PUT", r"/session/?", self._session_query, self._session_body),
            ("GET", r"/session/([^/]+)/?", self._session_id, None),
            ("DELETE", r"/session/([^/]+)/?", self._session_id, None),
            ("POST", r"/train/?", self._train_query, self._train_all),
            ("POST", r"/train/([^/]+)/?", self._train_query, self._train),
            ("POST", r"/scoring/([^/]+)/?", self._scoring, None),
            ("POST", r"/batch/infer/([^/]+)/?", self._batch, None),
            ("GET", r"/logs/?", self._logs, None),
            ("HEAD", r"/datastore/image/?", self._checksum, None),
            ("GET", r"/model/info/([^/]+)/?", self._model, None),
            ("GET", r"/model/([^/]+)/?", self._model, None),
            ("PUT", r"/model/([^/]+)/?", self._model, self._model_upload),
            ("DELETE", r"/model/([^/]+)/?", self._model_delete, None),
            ("POST", r"/reload/?", self._reload, None),
            ("*", r"/proxy/.*", self._proxy, None),
            ("GET", r"/ohif/(.*)", self._ohif, None),
        ]
        self.routes: List[Route] = [Route(method, re.compile(pattern), before, after)
                                    for method, pattern, before, after in table]

    def match(self, method: str, path: str) -> Optional[Match]:
        """The first route for this method and API path (without MONAI Label's prefix); None if no rule."""
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found and route.method in (method, "*"):
                return Match(route, found.groups())
        return None

    # -------------------------------------------------------------------------------------------- infer
    def _wsi(self, parsed: Parsed, *_):
        raise no_whole_slide()

    def _infer_query(self, parsed: Parsed, model: str):
        models = self.hooks.infer_models()
        if model not in models:
            raise not_found(f"no infer task {model!r}; this app has {', '.join(models)}")
        if parsed.query.get("output") == "dicom_seg" and not self.hooks.dicomweb_datastore():
            raise bad_request("output=dicom_seg needs a DICOMweb datastore; use output=image, json or all")
        session_id = parsed.query.get("session_id")
        if session_id:
            self._session_id(parsed, session_id)
            if not self.hooks.session_exists(session_id):
                raise not_found(f"session {session_id!r} does not exist (or has expired)")

    def _infer_body(self, parsed: Parsed, model: str):
        if parsed.files_named("label"):
            raise bad_request("this app's infer tasks take no `label` file")
        if len(parsed.files_named("file")) > 1:
            raise bad_request("upload one image as `file`")
        reserved = [k for k in INFER_RESERVED if k in (parsed.json_fields.get("params") or {})]
        if reserved:
            raise bad_request(f"params may not set {', '.join(reserved)}: give the image as the `image` query "
                              "parameter, a `file` upload or a `session_id`")
        if not (parsed.query.get("image") or parsed.query.get("session_id") or parsed.files_named("file")):
            raise bad_request("no image: give `image` (an id from the datastore), upload a `file`, or a session_id")

    def _batch(self, parsed: Parsed, *_):
        raise bad_request("batch inference is not available: SAMUS segments from clicks, per image")

    # -------------------------------------------------------------------------------------------- sessions
    def _session_query(self, parsed: Parsed, *_):
        if parsed.query.get("uncompress", "").lower() in _TRUE:
            raise bad_request("uncompress is not supported: a session holds one image file")

    def _session_body(self, parsed: Parsed, *_):
        if len(parsed.files) != 1:
            raise bad_request("a session holds one image file: upload exactly one file as `files`")
        self.hooks.check_session_room(parsed.files[0].size)  # 429 / 413 naming --conf max_sessions(_mb)

    def _session_id(self, parsed: Parsed, session_id: str):
        if not _SESSION_ID.fullmatch(session_id):
            raise bad_request(f"session id {session_id[:60]!r} is not a session id (letters, digits and -)")

    # -------------------------------------------------------------------------------------------- training
    def _train_query(self, parsed: Parsed, *_):
        if parsed.query.get("enqueue", "").lower() in _TRUE and self.hooks.train_queued():
            raise too_many("a training run is already queued; wait for it, or stop it with DELETE /train/")

    def _train_options(self, model: str, params) -> None:
        trainers = self.hooks.trainer_names()
        if model not in trainers:
            raise not_found(f"no trainer {model!r}; this app has {', '.join(trainers) or 'none'}")
        if params is not None and not isinstance(params, dict):
            raise bad_request(f"training options for {model!r} must be a JSON object")
        if params and params.get("model", model) != model:
            raise bad_request(f"the options name model {params['model']!r} but the request is for {model!r}")
        self.hooks.check_train_request(model, params or {})

    @staticmethod
    def _train_body_size(parsed: Parsed) -> None:
        if parsed.body_bytes > TRAIN_BODY_BYTES:
            raise too_large(f"a training request holds at most {TRAIN_BODY_BYTES} bytes of options")

    def _train(self, parsed: Parsed, model: str):
        self._train_body_size(parsed)
        self._train_options(model, parsed.json_body)

    def _train_all(self, parsed: Parsed):
        self._train_body_size(parsed)
        for model in self.hooks.trainer_names():
            self._train_options(model, (parsed.json_body or {}).get(model))

    def _scoring(self, parsed: Parsed, method: str):
        methods = self.hooks.scoring_methods()
        if method not in methods:
            raise not_found(f"no scoring method {method!r}; this app has {', '.join(methods) or 'none'}")

    # -------------------------------------------------------------------------------------------- models
    def _model(self, parsed: Parsed, model: str):
        models = self.hooks.infer_models()
        if model not in models:
            raise not_found(f"no model {model!r}; this app has {', '.join(models)}")

    def _model_upload(self, parsed: Parsed, model: str):
        if len(parsed.files) != 1 or not parsed.captured:
            raise bad_request("upload the weights as one `file`")

    def _model_delete(self, parsed: Parsed, model: str):
        self._model(parsed, model)
        error = self.hooks.check_model_delete(model)
        if error:
            raise conflict(error)

    # -------------------------------------------------------------------------------------------- the rest
    def _logs(self, parsed: Parsed):
        for key in ("lines", "refresh"):
            value = parsed.query.get(key)
            if value not in (None, "") and not re.fullmatch(r"\s*-?\d{1,7}\s*", value):
                raise bad_request(f"{key} must be a whole number of at most 7 digits, got {value[:40]!r}")

    def _checksum(self, parsed: Parsed):
        check_sum = parsed.query.get("check_sum")
        if check_sum and ":" in check_sum and check_sum.split(":")[0] not in ("SHA256", "SHA512", "MD5"):
            raise bad_request("check_sum must be <digest> (SHA256) or SHA256:, SHA512: or MD5:<digest>")

    def _reload(self, parsed: Parsed, *_):
        # MONAI Label would build a second app instance (another model in memory each time), without the
        # start-up steps of the first: the guard, server mode.
        raise forbidden("POST /reload is disabled in this app: restart the server to reload it")

    def _proxy(self, parsed: Parsed, *_):
        if not self.hooks.dicomweb_datastore():
            raise not_found("no DICOMweb server behind this app: /proxy/dicom serves only DICOMweb studies")

    def _ohif(self, parsed: Parsed, path: str):
        if any(part in (".", "..") for part in path.split("/")):
            raise not_found("no such OHIF file")
