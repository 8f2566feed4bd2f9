"""Building SAMUS models and applying the official freezing rule."""
from typing import Dict, Optional, Union

import torch

from .configs import SamusConfig, get_config
from .modeling import Samus

# The official rule (samus.py): inside the image encoder only parameters whose name contains one of these
# stay trainable; the prompt encoder and the mask decoder are frozen.
_TRAINABLE_MARKERS = ("cnn_embed", "post_pos_embed", "Adapter", "upneck")


def build_samus(
    config: Optional[Union[str, SamusConfig]] = "vit_b",
    checkpoint=None,
    device: Union[str, torch.device] = "cpu",
) -> Samus:
    """Build a SAMUS model, optionally loading weights.

    `checkpoint` (a path, or a `samus.checkpoint.Checkpoint` already read) may be an official SAMUS file, a SAM ViT-B file (`sam_vit_b_01ec64.pth` format: every key is
    used, global relative-position tables are resized, new modules keep their fresh initialisation) or a
    file in this project's format, which names its own configuration. With `config=None` the file decides:
    ours name their configuration, official SAMUS and SAM files are the paper's `vit_b`.
    """
    from .checkpoint import Checkpoint, load_into_model, read_checkpoint

    # A `Checkpoint` already read by the caller is used as is (no second read of a large file).
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) or checkpoint is None else read_checkpoint(checkpoint)
    if ckpt is not None and ckpt.config_name is not None:
        if isinstance(config, str) and config != ckpt.config_name:
            raise ValueError(f"{ckpt.path} holds a {ckpt.config_name!r} model, not {config!r}")
        name, cfg = ckpt.config_name, ckpt.config
    elif config is None:
        if ckpt is None:
            raise ValueError("give a configuration name or a checkpoint")
        name, cfg = "vit_b", get_config("vit_b")  # official SAMUS / SAM ViT-B files carry no configuration
    elif isinstance(config, SamusConfig):
        name, cfg = "custom", config
    else:
        name, cfg = config, get_config(config)
    model = Samus(cfg, config_name=name)
    if ckpt is not None:
        load_into_model(model, ckpt)
    return model.to(device).eval()


def freeze_for_training(model: Samus, mode: str = "adapter") -> Samus:
    """`adapter`: the official SAMUS rule (new modules + global rel-pos tables); `full`: everything."""
    if mode not in ("adapter", "full"):
        raise ValueError(f"unknown training mode {mode!r}; choose 'adapter' or 'full'")
    global_blocks = {f"image_encoder.blocks.{i}." for i in model.config.global_attn_indexes}
    for name, p in model.named_parameters():
        if mode == "full":
            p.requires_grad_(True)
            continue
        rel = name[len("image_encoder."):] if name.startswith("image_encoder.") else None
        trainable = rel is not None and (
            any(m in rel for m in _TRAINABLE_MARKERS)
            or (".attn.rel_pos" in name and any(name.startswith(g) for g in global_blocks))
        )
        p.requires_grad_(trainable)
    return model


def parameter_report(model: Samus) -> Dict[str, int]:
    """Parameter counts: total (including the persistent Gaussian buffer, as the official key list does)."""
    params = list(model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if "gaussian_matrix" in n)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    return {
        "total": total + buffers,
        "parameters": total,
        "trainable": trainable,
        "frozen": total - trainable,
        "trainable_tensors": sum(1 for p in params if p.requires_grad),
    }
