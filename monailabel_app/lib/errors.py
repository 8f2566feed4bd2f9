"""HTTP errors raised from inside tasks and the datastore.

MONAI Label 0.8.5 calls infer tasks and the datastore synchronously from its FastAPI handlers and has no
exception handler of its own: anything but an HTTPException becomes a bare 500. A bad request must get a
4xx with a message that names the problem, so the app raises these.
"""
from fastapi import HTTPException


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


def too_large(message: str) -> HTTPException:
    return HTTPException(status_code=413, detail=message)


def unavailable(message: str) -> HTTPException:
    return HTTPException(status_code=503, detail=message)
