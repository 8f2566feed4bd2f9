"""A validation layer in front of MONAI Label's own endpoints, installed when the server starts.

MONAI Label 0.8.5 handles parts of each request before the app sees them, and answers 500 to what it
cannot handle: `params` / `info` form fields go through json.loads (invalid JSON, or nesting deep enough
for a RecursionError), upload file names become temporary file names (a NUL byte or 250 characters),
`/logs/?lines=` reaches deque() (10^30), `output=dicom_seg` fails after the infer ran. It also accepts
what would harm the app later: NaN in JSON bodies (stored in the datastore json, which no longer loads),
an upload that replaces the served model with garbage, DELETE /model renaming the base checkpoint,
tar extraction into session folders, unbounded bodies and training queues.

This ASGI middleware reads each request first (the body is spooled to an anonymous temporary file, then
replayed to MONAI Label unchanged) and answers 4xx with a message naming the problem, or 413 naming the
`--conf` limit. It also carries per-request state that the app's own code reads: whether a file was
uploaded with this request (image_access), and files to delete once the response is sent.
"""
import asyncio
import contextlib
import json
import os
import re
import tempfile
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl

from fastapi import HTTPException

from .app_conf import RequestLimits
from .errors import bad_request, conflict, forbidden, not_found, too_large, too_many

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ModuleNotFoundError:  # python-multipart < 0.0.13
    from multipart.multipart import MultipartParser, parse_options_header

MAX_JSON_DEPTH = 32  # MONAI Label deep-copies requests recursively; real params nest 3 levels
MAX_QUERY_VALUE = 4096
MAX_PARTS = 16
MAX_FILENAME_BYTES = 200  # MONAI Label appends the name's suffixes to a temporary name; 255 is the file system's
TRAIN_BODY_BYTES = 64 * 1024  # MONAI Label passes a train request to its subprocess on the command line
CHUNK = 1 << 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INFER_RESERVED = ("image", "model", "session")  # MONAI Label reads these from the merged request


@dataclass
class RequestState:
    uploaded: bool = False  # a `file` part came with this request
    remove: List[str] = field(default_factory=list)  # deleted after the response is sent
    disconnected: bool = False  # the client went away before the answer
    on_disconnect: List[Callable[[], None]] = field(default_factory=list)


_STATE: ContextVar[Optional[RequestState]] = ContextVar("samus_request_state", default=None)


def current() -> Optional[RequestState]:
    return _STATE.get()


def remove_after_response(path: str) -> None:
    """Delete `path` once the response of the current request has been sent (no-op outside a request)."""
    state = _STATE.get()
    if state is not None:
        state.remove.append(path)


def on_disconnect(callback: Callable[[], None]) -> None:
    """Call `callback` (from the event loop) if the client of the current request closes its connection
    before the answer, e.g. a viewer's Stop button aborting a propagation; at once if it already has."""
    state = _STATE.get()
    if state is not None:
        state.on_disconnect.append(callback)
        if state.disconnected:
            callback()


async def _watch(receive, state: RequestState):
    """After the body, the next ASGI message can only be the client's disconnect."""
    message = await receive()
    if message.get("type") == "http.disconnect":
        state.disconnected = True
        for callback in list(state.on_disconnect):
            callback()
    return message


# ------------------------------------------------------------------------------------------------ JSON
def check_json(text, what: str, max_bytes: int, allow_null: bool = False):
    """The object a JSON text holds: a JSON object (or nothing), no NaN / Infinity, nested at most
    MAX_JSON_DEPTH levels, at most `max_bytes`. 400 / 413 naming `what` otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"{what} is not UTF-8 text") from None
    if len(text.encode("utf-8")) > max_bytes:
        raise too_large(f"{what} is larger than {max_bytes} bytes (--conf max_params_kb)")
    if not text.strip():
        return None

    def no_constants(name):
        raise ValueError(f"{name} is not a finite number (JSON has no NaN or Infinity)")

    try:
        obj = json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise bad_request(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as e:
        raise bad_request(f"{what} is not valid JSON: {str(e)[:200]}") from None
    if obj is None and allow_null:
        return None
    if not isinstance(obj, dict):
        raise bad_request(f"{what} must be a JSON object ({{...}}), got {type(obj).__name__}")
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise bad_request(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return obj


def check_name_bytes(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise bad_request(f"{what} contains a control character (such as NUL)")


def check_filename(name: str) -> None:
    """MONAI Label's client sends the full local path as the file name; the server keeps its last part."""
    if not name:
        raise bad_request("an uploaded file has an empty file name")
    check_name_bytes(name, f"upload file name {name[:60]!r}")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", ".."):
        raise bad_request(f"upload file name {name[:60]!r} does not end in a file name")
    if len(base.encode("utf-8")) > MAX_FILENAME_BYTES or len(name) > MAX_QUERY_VALUE:
        raise bad_request(f"upload file name {base[:60]!r}... is {len(base.encode('utf-8'))} bytes long; at most "
                          f"{MAX_FILENAME_BYTES}")


