"""Run MONAI Label's model endpoints in worker threads instead of on the event loop.

MONAI Label 0.8.5 declares its handlers `async def` but does all their work synchronously (`run_inference`
calls the infer task directly), so while one request segments, the event loop is blocked and no other
request is even read. Its MONAI_LABEL_INFER_CONCURRENCY pool does not change that: the handler waits for
the pool's future on the event loop. Here the chosen routes are rebuilt with a plain `def` endpoint of the
same signature, which FastAPI runs in its (bounded) worker-thread pool; the scheduler then decides whose
model work runs first. The handlers never await, so driving their coroutine one step runs them to the end.
"""
import asyncio
import inspect
import logging
from typing import Iterable, Tuple

logger = logging.getLogger(__name__)


def _synchronous(endpoint):
    def call(*args, **kwargs):
        coro = endpoint(*args, **kwargs)
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value
        coro.close()
        raise RuntimeError(f"{endpoint.__name__} awaits something; it cannot run in a worker thread")

    # No __wrapped__: FastAPI would follow it and see a coroutine function again.
    call.__signature__ = inspect.signature(endpoint)
    call.__name__ = endpoint.__name__
    call.__doc__ = endpoint.__doc__
    call.__module__ = endpoint.__module__
    return call


def _routers(router):
    """The router and the routers included in it (FastAPI >= 0.16x keeps them as objects)."""
    yield router
    for route in router.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routers(inner)


def run_in_threads(asgi_app, routes: Iterable[Tuple[str, str]]) -> int:
    """Rebuild the routes given as (method, path without the API prefix); returns how many were rebuilt."""
    from fastapi.routing import APIRoute
    from monailabel.config import settings

    prefix = settings.MONAI_LABEL_API_STR or ""
    wanted = {(m, p) for m, p in routes} | {(m, prefix + p) for m, p in routes}
    rebuilt = 0
    for router in _routers(asgi_app.router):
        changed = False
        for i, route in enumerate(router.routes):
            if not isinstance(route, APIRoute) or not asyncio.iscoroutinefunction(route.endpoint):
                continue
            if not any((m, route.path) in wanted for m in route.methods):
                continue
            router.routes[i] = APIRoute(
                route.path, _synchronous(route.endpoint), methods=list(route.methods), name=route.name,
                summary=route.summary, description=route.description, tags=route.tags,
                dependencies=route.dependencies, response_class=route.response_class,
                include_in_schema=route.include_in_schema)
            rebuilt += 1
            changed = True
        if changed and hasattr(router, "_mark_routes_changed"):
            router._mark_routes_changed()  # FastAPI caches the routes of included routers by version
    if rebuilt != len(set(routes)):
        logger.warning(f"{rebuilt} of the routes {sorted(set(routes))} were moved to worker threads")
    return rebuilt
