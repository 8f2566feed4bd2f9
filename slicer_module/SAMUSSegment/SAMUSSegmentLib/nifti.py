"""Reading the label files the server sends back: NRRD, or NIfTI-1 (gzip-compressed `.nii.gz`).

The module asks for `.nii.gz` results: the app writes its label volumes with gzip only in that
format, and a label volume of a long cine is mostly zeros, so the answer to a click shrinks from
rows x cols x frames bytes to a few kilobytes. Fewer bytes means fewer socket reads, and each
read of the worker thread has to wait for Python's lock inside Slicer.

Only the voxel array is read (in [k, j, i] order, like `nrrd.read_nrrd`): results are in the
geometry of the uploaded image, which the module already knows.
"""
from __future__ import annotations

import gzip
import struct

import numpy as np

from .nrrd import read_nrrd

_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}


class NiftiError(ValueError):
    """The bytes are not a NIfTI-1 file this reader understands."""


def read_nifti(data: bytes) -> np.ndarray:
    """The voxels of a single-file NIfTI-1 image (gzip or plain) as [k, j, i] (or [j, i] for 2D)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise NiftiError(f"the gzip stream is damaged: {exc}") from None
    if len(data) < 352:
        raise NiftiError(f"{len(data)} bytes is too short for a NIfTI-1 header")
    for endian in "<>":
        if struct.unpack(endian + "i", data[:4])[0] == 348:
            break
    else:
        raise NiftiError("not a NIfTI-1 file (header size is not 348)")
    if data[344:348] != b"n+1\x00":
        raise NiftiError("not a single-file NIfTI-1 image (magic is not 'n+1')")
    dim = struct.unpack(endian + "8h", data[40:56])
    datatype = struct.unpack(endian + "h", data[70:72])[0]
    vox_offset = int(struct.unpack(endian + "f", data[108:112])[0])
    slope, intercept = struct.unpack(endian + "2f", data[112:120])
    if not 1 <= dim[0] <= 7 or min(dim[1:dim[0] + 1]) < 1:
        raise NiftiError(f"bad NIfTI dimensions {dim}")
    if datatype not in _DTYPES:
        raise NiftiError(f"NIfTI datatype {datatype} is not supported")
    shape = [int(d) for d in dim[1:dim[0] + 1]]
    while len(shape) > 3 and shape[-1] == 1:  # trailing singleton time / component axes
        shape.pop()
    if len(shape) > 3:
        raise NiftiError(f"NIfTI images with more than 3 axes are not supported (dimensions {shape})")
    dtype = np.dtype(endian + _DTYPES[datatype])
    count = int(np.prod(shape))
    if len(data) < vox_offset + count * dtype.itemsize:
        raise NiftiError(f"NIfTI data is truncated: {len(data) - vox_offset} bytes for {count} values of {dtype}")
    array = np.frombuffer(data, dtype, count, vox_offset).reshape(shape[::-1]).astype(dtype.newbyteorder("="))
    if slope not in (0.0, 1.0) or intercept != 0.0:
        array = array * slope + intercept
    return array


def read_label(data: bytes) -> np.ndarray:
    """A label file the server answered with, NRRD or NIfTI, as [k, j, i] (or [j, i])."""
    if data.startswith(b"NRRD"):
        return read_nrrd(data)[0]
    return read_nifti(data)