# ------------------------------------------------------------------------------------------------ parsing
@dataclass
class Part:
    name: str
    filename: Optional[str]
    data: bytearray = field(default_factory=bytearray)  # fields only
    size: int = 0
    capture: Optional[object] = None  # an open file receiving a file part's bytes


@dataclass
class Parsed:
    query: Dict[str, str]
    fields: List[Tuple[str, str]] = field(default_factory=list)
    files: List[Part] = field(default_factory=list)
    json_body: object = None
    json_fields: Dict[str, object] = field(default_factory=dict)  # checked `params` / `info` form fields
    body_bytes: int = 0
    captured: List[str] = field(default_factory=list)  # temporary copies of file parts, deleted after the checks

    def files_named(self, name: str) -> List[Part]:
        return [p for p in self.files if p.name == name]


class _MultipartInspector:
    """Feeds body chunks to python-multipart and keeps part names, file names and small field values."""

    def __init__(self, boundary: bytes, parsed: Parsed, limits: RequestLimits, capture_files: bool):
        self.parsed, self.limits, self.capture_files = parsed, limits, capture_files
        self.part: Optional[Part] = None
        self.headers: Dict[bytes, bytes] = {}
        self.header_name, self.header_value = b"", b""
        self.error: Optional[HTTPException] = None
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data, "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished})

    def write(self, chunk: bytes) -> None:
        if self.error is None:
            try:
                self.parser.write(chunk)
            except HTTPException as e:
                self.error = e
            except Exception as e:  # python-multipart's own errors for malformed bodies
                self.error = bad_request(f"malformed multipart body: {str(e)[:200]}")

    def finish(self) -> None:
        if self.error is None:
            try:
                self.parser.finalize()
            except Exception as e:
                self.error = bad_request(f"malformed multipart body: {str(e)[:200]}")
        if self.error is not None:
            raise self.error

    def on_part_begin(self):
        self.headers = {}

    def on_header_field(self, data, start, end):
        self.header_name += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self):
        if len(self.parsed.fields) + len(self.parsed.files) >= MAX_PARTS:
            raise bad_request(f"more than {MAX_PARTS} parts in one form")
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise bad_request("a form part has no name (Content-Disposition: form-data; name=...)")
        name = options[b"name"].decode("utf-8", "replace")
        check_name_bytes(name, f"form part name {name[:60]!r}")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        self.part = Part(name=name, filename=filename)
        if filename is not None:
            check_filename(filename)
            self.parsed.files.append(self.part)
            if self.capture_files:
                tmp = tempfile.NamedTemporaryFile(prefix="samus-check-", suffix=".pt", delete=False)
                self.parsed.captured.append(tmp.name)
                self.part.capture = tmp

    def on_part_data(self, data, start, end):
        part = self.part
        part.size += end - start
        if part.filename is None:
            if part.size > self.limits.params_bytes:
                raise too_large(f"form field {part.name!r} is larger than {self.limits.params_bytes} bytes "
                                "(--conf max_params_kb)")
            part.data += data[start:end]
        elif part.capture is not None:
            part.capture.write(data[start:end])

    def on_part_end(self):
        part = self.part
        if part.filename is None:
            try:
                value = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request(f"form field {part.name!r} is not UTF-8 text") from None
            self.parsed.fields.append((part.name, value))
        elif part.capture is not None:
            part.capture.close()


# ------------------------------------------------------------------------------------------------ middleware
class _Disconnected(Exception):
    pass


_TRUE = ("true", "1", "yes", "on")
_SESSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")  # MONAI Label makes uuid1 ids; they become folder names


