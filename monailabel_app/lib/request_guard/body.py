"""Reading a request body once, before MONAI Label: it is checked while it is spooled to an anonymous
temporary file (within the `--conf` size limits), then replayed to MONAI Label unchanged."""
import asyncio
import os
from typing import Dict, Optional
from urllib.parse import parse_qsl

from ..app_conf import RequestLimits
from ..errors import bad_request, too_large
from .checks import check_json
from .multipart import MultipartInspector, parse_options_header
from .parsing import Parsed

CHUNK = 1 << 16


class Disconnected(Exception):
    """The client went away while its body was being read."""


def _check_length(headers: Dict[bytes, bytes], limits: RequestLimits) -> None:
    length = headers.get(b"content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise bad_request("Content-Length is not a number")
        if int(length) > limits.upload_bytes:
            raise too_large(f"the request body is {int(length)} bytes; this server accepts at most "
                            f"{limits.upload_bytes} (--conf max_upload_mb)")


def _inspector(content_type: bytes, options, parsed: Parsed, limits: RequestLimits,
               capture_files: bool) -> Optional[MultipartInspector]:
    if content_type != b"multipart/form-data":
        return None
    if not options.get(b"boundary"):
        raise bad_request("multipart/form-data without a boundary")
    return MultipartInspector(options[b"boundary"], parsed, limits, capture_files)


async def _spool(receive, spool, parsed: Parsed, inspector: Optional[MultipartInspector], limit: int) -> None:
    multipart = inspector is not None
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
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


def _parse_plain(content_type: bytes, spool, parsed: Parsed, limits: RequestLimits) -> None:
    """A urlencoded form or a JSON body (read back from the spool, which is left at its start)."""
    if content_type == b"application/x-www-form-urlencoded":
        try:
            parsed.fields = parse_qsl(spool.read().decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise bad_request("the form is not UTF-8 text") from None
        spool.seek(0)
    elif parsed.body_bytes and (not content_type or content_type.endswith(b"json")):
        parsed.json_body = check_json(spool.read(), "the JSON body", limits.params_bytes, allow_null=True)
        spool.seek(0)


async def read_body(scope, receive, spool, parsed: Parsed, limits: RequestLimits, capture_files: bool) -> None:
    """Spool the whole body and fill `parsed` from it; `capture_files` keeps copies of file parts."""
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    _check_length(headers, limits)
    content_type, options = parse_options_header(headers.get(b"content-type", b""))
    inspector = _inspector(content_type, options, parsed, limits, capture_files)
    limit = limits.upload_bytes if inspector is not None else limits.params_bytes
    await _spool(receive, spool, parsed, inspector, limit)
    if inspector is not None:
        inspector.finish()
    else:
        _parse_plain(content_type, spool, parsed, limits)


def replay(spool, watcher):
    """An ASGI `receive` that hands MONAI Label the spooled body, then waits on `watcher` for a disconnect."""
    done = False

    async def receive():
        nonlocal done
        if done:  # the body was read: only http.disconnect can come, which the watcher receives
            return await asyncio.shield(watcher)
        chunk = spool.read(CHUNK)
        more = bool(chunk) and spool.tell() < _size(spool)
        done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}

    return receive


def _size(spool) -> int:
    position = spool.tell()
    spool.seek(0, os.SEEK_END)
    end = spool.tell()
    spool.seek(position)
    return end
