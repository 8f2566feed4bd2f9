"""How much clients may store: datastore uploads and sessions, bounded in number and in bytes.

Each upload is small next to `--conf max_upload_mb`, but nothing else stopped a client from filling the
disk with many of them. The datastore (images and labels in the studies folder) and the session store
each get a number of files and a total size; an upload beyond gets 429 (too many) or 413 (too large),
naming the `--conf` key. Before sessions are refused, expired ones are removed (MONAI Label also removes
them every 5 minutes; a session lives at most MONAI_LABEL_SESSION_EXPIRY seconds after its last use).
"""
import os
from typing import Tuple

from .errors import too_large, too_many


def usage(folder: str) -> Tuple[int, int]:
    """(files, bytes) under `folder`, symbolic links not followed."""
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            files += 1
            size += st.st_size
    return files, size


def check_datastore_room(folder: str, new_files: int, new_bytes: int, max_files: int, max_mb: int) -> None:
    files, size = usage(folder)
    if files + new_files > max_files:
        raise too_many(f"the datastore holds {files} files; this server keeps at most {max_files} "
                       "(--conf max_datastore_files)")
    if size + new_bytes > max_mb * 2**20:
        raise too_large(f"the datastore holds {size / 2**20:.1f} MiB; with this upload ({new_bytes / 2**20:.1f} MiB) "
                        f"it would exceed {max_mb} MiB (--conf max_datastore_mb)")


def check_session_room(sessions, new_bytes: int, max_sessions: int, max_mb: int) -> None:
    """Before PUT /session stores `new_bytes`: remove expired sessions, then check the bounds."""
    sessions.remove_expired()
    store = sessions.store_path
    count = len([d for d in os.listdir(store) if os.path.isdir(os.path.join(store, d))]) if os.path.isdir(store) else 0
    if count >= max_sessions:
        raise too_many(f"{count} sessions are open on this server, the most it keeps (--conf max_sessions); "
                       "delete one (DELETE /session/<id>) or wait until one expires")
    _, size = usage(store) if os.path.isdir(store) else (0, 0)
    if size + new_bytes > max_mb * 2**20:
        raise too_large(f"sessions hold {size / 2**20:.1f} MiB; with this file ({new_bytes / 2**20:.1f} MiB) they "
                        f"would exceed {max_mb} MiB (--conf max_sessions_mb)")
