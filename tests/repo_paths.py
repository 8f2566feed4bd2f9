"""Repository paths and the sample-image reader the tests in every folder share (importable by name:
pytest puts tests/ on sys.path for its conftest.py)."""
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "busi"


def load_png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))
