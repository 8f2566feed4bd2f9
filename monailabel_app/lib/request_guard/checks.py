"""Checks of the values MONAI Label would mishandle: JSON texts (invalid, NaN, nested too deeply), names
with control characters, upload file names too long for a temporary file name."""
import json
import re

from ..errors import bad_request, too_large

MAX_JSON_DEPTH = 32  # MONAI Label deep-copies requests recursively; real params nest 3 levels
MAX_QUERY_VALUE = 4096
MAX_FILENAME_BYTES = 200  # MONAI Label appends the name's suffixes to a temporary name; 255 is the file system's
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_constants(name):
    raise ValueError(f"{name} is not a finite number (JSON has no NaN or Infinity)")


def _check_depth(obj, what: str) -> None:
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise bad_request(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


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
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise bad_request(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as e:
        raise bad_request(f"{what} is not valid JSON: {str(e)[:200]}") from None
    if obj is None and allow_null:
        return None
    if not isinstance(obj, dict):
        raise bad_request(f"{what} must be a JSON object ({{...}}), got {type(obj).__name__}")
    _check_depth(obj, what)
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
