"""Atomic file replacement: readers see the old file or the new one, never a partial one."""
import contextlib
import json
import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"  # the name of a file still being written, beside its destination (listers skip these)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` in one rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a published model must be readable like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj, indent: int = 2, allow_nan: bool = True) -> None:
    """`obj` as JSON at `path`, replaced atomically (the folder is created when missing)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=indent, allow_nan=allow_nan))
