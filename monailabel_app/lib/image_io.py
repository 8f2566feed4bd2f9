"""Reading request images (header first, so bad or huge files are refused before decoding) and writing
result labels in the input's geometry.

Clicks are voxel indices as MONAI Label's `LoadImaged` (and the Slicer plugin) give them: [x, y] for 2D
files (column, row) and [i, j, k] for volumes, where frame k is the volume's k-th slice along its last axis
and i runs along the frame's columns, j along its rows - the orientation viewers show and `samus.data`
trains on. So a click is always (x, y[, frame]).
"""
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from samus.io import IMAGE_EXTS, VOLUME_EXTS, read_array, read_header

from .app_conf import RequestLimits
from .errors import bad_request, too_large
from .file_checks import check_self_contained

# A result for a 2D image must be lossless: no JPEG.
LABEL_EXTS_2D = (".png", ".nrrd", ".nii.gz", ".nii", ".mha", ".tif", ".tiff")
LABEL_EXTS_3D = (".nrrd", ".seg.nrrd", ".nii.gz", ".nii", ".mha")
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def file_ext(path: str) -> str:
    name = os.path.basename(path).lower()
    for ext in (".seg.nrrd",) + VOLUME_EXTS + IMAGE_EXTS:
        if name.endswith(ext):
            return ext
    return os.path.splitext(name)[1]


@dataclass(frozen=True)
class ImageInfo:
    path: str
    key: str  # identity of the file's content, for cache keys
    is_volume: bool
    rows: int
    cols: int
    frames: int  # 1 for a 2D image
    ext: str
    itk_size: Tuple[int, ...] = ()  # volumes: full ITK size (i, j[, k...]) and geometry for the result
    spacing: Tuple[float, ...] = ()
    origin: Tuple[float, ...] = ()
    direction: Tuple[float, ...] = ()


def content_key(path: str, uploaded: bool) -> str:
    """Datastore/session files are identified by path + mtime + size; uploads (a new temporary file for
    every request) by a hash of their bytes, so repeated uploads of one image share embeddings."""
    if uploaded:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return "sha1:" + h.hexdigest()
    st = os.stat(path)
    return f"{os.path.realpath(path)}|{st.st_mtime_ns}|{st.st_size}"


def inspect_image(path: str, limits: RequestLimits, uploaded: bool = False, client_file: bool = False) -> ImageInfo:
    """Header-only look at an image: kind, size, geometry. 400 for unreadable files, 413 for huge ones.
    `client_file`: sent by a client (upload, session, label), so it must hold its own pixels."""
    if not os.path.isfile(path):
        raise bad_request(f"image file {os.path.basename(path)!r} does not exist")
    if os.path.getsize(path) == 0:
        raise bad_request("the image file is empty")
    if client_file or uploaded:
        check_self_contained(path)
    ext = file_ext(path)
    if ext in VOLUME_EXTS:
        info = _inspect_volume(path, ext)
    elif ext in IMAGE_EXTS:
        info = _inspect_2d(path, ext)
    else:
        raise bad_request(f"unsupported image type {ext!r}; accepted: {', '.join(IMAGE_EXTS + VOLUME_EXTS)}")
    pixels = info["rows"] * info["cols"]
    if pixels > limits.frame_pixels:
        raise too_large(f"image frames are {info['rows']} x {info['cols']} = {pixels} pixels; this server accepts "
                        f"at most {limits.frame_pixels} per frame (--conf max_frame_pixels)")
    voxels = pixels * info["frames"]
    if voxels > limits.image_voxels:
        raise too_large(f"image is {info['rows']} x {info['cols']} x {info['frames']} = {voxels} voxels; "
                        f"this server accepts at most {limits.image_voxels} (--conf max_image_voxels)")
    if min(info["rows"], info["cols"]) < 2:
        raise bad_request(f"image frames are {info['rows']} x {info['cols']} pixels; need at least 2 x 2")
    return ImageInfo(path=path, key=content_key(path, uploaded), ext=ext, **info)


_PIL_FORMATS = {".png": ("PNG",), ".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO"), ".bmp": ("BMP",),
                ".tif": ("TIFF",), ".tiff": ("TIFF",)}  # MPO: camera JPEGs with a preview


def _inspect_2d(path: str, ext: str) -> dict:
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            kind = im.format
    except Image.DecompressionBombError as e:
        raise too_large(f"image is too large: {e}") from None
    except Exception as e:  # PIL raises many types for truncated or foreign data
        raise bad_request(f"cannot read the image ({ext}): {e}") from None
    # Pillow picks the decoder from the content: a ".png" that is really EPS or PSD would reach decoders this
    # app never meant to run (EPS runs Ghostscript).
    if kind not in _PIL_FORMATS.get(ext, ()):
        raise bad_request(f"the file is named {ext} but holds {kind or 'unknown'} data")
    return dict(is_volume=False, rows=h, cols=w, frames=1)


