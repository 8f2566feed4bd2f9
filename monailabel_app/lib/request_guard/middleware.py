"""The ASGI middleware: per request, token check, route rules on the path and query, the body read and
checked once (spooled), then MONAI Label gets the same request; 4xx answers name the problem."""
import asyncio
import contextlib
import json
import os
import tempfile
from typing import Dict, Optional

from fastapi import HTTPException

from ..app_conf import RequestLimits
from ..errors import bad_request
from .auth import api_path, authenticate
from .body import Disconnected, read_body, replay
from .hooks import GuardHooks
from .parsing import Parsed, check_json_fields, parse_query
from .policies import RoutePolicies
from .state import STATE, RequestState, watch_disconnect


class RequestGuard:
    """ASGI middleware in front of MONAI Label's app; `hooks` answers what only the SAMUS app knows."""

    def __init__(self, app, limits: RequestLimits, hooks: GuardHooks):
        self.app = app
        self.limits = limits
        self.hooks = hooks
        self.policies = RoutePolicies(hooks)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = RequestState()
        token = STATE.set(state)
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # anonymous on disk beyond 1 MiB
        try:
            if await self._checked(scope, receive, send, spool, state):
                watcher = asyncio.ensure_future(watch_disconnect(receive, state))
                try:
                    await self.app(scope, replay(spool, watcher), send)
                finally:
                    watcher.cancel()
        finally:
            spool.close()
            STATE.reset(token)
            for path in state.remove:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def _checked(self, scope, receive, send, spool, state: RequestState) -> bool:
        """Whether the request passed the checks (its body is then in `spool`); if not, it was answered."""
        parsed = Parsed(query={})
        try:
            await self._check(scope, receive, spool, parsed)
        except HTTPException as e:
            await respond(send, e.status_code, e.detail, e.headers)
            return False
        except Disconnected:
            return False
        finally:
            for path in parsed.captured:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        state.uploaded = bool(parsed.files_named("file"))
        return True

    async def _check(self, scope, receive, spool, parsed: Parsed) -> None:
        authenticate(scope)
        parsed.query = parse_query(scope.get("query_string", b""))
        path = api_path(scope)
        match = self.policies.match(scope["method"], path)
        if match:
            match.before(parsed)
        capture = scope["method"] == "PUT" and path.startswith("/model/")  # uploaded weights are tried first
        await read_body(scope, receive, spool, parsed, self.limits, capture)
        check_json_fields(parsed, self.limits.params_bytes)
        if match:
            match.after(parsed)
        await self._check_captured(parsed)

    async def _check_captured(self, parsed: Parsed) -> None:
        """PUT /model: the uploaded weights must load before MONAI Label puts them in place of the served ones."""
        import anyio

        for path in parsed.captured:
            error = await anyio.to_thread.run_sync(self.hooks.check_model_file, path)
            if error:
                raise bad_request(f"the uploaded model cannot be served: {error}")


async def respond(send, status: int, detail, headers: Optional[Dict[str, str]] = None) -> None:
    """A JSON answer {"detail": ...} as FastAPI gives for an HTTPException."""
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + extra})
    await send({"type": "http.response.body", "body": body})


def install(asgi_app, limits: RequestLimits, hooks: GuardHooks) -> None:
    """Put the guard into a running Starlette / FastAPI app (after its start-up: MONAI Label creates the app
    instance in its lifespan handler). The middleware stack is rebuilt on the next request."""
    from starlette.middleware import Middleware

    if any(getattr(m, "cls", None) is RequestGuard for m in asgi_app.user_middleware):
        return
    asgi_app.user_middleware.append(Middleware(RequestGuard, limits=limits, hooks=hooks))
    asgi_app.middleware_stack = None
