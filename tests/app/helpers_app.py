"""Test data for the MONAI Label app: a synthetic cine loop built from a real BUSI image, studies folders.

The cine moves and deforms one BUSI image over 30 frames (smooth translation, rotation, breathing-like
scaling and a slowly changing elastic field); the lesion mask goes through the same warps (nearest
neighbour), so every frame has exact ground truth. It is stored as a NIfTI whose frames are the slices
along the last axis, with voxel index i along a frame's columns and j along its rows (as viewers show it
and as `samus.data.read_array` returns it: rows x columns x frames).
"""
import shutil
from pathlib import Path
from typing import Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "busi"


def load_busi(name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(grayscale uint8 image, bool mask) of a bundled sample."""
    from PIL import Image

    image = np.asarray(Image.open(SAMPLES / "images" / f"{name}.png").convert("L"))
    mask = np.asarray(Image.open(SAMPLES / "masks" / f"{name}.png")) > 0
    return image, mask


def build_cine(image: np.ndarray, mask: np.ndarray, frames: int = 30, seed: int = 0):
    """-> (cine H x W x frames uint8, ground truth H x W x frames uint8 {0, 1}): `samus.cine_sim`'s probe motion."""
    from samus.cine_sim import simulate_cine

    return simulate_cine(image, mask, frames, seed)


def save_nifti(volume: np.ndarray, path) -> None:
    """rows x columns x frames -> NIfTI with voxel index (i, j, k) = (column, row, frame)."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.transpose(1, 0, 2)), np.diag([0.2, 0.2, 1.0, 1.0])),
             str(path))


def load_volume(path) -> np.ndarray:
    """rows x columns x frames, as the app and samus.data read it."""
    from samus.data import read_array

    return read_array(path)[0]


def make_studies(folder: Path, images=("benign_3", "malignant_2", "benign_13", "benign_6"), cine: str = "benign_3",
                 frames: int = 30) -> Path:
    """A studies folder with BUSI test images (PNG) and the cine built from `cine` (NIfTI); the cine's ground
    truth is saved next to the folder as `<folder>_truth/<cine>_cine.nii.gz`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in images:
        shutil.copy(SAMPLES / "images" / f"{name}.png", folder / f"{name}.png")
    if cine:
        image, mask = load_busi(cine)
        vol, truth = build_cine(image, mask, frames)
        save_nifti(vol, folder / f"{cine}_cine.nii.gz")
        truth_dir = folder.parent / (folder.name + "_truth")
        truth_dir.mkdir(exist_ok=True)
        save_nifti(truth, truth_dir / f"{cine}_cine.nii.gz")
    return folder


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def huge_png(path, width: int = 100_000, height: int = 100_000) -> None:
    """A tiny file whose PNG header claims a huge image (a decompression bomb as far as size goes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))



def click_xy(mask: np.ndarray) -> Tuple[int, int]:
    """The SAMUS authors' evaluation click (samus.prompts.middle_click) as integer (x=column, y=row)."""
    from samus.prompts import middle_click

    (x, y), = middle_click(np.asarray(mask) > 0)[0]
    return int(x), int(y)


# ------------------------------------------------------------------------------------------ hostile files
def detached_nrrd(path, data_file, size=(16, 16)) -> Path:
    """An NRRD header whose pixels are another file (`data file:`), as ITK and pynrrd follow it."""
    Path(path).write_bytes(f"NRRD0004\ntype: uint8\ndimension: 2\nsizes: {size[0]} {size[1]}\nencoding: raw\n"
                           f"data file: {data_file}\n\n".encode())
    return Path(path)


def detached_mha(path, data_file, size=(16, 16)) -> Path:
    """A MetaImage header whose pixels are another file (`ElementDataFile`)."""
    Path(path).write_bytes(f"ObjectType = Image\nNDims = 2\nDimSize = {size[0]} {size[1]}\nElementType = MET_UCHAR\n"
                           f"ElementDataFile = {data_file}\n".encode())
    return Path(path)


def nifti_pair_header(path, size=(16, 16)) -> Path:
    """The header half of a NIfTI-1 pair (magic 'ni1': pixels in a separate .img), saved under a .nii name."""
    import nibabel as nib

    header = nib.Nifti1Pair(np.zeros(size, np.uint8), np.eye(4)).header
    Path(path).write_bytes(header.binaryblock)
    return Path(path)


def png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(fields=(), files=(), boundary: bytes = b"samus-test-boundary") -> Tuple[bytes, str]:
    """(body, content type) of a multipart form built byte by byte: file names are sent as given (NUL bytes,
    300 characters), which `requests` would escape or refuse. fields: (name, value); files: (name, filename,
    content), names and values as str or bytes."""
    def b(v):
        return v if isinstance(v, bytes) else str(v).encode()

    body = b""
    for name, value in fields:
        body += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + b(name) + b'"\r\n\r\n' + b(value)
                 + b"\r\n")
    for name, filename, content in files:
        body += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + b(name) + b'"; filename="'
                 + b(filename) + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + b(content) + b"\r\n")
    return body + b"--" + boundary + b"--\r\n", "multipart/form-data; boundary=" + boundary.decode()
