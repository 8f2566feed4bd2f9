"""Image and label files: 2D rasters (PNG, JPEG, BMP, TIFF) and volumes (NIfTI, NRRD, MHA), read as arrays.

Used by training and evaluation (`samus.data`) and by the MONAI Label app. Volumes are rows x columns x frames
as stored on disk, frames along the last spatial axis.
"""
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VOLUME_EXTS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def file_stem(path) -> str:
    """Name without the (possibly double, e.g. .nii.gz) extension."""
    name = Path(path).name
    for ext in VOLUME_EXTS + IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def is_volume_file(path) -> bool:
    return str(path).lower().endswith(VOLUME_EXTS)


def require_file(path, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path}: no such file")
    return path


def _png_is_16bit_colour(path: str) -> bool:
    # Pillow cannot keep 16 bits per channel for colour PNGs; SimpleITK can. IHDR: bit depth at byte 24,
    # colour type at byte 25 (2 = RGB, 6 = RGBA).
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def _read_2d(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            elif im.mode == "CMYK":
                im = im.convert("RGB")
            a = np.array(im)
    except Exception as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    if a.dtype == np.int32 and a.size and a.min() >= 0 and a.max() <= 65535:
        a = a.astype(np.uint16)  # older Pillow opens 16-bit grayscale PNGs as mode "I"
    if a.dtype == bool:
        a = a.astype(np.uint8)
    return a


def _read_itk(path: str) -> Tuple[np.ndarray, int]:
    """(array as rows x columns [x frames] [x channels], number of spatial axes).

    A frame is displayed (by Slicer, ITK-SNAP, ...) with voxel index i along its columns and j along its rows,
    so the array is indexed [j, i, k]: each frame has the orientation of the same picture saved as a PNG, and a
    voxel click [i, j, k] is the point (x=i, y=j) of frame k. SimpleITK's numpy order is (k, j, i); singleton
    spatial axes after the second are dropped (x, y, 1, t -> x, y, t)."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(path)
    except RuntimeError as e:
        raise ValueError(f"cannot read {path}: {str(e).strip().splitlines()[-1]}") from e
    a = sitk.GetArrayFromImage(img)
    spatial = img.GetDimension()
    a = a.transpose(tuple(reversed(range(spatial))) + tuple(range(spatial, a.ndim)))
    for axis in range(spatial - 1, 1, -1):
        if spatial > 2 and a.shape[axis] == 1:
            a = np.squeeze(a, axis=axis)
            spatial -= 1
    if spatial > 3:
        raise ValueError(f"{path} has {spatial} non-singleton spatial axes; expected a 2D image, a 3D or 2D+time volume")
    return np.ascontiguousarray(np.swapaxes(a, 0, 1)), spatial


def read_array(path) -> Tuple[np.ndarray, Optional[int]]:
    """(array in its stored dtype, number of frames or None for a 2D image). 2D: H x W [x C];
    volumes: as stored (H x W x frames [x C]), frames along the last spatial axis."""
    path = require_file(path, "image")
    if is_volume_file(path):
        a, spatial = _read_itk(path)
        return a, (a.shape[2] if spatial == 3 else None)
    if path.lower().endswith(".png") and _png_is_16bit_colour(path):
        import SimpleITK as sitk  # raster files stay row-major (rows x columns x channels), as Pillow gives

        return sitk.GetArrayFromImage(sitk.ReadImage(path)), None
    a = _read_2d(path)
    if a.ndim not in (2, 3):
        raise ValueError(f"{path}: unsupported image shape {a.shape}")
    return a, None


def take_frame(data: Tuple[np.ndarray, Optional[int]], frame: Optional[int], path: str) -> np.ndarray:
    a, n = data
    if frame is None:
        if n is not None and n > 1:
            raise ValueError(f"{path} is a volume with {n} frames; the item needs a frame index")
        return a if n is None else a[:, :, 0]
    if n is None:
        if frame != 0:
            raise ValueError(f"{path} is a 2D image; frame {frame} does not exist")
        return a
    if not 0 <= frame < n:
        raise ValueError(f"{path} has {n} frames; frame {frame} does not exist")
    return a[:, :, frame]


def load_image(path, frame: Optional[int] = None, cache: Optional[dict] = None) -> np.ndarray:
    """An image (or one frame of a volume) as H x W or H x W x C in its stored dtype (uint8, uint16, float)."""
    return take_frame(cached_read(path, cache), frame, os.fspath(path))


def cached_read(path, cache: Optional[dict]) -> Tuple[np.ndarray, Optional[int]]:
    key = os.path.abspath(os.fspath(path))
    if cache is None:
        return read_array(key)
    if key not in cache:
        if len(cache) >= 4:  # volumes are big: keep only the few being expanded right now
            cache.pop(next(iter(cache)))
        cache[key] = read_array(key)
    return cache[key]



def read_header(path: str):
    """A SimpleITK reader with the file's header read (size, spacing, origin, direction), pixels not loaded.
    Raises ValueError with ITK's reason when the file is not a readable image."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(os.fspath(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise ValueError(str(e).strip().splitlines()[-1]) from None
    return reader


def spatial_size(path: str) -> Tuple[int, ...]:
    """Size as `read_array` gives it (rows, columns[, frames]), from the header when the file is a volume."""
    if not is_volume_file(path):
        return tuple(read_array(path)[0].shape[:2])
    try:
        reader = read_header(path)
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    size = list(reader.GetSize())  # (i, j, ...): i runs along the columns
    size = [size[1], size[0]] + [s for s in size[2:] if s != 1]
    return tuple(size)
