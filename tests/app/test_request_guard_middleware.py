"""The request guard's token checks, per-request state and ASGI middleware with a stand-in for MONAI Label."""
import asyncio
import json
import os
import sys

import pytest
from fastapi import HTTPException
from monailabel.config import settings

from app_server import APP_DIR
from helpers_app import multipart

sys.path.insert(0, str(APP_DIR))  # the app's `lib` package, as MONAI Label imports it
from lib import request_guard  # noqa: E402
from lib.request_guard.auth import api_path, authenticate, bearer_token  # noqa: E402
from test_request_guard_policies import App  # noqa: E402


def http(path, method="POST", query=b"", headers=()):
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": list(headers)}


def test_api_path_drops_monai_labels_prefix(monkeypatch):
    assert api_path(http("/infer/samus")) == "/infer/samus"
    monkeypatch.setattr(settings, "MONAI_LABEL_API_STR", "/api")
    assert api_path(http("/api/infer/samus")) == "/infer/samus" and api_path(http("/other")) == "/other"


def test_bearer_token_is_read_from_the_authorization_header():
    assert bearer_token(http("/", headers=[(b"Authorization", b"Bearer abc.def")])) == "abc.def"
    assert bearer_token(http("/", headers=[(b"authorization", b"Basic abc")])) == ""
    assert bearer_token(http("/")) == ""


def test_authenticate_refuses_requests_without_a_valid_token(monkeypatch):
    authenticate(http("/infer/samus"))  # authentication off: nothing to check
    monkeypatch.setattr(settings, "MONAI_LABEL_AUTH_ENABLE", True)
    for public in ("/", "/docs", "/auth/token", "/static/x.js"):
        authenticate(http(public))
    for headers in ([], [(b"authorization", b"Bearer  ")], [(b"authorization", b"Bearer not-a-token")]):
        with pytest.raises(HTTPException) as caught:
            authenticate(http("/infer/samus", headers=headers))
        assert caught.value.status_code == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_request_state_helpers_do_nothing_outside_a_request():
    assert request_guard.current() is None
    request_guard.remove_after_response("/nonexistent")
    request_guard.on_disconnect(lambda: pytest.fail("called outside a request"))


class Downstream:
    """Stands in for MONAI Label: reads the whole body, records what it saw, answers 200."""

    def __init__(self, on_request=None):
        self.bodies, self.states, self.on_request = [], [], on_request

    async def __call__(self, scope, receive, send):
        body, message = b"", {"more_body": True}
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        self.bodies.append(body)
        self.states.append(request_guard.current())
        if self.on_request:
            self.on_request()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def call(guard, scope, body=b"", content_type=b"application/json"):
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected

    async def send(message):
        sent.append(message)

    scope["headers"] = scope["headers"] + [(b"content-type", content_type)]
    asyncio.run(guard(scope, receive, send))
    detail = json.loads(sent[1]["body"]).get("detail") if sent[0]["status"] != 200 else None
    return sent[0]["status"], detail


@pytest.fixture
def guarded(limits):
    app = App()
    downstream = Downstream()
    return request_guard.RequestGuard(downstream, limits, app.hooks()), downstream, app


def test_the_guard_passes_good_requests_on_unchanged(guarded):
    guard, downstream, _ = guarded
    body, content_type = multipart([("params", '{"foreground": [[1, 2]]}')], [("file", "/tmp/scan.png", b"png")])
    assert call(guard, http("/infer/samus"), body, content_type.encode()) == (200, None)
    assert downstream.bodies == [body] and downstream.states[0].uploaded
    assert call(guard, http("/train/samus"), b'{"max_epochs": 2}') == (200, None)
    assert downstream.bodies[1] == b'{"max_epochs": 2}' and not downstream.states[1].uploaded
    assert request_guard.current() is None  # reset after each request


def test_the_guard_answers_bad_requests_itself(guarded):
    guard, downstream, app = guarded
    assert call(guard, http("/infer/nope", query=b"image=a")) == (404, "no infer task 'nope'; this app has "
                                                                         "samus, samus_propagate")
    status, detail = call(guard, http("/train/samus"), b'{"max_epochs": NaN}')
    assert status == 400 and "the JSON body is not valid JSON" in detail
    body, content_type = multipart([("params", " ")], [("file", "scan.png", b"png")])
    status, detail = call(guard, http("/infer/samus"), body, content_type.encode())
    assert status == 400 and "form field 'params' is empty" in detail
    assert downstream.bodies == [] and app.asked == []  # MONAI Label never saw them


def test_the_guard_tries_uploaded_weights_and_removes_its_copy(limits):
    tried = []
    hooks = App().hooks()
    hooks = request_guard.GuardHooks(**{**hooks.__dict__, "check_model_file": lambda p: tried.append(p) or "bad"})
    guard = request_guard.RequestGuard(Downstream(), limits, hooks)
    body, content_type = multipart(files=[("file", "model.pt", b"not weights")])
    status, detail = call(guard, http("/model/samus", method="PUT"), body, content_type.encode())
    assert status == 400 and detail == "the uploaded model cannot be served: bad"
    assert len(tried) == 1 and not os.path.exists(tried[0])


def test_files_registered_during_a_request_are_removed_after_its_response(limits, tmp_path):
    leftover = tmp_path / "archive.zip"
    leftover.write_bytes(b"zip")
    downstream = Downstream(on_request=lambda: request_guard.remove_after_response(str(leftover)))
    guard = request_guard.RequestGuard(downstream, limits, App().hooks())
    assert call(guard, http("/datastore/dataset", method="GET")) == (200, None)
    assert not leftover.exists()
