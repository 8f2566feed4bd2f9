"""HTTP errors raised from inside tasks and the datastore.

MONAI Label 0.8.5 calls infer tasks and the datastore synchronously from its FastAPI handlers and has no
exception handler of its own: anything but an HTTPException becomes a bare 500. A bad request must get a
4xx with a message that names the problem, so the app raises these.
"""
from typing import Callable

from fastapi import HTTPException


def show(v, n: int = 60) -> str:
    """A client's value for an error message, cut short (a request can hold megabytes, or 10^400)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an integer of {v.bit_length()} bits"
    try:
        r = repr(v)
    except ValueError:  # integers beyond Python's digit limit, nested in a list
        r = f"a {type(v).__name__}"
    return r if len(r) <= n else r[:n] + "..."


def _error(status: int) -> Callable[[str], HTTPException]:
    def error(message: str) -> HTTPException:
        return HTTPException(status_code=status, detail=message)

    return error


bad_request = _error(400)
forbidden = _error(403)
not_found = _error(404)
conflict = _error(409)
too_large = _error(413)
too_many = _error(429)
unavailable = _error(503)


def no_whole_slide() -> HTTPException:
    """MONAI Label's whole-slide endpoints (POST /infer/wsi..., and its infer_wsi) are not part of this app."""
    return bad_request("whole-slide inference is not part of this app; use POST /infer/samus")