def _inspect_volume(path: str, ext: str) -> dict:
    try:
        reader = read_header(path)
    except ValueError as e:
        raise bad_request(f"cannot read the volume ({ext}): {e}") from None
    size = tuple(int(s) for s in reader.GetSize())
    spatial = [s for i, s in enumerate(size) if i < 2 or s != 1]  # singleton axes after the 2nd are dropped
    if len(spatial) < 2:
        raise bad_request(f"volume of size {size} has only {len(size)} axis; expected a 2D frame, a 3D volume or "
                          "a cine")
    if len(spatial) > 3:
        raise bad_request(f"volume of size {size} has {len(spatial)} non-singleton axes; expected a 3D volume "
                          "or a 2D+time cine (H x W x frames)")
    # ITK size is (i, j, k): i runs along a frame's columns, j along its rows.
    return dict(is_volume=True, rows=spatial[1], cols=spatial[0], frames=spatial[2] if len(spatial) == 3 else 1,
                itk_size=size, spacing=tuple(reader.GetSpacing()), origin=tuple(reader.GetOrigin()),
                direction=tuple(reader.GetDirection()))


class DecodedImages:
    """Small LRU of decoded images: a click on a cached frame still needs the image's size and, for a new
    frame of a volume, its pixels; decoding a compressed cine for every click would dominate latency."""

    def __init__(self, max_entries: int = 8, max_bytes: int = 1 << 30):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, info: ImageInfo) -> np.ndarray:
        """rows x cols x frames [x C] array (2D images get a frames axis of 1)."""
        with self._lock:
            a = self._items.get(info.key)
            if a is not None:
                self._items.move_to_end(info.key)
                return a
        a = decode(info)
        with self._lock:
            self._items[info.key] = a
            while len(self._items) > self.max_entries or (
                    len(self._items) > 1 and sum(x.nbytes for x in self._items.values()) > self.max_bytes):
                self._items.popitem(last=False)
        return a


def decode(info: ImageInfo) -> np.ndarray:
    try:
        a, n = read_array(info.path)
    except (ValueError, OSError) as e:
        raise bad_request(f"cannot decode the image: {e}") from None
    if n is None:
        a = a[:, :, None] if a.ndim == 2 else a[:, :, None, :]
    if a.shape[:3] != (info.rows, info.cols, info.frames):
        raise bad_request(f"decoded image shape {a.shape[:3]} does not match its header "
                          f"({info.rows}, {info.cols}, {info.frames})")
    if a.dtype.kind == "f" or (a.dtype.kind == "i" and a.size and a.min() < 0):
        # Scale float / signed volumes once over all frames, so propagation sees consistent intensities
        # (samus' per-image rule would rescale every frame on its own).
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise bad_request("the image contains NaN or infinite values")
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def check_result_format(info: ImageInfo, extension: Optional[str], dtype: Optional[str]) -> Tuple[str, str]:
    """(extension, dtype) of the result file; 400 for lossy or unknown choices."""
    allowed = LABEL_EXTS_3D if info.is_volume else LABEL_EXTS_2D
    if extension in (None, ""):
        ext = {".nhdr": ".nrrd", ".mhd": ".mha"}.get(info.ext, info.ext) if info.is_volume else ".png"
    else:
        ext = str(extension).lower()
        ext = ext if ext.startswith(".") else "." + ext
        if ext not in allowed:
            raise bad_request(f"result_extension {extension!r} is not available for a "
                              f"{'volume' if info.is_volume else '2D image'}; accepted: {', '.join(allowed)}")
    dtype = "uint8" if dtype in (None, "") else str(dtype)
    if dtype not in LABEL_DTYPES:
        raise bad_request(f"result_dtype {dtype!r} is unknown; accepted: {', '.join(LABEL_DTYPES)}")
    if ext == ".png" and dtype not in ("uint8", "uint16"):
        raise bad_request(f"a PNG result holds uint8 or uint16, not {dtype}")
    return ext, dtype


def write_label(info: ImageInfo, label: np.ndarray, ext: str, dtype: str) -> str:
    """Write a rows x cols x frames label as a temporary file in the input's geometry; returns its path
    (MONAI Label deletes it after sending)."""
    fd, path = tempfile.mkstemp(suffix=ext, prefix="samus-")
    os.close(fd)
    label = label.astype(dtype)
    if not info.is_volume:
        _write_2d(label[:, :, 0], path, ext)
    else:
        _write_volume(info, label, path)
    return path


def _write_2d(mask: np.ndarray, path: str, ext: str) -> None:
    if ext in (".png", ".tif", ".tiff"):
        from PIL import Image

        Image.fromarray(mask).save(path)
        return
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(mask), path)  # ITK index (x, y) = array[y, x], as the input's


def _write_volume(info: ImageInfo, label: np.ndarray, path: str) -> None:
    import SimpleITK as sitk

    # rows x cols x frames = (j, i, k) -> ITK index order (i, j, k) with any singleton axes of the input back.
    full = np.swapaxes(label, 0, 1).reshape(info.itk_size)
    img = sitk.GetImageFromArray(np.ascontiguousarray(full.transpose(tuple(reversed(range(full.ndim))))))
    img.SetSpacing(info.spacing)
    img.SetOrigin(info.origin)
    img.SetDirection(info.direction)
    sitk.WriteImage(img, path, useCompression=path.endswith(".gz"))
