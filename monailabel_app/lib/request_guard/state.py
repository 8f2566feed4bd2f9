"""Per-request state that the app's own code reads while MONAI Label handles a request: whether a file was
uploaded with it (image_access), files to delete once the response is sent, and what to do if the client
goes away before the answer."""
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, List, Optional


@dataclass
class RequestState:
    uploaded: bool = False  # a `file` part came with this request
    remove: List[str] = field(default_factory=list)  # deleted after the response is sent
    disconnected: bool = False  # the client went away before the answer
    on_disconnect: List[Callable[[], None]] = field(default_factory=list)


STATE: ContextVar[Optional[RequestState]] = ContextVar("samus_request_state", default=None)


def current() -> Optional[RequestState]:
    """The state of the request being handled; None outside one (the train subprocess, tests)."""
    return STATE.get()


def remove_after_response(path: str) -> None:
    """Delete `path` once the response of the current request has been sent (no-op outside a request)."""
    state = STATE.get()
    if state is not None:
        state.remove.append(path)


def on_disconnect(callback: Callable[[], None]) -> None:
    """Call `callback` (from the event loop) if the client of the current request closes its connection
    before the answer, e.g. a viewer's Stop button aborting a propagation; at once if it already has."""
    state = STATE.get()
    if state is not None:
        state.on_disconnect.append(callback)
        if state.disconnected:
            callback()


async def watch_disconnect(receive, state: RequestState):
    """After the body, the next ASGI message can only be the client's disconnect."""
    message = await receive()
    if message.get("type") == "http.disconnect":
        state.disconnected = True
        for callback in list(state.on_disconnect):
            callback()
    return message
