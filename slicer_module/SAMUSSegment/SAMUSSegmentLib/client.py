"""HTTP client for the SAMUS MONAI Label app, with timeouts and readable errors.

Standard library only (Slicer's Python has no guaranteed `requests`). A new connection per
request keeps it safe to use from one worker thread while the GUI thread does other work.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse

from .multipart import decode_multipart, encode_multipart

INTERACTIVE_MODEL = "samus"
PROPAGATION_MODEL = "samus_propagate"
TRAINER = "samus"


class ServerError(RuntimeError):
    """A failed request, with a message meant for the user."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServerUnreachable(ServerError):
    """Nothing answered at the address (refused, unknown host, timeout): no server is running there."""


def normalize_url(url: str) -> str:
    """'localhost:8000' -> 'http://localhost:8000'; rejects what cannot be a server address."""
    url = (url or "").strip().rstrip("/")
    if not url:
        raise ServerError("Enter the server address, for example http://127.0.0.1:8000")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"'{url}' is not a server address; use http://host:port, e.g. http://127.0.0.1:8000")
    try:
        parts.port
    except ValueError:
        raise ServerError(f"'{url}' has an invalid port number") from None
    return url


class SamusClient:
    """Talks to one MONAI Label server. Timeouts are in seconds."""

    def __init__(self, url: str, timeout: float = 10.0, infer_timeout: float = 300.0,
                 upload_timeout: float = 600.0):
        self.url = normalize_url(url)
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.upload_timeout = upload_timeout
        parts = urllib.parse.urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")

    # -- transport ----------------------------------------------------------------------
    def _request(self, method: str, path: str, query: dict | None = None, body: bytes | None = None,
                 content_type: str | None = None, timeout: float | None = None):
        """Returns (status, headers, body bytes); raises ServerError for network failures and HTTP >= 400."""
        timeout = self.timeout if timeout is None else timeout
        selector = self._prefix + path
        if query:
            selector += "?" + urllib.parse.urlencode(query)
        what = f"{method} {path}"
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        headers = {"Accept": "*/*"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, selector, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except ConnectionRefusedError:
            raise ServerUnreachable(f"Cannot connect to {self.url}: connection refused. Is the MONAI Label "
                              "server running (for example `make run`) and is the port right?") from None
        except socket.gaierror:
            raise ServerUnreachable(f"Cannot connect to {self.url}: unknown host '{self._host}'.") from None
        except (socket.timeout, TimeoutError):
            raise ServerUnreachable(f"No answer from {self.url} within {timeout:g} s ({what}). The server may be "
                              "busy (first inference loads the model) or unreachable.") from None
        except ssl.SSLError as exc:
            raise ServerError(f"TLS error talking to {self.url}: {exc}. Use http:// for a plain server.") from None
        except (http.client.HTTPException, OSError) as exc:
            raise ServerError(f"Connection to {self.url} failed during {what}: {exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            raise ServerError(f"Server error {response.status} on {what}: {_detail(data)}", response.status)
        return response.status, response.headers, data

    def _json(self, method, path, query=None, payload=None, timeout=None):
        body = None if payload is None else json.dumps(payload).encode()
        _, _, data = self._request(method, path, query, body, "application/json" if body else None, timeout)
        try:
            return json.loads(data.decode("utf-8")) if data.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ServerError(f"{self.url} answered {method} {path} with something that is not JSON; "
                              "is this a MONAI Label server?") from None

    # -- app info -------------------------------------------------------------------------
    def info(self) -> dict:
        try:
            info = self._json("GET", "/info/")
        except ServerError as exc:
            if exc.status == 404:
                raise ServerError(f"{self.url} is a web server but not MONAI Label (no /info/).", 404) from None
            raise
        if not isinstance(info, dict) or "models" not in info:
            raise ServerError(f"{self.url} is not a MONAI Label server (its /info/ lacks 'models').")
        return info

    def connect(self) -> dict:
        """info() plus a check that this is the SAMUS app; returns the info."""
        info = self.info()
        models = info.get("models") or {}
        if INTERACTIVE_MODEL not in models:
            raise ServerError(f"{self.url} is a MONAI Label server but not the SAMUS app: it has no "
                              f"'{INTERACTIVE_MODEL}' model (models: {', '.join(models) or 'none'}).")
        return info

    # -- datastore ------------------------------------------------------------------------
    def has_image(self, image_id: str) -> bool:
        try:
            self._request("HEAD", "/datastore/image", {"image": image_id})
        except ServerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def upload_image(self, image_id: str, data: bytes, filename: str, params: dict | None = None) -> str:
        body, ctype = encode_multipart({"params": json.dumps(params or {})}, {"file": (filename, data)})
        _, _, answer = self._request("PUT", "/datastore/image", {"image": image_id}, body, ctype,
                                     self.upload_timeout)
        return json.loads(answer).get("image", image_id)

    def download_image(self, image_id: str) -> tuple[bytes, str]:
        """Returns (bytes, file name as the server stores it)."""
        _, headers, data = self._request("GET", "/datastore/image", {"image": image_id},
                                         timeout=self.upload_timeout)
        filename = _filename(headers.get("Content-Disposition", "")) or image_id
        return data, filename

    def save_label(self, image_id: str, data: bytes, filename: str, params: dict | None = None,
                   tag: str = "final") -> dict:
        body, ctype = encode_multipart({"params": json.dumps(params or {})}, {"label": (filename, data)})
        _, _, answer = self._request("PUT", "/datastore/label", {"image": image_id, "tag": tag}, body, ctype,
                                     self.upload_timeout)
        return json.loads(answer)

    def datastore(self) -> dict:
        return self._json("GET", "/datastore/", {"output": "stats"})

    # -- inference ------------------------------------------------------------------------
    def infer(self, model: str, image_id: str, params: dict) -> tuple[bytes | None, dict]:
        """Runs an infer task; returns (result file bytes or None, result JSON)."""
        body, ctype = encode_multipart({"params": json.dumps(params)})
        _, headers, data = self._request("POST", f"/infer/{urllib.parse.quote(model)}", {"image": image_id},
                                         body, ctype, self.infer_timeout)
        answer_type = headers.get("Content-Type", "")
        if answer_type.startswith("multipart/"):
            parts = decode_multipart(data, answer_type)
            meta = json.loads(parts["params"].data) if "params" in parts else {}
            image = parts.get("image")
            return (image.data if image else None), meta
        try:
            return None, json.loads(data)
        except json.JSONDecodeError:
            raise ServerError(f"Unexpected answer from /infer/{model} (Content-Type {answer_type!r}).") from None

    # -- training and active learning -------------------------------------------------------
    def train_start(self, model: str = TRAINER, params: dict | None = None) -> dict:
        try:
            return self._json("POST", f"/train/{urllib.parse.quote(model)}", payload=params or {})
        except ServerError as exc:
            if exc.status == 429:
                raise ServerError("A training task is already running on the server.", 429) from None
            raise

    def train_status(self, check_if_running: bool = False) -> dict | None:
        """The latest (or the running) training task, or None when there is none."""
        query = {"check_if_running": "true"} if check_if_running else None
        try:
            return self._json("GET", "/train/", query)
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise

    def train_stats(self, trainer: str = TRAINER) -> dict | None:
        """The trainer's own record of its latest run (/info/'s train_stats), or None when it has none."""
        stats = (self.info().get("train_stats") or {}).get(trainer)
        return stats if isinstance(stats, dict) and stats else None

    def train_stop(self) -> dict:
        return self._json("DELETE", "/train/")

    def next_sample(self, strategy: str, params: dict | None = None) -> dict:
        """The strategy's next unlabelled image ({} when all are labelled)."""
        return self._json("POST", f"/activelearning/{urllib.parse.quote(strategy)}", payload=params or {}) or {}


def _detail(data: bytes) -> str:
    """FastAPI puts its reason in {'detail': ...}; fall back to the start of the body."""
    try:
        detail = json.loads(data).get("detail")
        if detail:
            return detail if isinstance(detail, str) else json.dumps(detail)
    except (ValueError, AttributeError):
        pass
    text = data.decode("utf-8", "replace").strip()
    return text[:300] or "(empty answer)"


def _filename(disposition: str) -> str | None:
    for item in disposition.split(";"):
        key, _, value = item.strip().partition("=")
        if key.lower() == "filename":
            return value.strip('"')
    return None
