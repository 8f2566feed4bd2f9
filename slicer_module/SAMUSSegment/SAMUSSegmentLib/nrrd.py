"""A small NRRD reader/writer for attached-header files (what ITK and Slicer write).

Arrays are returned and taken in [k, j, i] order (numpy C order of a volume whose
fastest axis is I), so they line up with Slicer's arrayFromVolume. Geometry is given
as an IJK->RAS 4x4 matrix; files store it in LPS like ITK does.
"""
from __future__ import annotations

import gzip
import io
import re

import numpy as np

from .geometry import lps_to_ras, ras_to_lps

_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2",
    "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2", "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "longlong": "i8", "long long": "i8", "long long int": "i8", "signed long long": "i8",
    "signed long long int": "i8", "int64": "i8", "int64_t": "i8",
    "ulonglong": "u8", "unsigned long long": "u8", "unsigned long long int": "u8",
    "uint64": "u8", "uint64_t": "u8",
    "float": "f4", "double": "f8",
}
_NAMES = {"i1": "int8", "u1": "uint8", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
          "i8": "longlong", "u8": "ulonglong", "f4": "float", "f8": "double"}


class NrrdError(ValueError):
    """The bytes are not an NRRD file this reader understands."""


def _vectors(text: str) -> list:
    """Parses '(1,0,0) (0,1,0) none' into [[1,0,0],[0,1,0],None]."""
    out = []
    for token in re.findall(r"\([^)]*\)|none", text):
        out.append(None if token == "none" else [float(v) for v in token.strip("()").split(",")])
    return out


def read_nrrd(data: bytes):
    """Returns (array [k, j, i] or [j, i], ijk_to_ras 4x4 or None, header dict)."""
    if not data.startswith(b"NRRD000"):
        raise NrrdError("not an NRRD file (missing 'NRRD000x' magic)")
    end = data.find(b"\n\n")
    if end < 0:
        raise NrrdError("NRRD header has no terminating blank line (detached headers are not supported)")
    header: dict[str, str] = {}
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        if not line or line.startswith("#") or ":=" in line:  # comments and key/value pairs
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            raise NrrdError(f"bad NRRD header line: {line!r}")
        header[key.strip().lower()] = value.strip()
    payload = data[end + 2:]

    if "data file" in header or "datafile" in header:
        raise NrrdError("detached NRRD data files are not supported")
    try:
        kind = _TYPES[header["type"].lower()]
        sizes = [int(s) for s in header["sizes"].split()]
    except KeyError as exc:
        raise NrrdError(f"NRRD header lacks or has an unknown {exc}") from None
    dtype = np.dtype(kind)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if header.get("endian", "little") == "little" else ">")

    encoding = header.get("encoding", "raw").lower()
    if encoding in ("gzip", "gz"):
        payload = gzip.decompress(payload)
    elif encoding in ("text", "txt", "ascii"):
        values = np.array(payload.split(), dtype=float)
        payload = values.astype(dtype).tobytes()
    elif encoding != "raw":
        raise NrrdError(f"NRRD encoding {encoding!r} is not supported (use raw or gzip)")
    count = int(np.prod(sizes))
    if len(payload) < count * dtype.itemsize:
        raise NrrdError(f"NRRD data is truncated: {len(payload)} bytes for {count} values of {dtype}")
    # Raw data can follow a byte skip; the values are at the end of the payload.
    payload = payload[len(payload) - count * dtype.itemsize:]
    array = np.frombuffer(payload, dtype=dtype).reshape(sizes[::-1]).astype(dtype.newbyteorder("="))

    return array, _geometry(header, sizes), header


def _geometry(header: dict, sizes: list):
    """IJK->RAS of the spatial axes (None when the file has no space information)."""
    if "space directions" not in header:
        return None
    dirs = [d for d in _vectors(header["space directions"]) if d is not None]
    dim = len(dirs[0]) if dirs else 0
    if dim not in (2, 3) or len(dirs) not in (2, 3):
        raise NrrdError(f"unsupported NRRD space directions: {header['space directions']!r}")
    m = np.eye(4)
    for axis, d in enumerate(dirs):
        m[:dim, axis] = d
    if len(dirs) == 2:
        m[2, 2] = 1.0
    origin = header.get("space origin")
    if origin:
        o = _vectors(origin)[0]
        m[:len(o), 3] = o
    space = header.get("space", "left-posterior-superior").lower()
    if space in ("left-posterior-superior", "lps", "3d-left-handed"):
        return lps_to_ras(m)
    if space in ("right-anterior-superior", "ras", "3d-right-handed"):
        return m
    raise NrrdError(f"NRRD space {space!r} is not supported")


def write_nrrd(array, ijk_to_ras=None, compress: bool = True) -> bytes:
    """Encodes a [k, j, i] (or [j, i]) array as NRRD bytes in LPS space."""
    a = np.asarray(array)
    if a.ndim not in (2, 3):
        raise NrrdError(f"can only write 2D or 3D arrays, got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    code = a.dtype.str[1:]
    if code not in _NAMES:
        raise NrrdError(f"cannot write dtype {a.dtype} to NRRD")
    a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<")))
    if ijk_to_ras is not None and a.ndim == 2:
        a = a[None]  # geometry is 3D: store one frame as a single-slice volume
    sizes = a.shape[::-1]
    lines = ["NRRD0004", f"type: {_NAMES[code]}", f"dimension: {a.ndim}", f"sizes: {' '.join(map(str, sizes))}"]
    if ijk_to_ras is not None:
        m = ras_to_lps(ijk_to_ras)
        n = 3
        fmt = lambda v: "(" + ",".join(repr(float(x)) for x in v) + ")"  # noqa: E731
        lines += [
            "space: left-posterior-superior",
            "space directions: " + " ".join(fmt(m[:n, axis]) for axis in range(n)),
            "space origin: " + fmt(m[:n, 3]),
            "kinds: " + " ".join(["domain"] * n),
        ]
    lines += ["endian: little", f"encoding: {'gzip' if compress else 'raw'}"]
    body = a.tobytes()
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=0) as f:
            f.write(body)
        body = buf.getvalue()
    return ("\n".join(lines) + "\n\n").encode("latin-1") + body