class RequestGuard:
    """ASGI middleware; `hooks` is the app (SamusApp), asked about tasks, trainers, sessions and models.
    Each route has a check of its path and query (before the body is read) and one of its body."""

    def __init__(self, app, limits: RequestLimits, hooks):
        self.app = app
        self.limits = limits
        self.hooks = hooks
        self.routes: List[Tuple[str, re.Pattern, Optional[Callable], Optional[Callable]]] = [
            ("POST", re.compile(r"/infer/(wsi|wsi_v2)/[^/]+/?"), self._wsi, None),
            ("POST", re.compile(r"/infer/([^/]+)/?"), self._infer_query, self._infer_body),
            ("PUT", re.compile(r"/session/?"), self._session_query, self._session_body),
            ("GET", re.compile(r"/session/([^/]+)/?"), self._session_id, None),
            ("DELETE", re.compile(r"/session/([^/]+)/?"), self._session_id, None),
            ("POST", re.compile(r"/train/?"), self._train_query, self._train_all),
            ("POST", re.compile(r"/train/([^/]+)/?"), self._train_query, self._train),
            ("POST", re.compile(r"/scoring/([^/]+)/?"), self._scoring, None),
            ("POST", re.compile(r"/batch/infer/([^/]+)/?"), self._batch, None),
            ("GET", re.compile(r"/logs/?"), self._logs, None),
            ("HEAD", re.compile(r"/datastore/image/?"), self._checksum, None),
            ("GET", re.compile(r"/model/info/([^/]+)/?"), self._model, None),
            ("GET", re.compile(r"/model/([^/]+)/?"), self._model, None),
            ("PUT", re.compile(r"/model/([^/]+)/?"), self._model, self._model_upload),
            ("DELETE", re.compile(r"/model/([^/]+)/?"), self._model_delete, None),
            ("POST", re.compile(r"/reload/?"), self._reload, None),
            ("*", re.compile(r"/proxy/.*"), self._proxy, None),
            ("GET", re.compile(r"/ohif/(.*)"), self._ohif, None),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = RequestState()
        token = _STATE.set(state)
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # anonymous on disk beyond 1 MiB
        parsed = Parsed(query={})
        try:
            try:
                _authenticate(scope)
                parsed.query = self._query(scope)
                route = self._route(scope)
                if route and route[0]:
                    route[0](parsed, *route[2])
                await self._read(scope, receive, spool, parsed)
                for name, value in parsed.fields:
                    if name in ("params", "info", "wsi"):
                        if not value.strip():  # MONAI Label would json.loads whitespace (500) or read "" as {}
                            raise bad_request(f"form field {name!r} is empty; send a JSON object such as {{}} "
                                              "or leave the field out")
                        parsed.json_fields[name] = check_json(value, f"form field {name!r}", self.limits.params_bytes)
                if route and route[1]:
                    route[1](parsed, *route[2])
                await self._check_captured(parsed)
            except HTTPException as e:
                await _respond(send, e.status_code, e.detail, e.headers)
                return
            except _Disconnected:
                return
            finally:
                for path in parsed.captured:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            state.uploaded = bool(parsed.files_named("file"))
            watcher = asyncio.ensure_future(_watch(receive, state))
            try:
                await self.app(scope, _replay(spool, watcher), send)
            finally:
                watcher.cancel()
        finally:
            spool.close()
            _STATE.reset(token)
            for path in state.remove:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    # -------------------------------------------------------------------------------------------- reading
    @staticmethod
    def _query(scope) -> Dict[str, str]:
        query = {}
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            check_name_bytes(key + value, f"query parameter {key[:40]!r}")
            if len(value) > MAX_QUERY_VALUE:
                raise bad_request(f"query parameter {key[:40]!r} is longer than {MAX_QUERY_VALUE} characters")
            query[key] = value
        return query

    def _route(self, scope):
        path, method = _api_path(scope), scope["method"]
        for route_method, pattern, before, after in self.routes:
            match = pattern.fullmatch(path)
            if match and route_method in (method, "*"):
                return before, after, match.groups()
        return None

    async def _read(self, scope, receive, spool, parsed: Parsed) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise bad_request("Content-Length is not a number")
            if int(length) > self.limits.upload_bytes:
                raise too_large(f"the request body is {int(length)} bytes; this server accepts at most "
                                f"{self.limits.upload_bytes} (--conf max_upload_mb)")
        content_type, options = parse_options_header(headers.get(b"content-type", b""))
        multipart = content_type == b"multipart/form-data"
        inspector = None
        if multipart:
            if not options.get(b"boundary"):
                raise bad_request("multipart/form-data without a boundary")
            capture = scope["method"] == "PUT" and _api_path(scope).startswith("/model/")
            inspector = _MultipartInspector(options[b"boundary"], parsed, self.limits, capture)
        limit = self.limits.upload_bytes if multipart else self.limits.params_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            parsed.body_bytes += len(chunk)
            if parsed.body_bytes > limit:
                key = "--conf max_upload_mb" if multipart else "--conf max_params_kb, for bodies without files"
                raise too_large(f"the request body is larger than {limit} bytes, the most this server accepts ({key})")
            spool.write(chunk)
            if inspector is not None:
                inspector.write(chunk)
            if not message.get("more_body", False):
                break
        spool.seek(0)
        if inspector is not None:
            inspector.finish()
        elif content_type == b"application/x-www-form-urlencoded":
            try:
                parsed.fields = parse_qsl(spool.read().decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise bad_request("the form is not UTF-8 text") from None
            spool.seek(0)
        elif parsed.body_bytes and (not content_type or content_type.endswith(b"json")):
            parsed.json_body = check_json(spool.read(), "the JSON body", self.limits.params_bytes, allow_null=True)
            spool.seek(0)

    async def _check_captured(self, parsed: Parsed) -> None:
        """PUT /model: the uploaded weights must load before MONAI Label puts them in place of the served ones."""
        import anyio

        for path in parsed.captured:
            error = await anyio.to_thread.run_sync(self.hooks.check_model_file, path)
            if error:
                raise bad_request(f"the uploaded model cannot be served: {error}")

    # -------------------------------------------------------------------------------------------- routes
    def _wsi(self, parsed: Parsed, *_):
        raise bad_request("whole-slide inference is not part of this app; use POST /infer/samus")

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

    def _train(self, parsed: Parsed, model: str):
        if parsed.body_bytes > TRAIN_BODY_BYTES:
            raise too_large(f"a training request holds at most {TRAIN_BODY_BYTES} bytes of options")
        self._train_options(model, parsed.json_body)

    def _train_all(self, parsed: Parsed):
        if parsed.body_bytes > TRAIN_BODY_BYTES:
            raise too_large(f"a training request holds at most {TRAIN_BODY_BYTES} bytes of options")
        for model in self.hooks.trainer_names():
            self._train_options(model, (parsed.json_body or {}).get(model))

    def _scoring(self, parsed: Parsed, method: str):
        methods = self.hooks.scoring_methods()
        if method not in methods:
            raise not_found(f"no scoring method {method!r}; this app has {', '.join(methods) or 'none'}")

    def _batch(self, parsed: Parsed, *_):
        raise bad_request("batch inference is not available: SAMUS segments from clicks, per image")

    def _logs(self, parsed: Parsed):
        for key in ("lines", "refresh"):
            value = parsed.query.get(key)
            if value not in (None, "") and not re.fullmatch(r"\s*-?\d{1,7}\s*", value):
                raise bad_request(f"{key} must be a whole number of at most 7 digits, got {value[:40]!r}")

    def _checksum(self, parsed: Parsed):
        check_sum = parsed.query.get("check_sum")
        if check_sum and ":" in check_sum and check_sum.split(":")[0] not in ("SHA256", "SHA512", "MD5"):
            raise bad_request("check_sum must be <digest> (SHA256) or SHA256:, SHA512: or MD5:<digest>")

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


_PUBLIC = re.compile(r"/(|docs|openapi\.json|favicon\.ico|auth(/.*)?|static(/.*)?)")  # no RBAC in MONAI Label


def _authenticate(scope) -> None:
    """With MONAI Label's authentication on, a request needs a valid token before the guard looks at it
    (MONAI Label checks roles later): otherwise anyone could learn task names from the guard's answers or
    make the server load uploaded weights."""
    from monailabel.config import settings

    if not settings.MONAI_LABEL_AUTH_ENABLE or _PUBLIC.fullmatch(_api_path(scope)):
        return
    import jwt
    from monailabel.endpoints.user.auth import from_token

    unauthorized = HTTPException(status_code=401, detail="Could not validate credentials",
                                 headers={"WWW-Authenticate": "Bearer"})
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized
    try:
        jwt.get_unverified_header(token)  # malformed tokens fail here, before the realm's key is fetched
        from_token(token.strip())
    except jwt.InvalidTokenError:
        raise unauthorized from None


def _api_path(scope) -> str:
    from monailabel.config import settings

    path = scope.get("path", "")
    prefix = settings.MONAI_LABEL_API_STR or ""
    return path[len(prefix):] if prefix and path.startswith(prefix) else path


def _replay(spool, watcher):
    done = False

    async def replay():
        nonlocal done
        if done:  # the body was read: only http.disconnect can come, which the watcher receives
            return await asyncio.shield(watcher)
        chunk = spool.read(CHUNK)
        more = bool(chunk) and spool.tell() < _size(spool)
        done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}

    return replay


def _size(spool) -> int:
    position = spool.tell()
    spool.seek(0, os.SEEK_END)
    end = spool.tell()
    spool.seek(position)
    return end


async def _respond(send, status: int, detail, headers: Optional[Dict[str, str]] = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + extra})
    await send({"type": "http.response.body", "body": body})


def install(asgi_app, limits: RequestLimits, hooks) -> None:
    """Put the guard into a running Starlette / FastAPI app (after its start-up: MONAI Label creates the app
    instance in its lifespan handler). The middleware stack is rebuilt on the next request."""
    from starlette.middleware import Middleware

    if any(getattr(m, "cls", None) is RequestGuard for m in asgi_app.user_middleware):
        return
    asgi_app.user_middleware.append(Middleware(RequestGuard, limits=limits, hooks=hooks))
    asgi_app.middleware_stack = None
