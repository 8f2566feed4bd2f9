"""Files a client sends must hold their own pixels.

NRRD (`data file:`), MetaImage (`ElementDataFile =`) and NIfTI / Analyze pairs (`ni1` header + .img) can
name a separate data file, and ITK reads whatever file is named. An upload that points elsewhere
(`data file: /etc/passwd`) would make the server read a file of its choice, store it as a label and
serve its bytes back. Uploads, session files and labels are therefore checked here, from their raw
bytes and whatever their extension says, before any reader sees them. Files the administrator put into
the studies folder are trusted (a .nhdr + .raw pair there is fine).
"""
import gzip
import os
import re
import struct
import zlib

from .errors import bad_request

HEADER_BYTES = 1 << 16  # headers of self-contained NRRD / MetaImage files are far shorter
DETACHED_EXTS = (".nhdr", ".mhd", ".hdr", ".img", ".raw")
_NRRD_DATA_FILE = re.compile(rb"^\s*data\s*file\s*:", re.IGNORECASE | re.MULTILINE)
_META_DATA_FILE = re.compile(rb"^\s*ElementDataFile\s*=\s*(\S*)", re.IGNORECASE | re.MULTILINE)


def _refuse(what: str, reason: str):
    raise bad_request(f"{what} is not self-contained: {reason}. Upload a single file that holds its pixel data "
                      "(.nrrd, .mha, .nii, .nii.gz or a 2D image)")


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEADER_BYTES)


def _nifti_head(path: str, head: bytes) -> bytes:
    if head[:2] != b"\x1f\x8b":
        return head
    try:
        with gzip.open(path, "rb") as f:
            return f.read(544)  # NIfTI-2 header (540) + extension flag
    except (OSError, EOFError, zlib.error):
        return b""  # not gzip after all: the reader will refuse it with its own message


def _check_nifti(path: str, head: bytes, what: str) -> None:
    head = _nifti_head(path, head)
    if len(head) >= 348:
        for order in "<>":
            size = struct.unpack(order + "i", head[:4])[0]
            if size == 348:  # NIfTI-1 (or Analyze 7.5, which has no magic and keeps pixels in a .img)
                magic = head[344:348]
                if magic == b"n+1\x00":
                    return
                _refuse(what, "its NIfTI-1 header says the pixels are in a separate .img file" if magic == b"ni1\x00"
                        else "it is an Analyze / NIfTI header without the single-file magic 'n+1'")
            if size == 540 and len(head) >= 12:  # NIfTI-2
                if head[4:8] == b"n+2\x00":
                    return
                _refuse(what, "its NIfTI-2 header says the pixels are in a separate file")
    # Not NIfTI at all: the reader refuses it with its own message.


def check_self_contained(path: str, what: str = "the upload") -> None:
    """400 unless the file at `path` keeps its pixels inside itself (see the module docstring)."""
    name = os.path.basename(path).lower()
    if name.endswith(DETACHED_EXTS):
        _refuse(what, f"'{os.path.splitext(name)[1]}' files are headers (or data) of a two-file format")
    head = _head(path)
    if head.startswith(b"NRRD"):
        end = re.search(rb"\r?\n\r?\n", head)
        header = head if end is None else head[:end.start()]
        if _NRRD_DATA_FILE.search(header):
            _refuse(what, "its NRRD header names a separate 'data file'")
        if end is None and len(head) == HEADER_BYTES:
            _refuse(what, f"its NRRD header does not end within {HEADER_BYTES} bytes")
    # MetaImage is text "Key = Value" lines up to ElementDataFile; ITK would read it from .mha/.mhd names, but
    # the content decides here, so a renamed file cannot slip through.
    meta = _META_DATA_FILE.search(head)
    if meta is not None and meta.group(1).upper() != b"LOCAL":
        _refuse(what, "its MetaImage header names a separate ElementDataFile (only 'LOCAL' is accepted)")
    if name.endswith(".mha") and meta is None:
        _refuse(what, "its MetaImage header has no 'ElementDataFile = LOCAL'")
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path, head, what)
