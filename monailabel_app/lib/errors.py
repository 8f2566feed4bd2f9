"""HTTP errors raised from inside tasks and the datastore.

MONAI Label 0.8.5 calls infer tasks and the datastore synchronously from its FastAPI handlers and has no
exception handler of its own: anything but an HTTPException becomes a bare 500. A bad request must get a
4xx with a message that names the problem, so the app raises these.
"""
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


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def forbidden(message: str) -> HTTPException:
    return HTTPException(status_code=403, detail=message)


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


def too_large(message: str) -> HTTPException:
    return HTTPException(status_code=413, detail=message)


def unavailable(message: str) -> HTTPException:
    return HTTPException(status_code=503, detail=message)


def conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


def too_many(message: str) -> HTTPException:
    return HTTPException(status_code=429, detail=message)
