"""Draws the module icon (run once; the PNG is committed): an ultrasound fan, a dark lesion with a green
outline and a yellow '+' click. Pure numpy + zlib, so it runs in any Python, including Slicer's."""
import struct
import zlib
from pathlib import Path

import numpy as np

ICON = Path(__file__).resolve().parents[1] / "SAMUSSegment" / "Resources" / "Icons" / "SAMUSSegment.png"


def encode_png(rgba: np.ndarray) -> bytes:
    """[rows, cols, 4] uint8 -> PNG bytes (8-bit RGBA, no filtering)."""
    rows, cols, _ = rgba.shape
    raw = np.concatenate([np.zeros((rows, 1), np.uint8), rgba.reshape(rows, cols * 4)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def draw(n: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n].astype(float)
    img = np.zeros((n, n, 4))
    r = np.hypot(x - n / 2, y + 4)
    angle = np.degrees(np.arctan2(x - n / 2, y + 4))
    fan = (r > 14) & (r < 124) & (np.abs(angle) < 36)
    speckle = 0.35 + 0.35 * np.random.default_rng(3).random((n, n)) * np.exp(-r / 160)
    img[fan, :3] = speckle[fan, None] * 255
    img[fan, 3] = 255
    lesion = ((x - 64) / 22) ** 2 + ((y - 74) / 15) ** 2
    img[fan & (lesion < 1), :3] *= 0.25
    img[fan & (np.abs(np.sqrt(lesion) - 1) < 0.09)] = [40, 220, 90, 255]
    plus = ((np.abs(x - 64) < 2) & (np.abs(y - 74) < 9)) | ((np.abs(y - 74) < 2) & (np.abs(x - 64) < 9))
    img[plus] = [255, 230, 40, 255]
    return np.clip(img, 0, 255).round().astype(np.uint8)


if __name__ == "__main__":
    ICON.write_bytes(encode_png(draw()))
    print(f"wrote {ICON}")
