"""Send each image to the server once: content-addressed ids and an upload cache."""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

import numpy as np

from .nrrd import write_nrrd


@dataclass(frozen=True, eq=False)
class FrameStack:
    """A snapshot of the input as the server sees it: frames stacked along K.

    `change_key` is cheap to compute in Slicer (node id + modification time); when it is
    the same as last time the image is known to be unchanged and is not hashed again.
    """
    name: str
    array: np.ndarray           # [k, j, i], one frame per k
    ijk_to_ras: np.ndarray      # 4x4
    change_key: tuple = ()

    @property
    def n_frames(self) -> int:
        return int(self.array.shape[0])

    @property
    def frame_shape(self) -> tuple:
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def dims_ijk(self) -> tuple:
        return tuple(int(s) for s in self.array.shape[::-1])


def safe_name(name: str) -> str:
    """Makes a node name usable in an image id and a file name."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", name or "image").strip("_")
    return (name or "image")[:40]


def content_id(stack: FrameStack) -> str:
    """Image id that changes exactly when voxels, geometry or shape change."""
    h = hashlib.sha1()
    a = np.ascontiguousarray(stack.array)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(np.round(np.asarray(stack.ijk_to_ras, dtype=float), 6).tobytes())
    h.update(a.data)
    return f"{safe_name(stack.name)}_{h.hexdigest()[:12]}"


class ImageUploader:
    """Maps a FrameStack to a server image id, uploading only what the server lacks."""

    def __init__(self, client):
        self.client = client
        self._ids: dict[tuple, str] = {}  # change_key -> image id
        self._lock = threading.Lock()
        self.uploads = 0  # how many times image bytes were actually sent

    def ensure(self, stack: FrameStack) -> str:
        with self._lock:
            if stack.change_key and stack.change_key in self._ids:
                return self._ids[stack.change_key]
            image_id = content_id(stack)
            if not self.client.has_image(image_id):
                data = write_nrrd(stack.array, stack.ijk_to_ras, compress=True)
                self.client.upload_image(image_id, data, f"{image_id}.nrrd", {"source": "3D Slicer SAMUSSegment"})
                self.uploads += 1
            if stack.change_key:
                self._ids[stack.change_key] = image_id
            return image_id

    def remember(self, change_key: tuple, image_id: str) -> None:
        """Records that an image loaded from the server (next sample) already is `image_id`."""
        with self._lock:
            self._ids[change_key] = image_id
