"""The app's `--conf key value` settings, checked once at start-up.

MONAI Label hands every `--conf` pair to the app as strings (and re-reads them in its train subprocess).
An unknown key or a bad value must stop the start with a message that lists what is accepted, instead of
surfacing later as a confusing inference error.
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from samus import CONFIGS
from samus.openvino_trunk import BACKENDS

PRECISIONS = ("fp32", "bf16")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class ConfError(ValueError):
    """A `--conf` problem; the message names the key, the value and what is accepted."""


@dataclass(frozen=True)
class RequestLimits:
    """What one request may cost. Each limit is a `--conf` key (KEYS below), named in the 4xx a request
    over it gets."""
    image_voxels: int  # rows x columns x frames, from the header, before decoding
    frame_pixels: int  # rows x columns of one frame
    clicks_per_frame: int
    clicks: int  # one request, all frames together
    propagation_frames: int  # frames one propagation may segment
    upload_bytes: int  # request body
    params_bytes: int  # JSON `params` / `info` form fields and JSON bodies


@dataclass(frozen=True)
class AppConf:
    models: Tuple[str, ...]  # served models (lib/configs); the first is the default for clicks
    propagation_model: str  # the default for propagation
    checkpoint: Optional[str]  # the `custom` model's weights
    config: Optional[str]  # SAMUS configuration name; None = the one the checkpoint names (or vit_b)
    device: str
    precision: str
    backend: str  # torch, openvino or auto: what runs a frozen foundation trunk (samus.openvino_trunk)
    cache_size: int  # image embeddings kept in memory (entries)
    cache_mb: int  # ... and at most this many MiB
    model_dir: Optional[str]  # where trained weights are published; None = <app>/model
    skip_trainers: bool
    refine: bool  # feed the previous request's logits back when a request adds one click (refinement.py)
    threads: int  # torch CPU threads
    limits: RequestLimits
    sharing: "SharingConf" = None  # many users on one server: scheduler, encode-ahead, training, sessions


@dataclass(frozen=True)
class SharingConf:
    """How one server is shared (scheduler.py, encode_ahead.py, session_limits.py, the trainer)."""
    max_long_jobs: int  # propagations / scoring running or queued at once (429 beyond)
    batch_frames: int  # frames a long job encodes per turn: the most a click waits for
    encode_ahead: int  # frames on each side of a clicked frame encoded while the server is idle (0: off)
    encode_ahead_delay: float  # seconds without requests before encode-ahead starts (a user's next click waits less)
    train_nice: int  # niceness added to the training process
    train_threads: int  # PyTorch threads of the training process
    max_sessions: int
    max_sessions_mb: int
    max_datastore_files: int  # images and labels in the studies folder
    max_datastore_mb: int


def _seconds(v: str) -> float:
    f = float(v)  # ValueError for "abc"
    if not 0 <= f <= 3600:  # also False for NaN
        raise ValueError("must be between 0 and 3600 seconds")
    return f


def _checkpoint(v: str) -> str:
    path = os.path.realpath(os.path.expanduser(v))
    if not os.path.isfile(path):
        raise ValueError(f"no such file: {path}")
    return path


def _one_of(choices, what: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in choices:
            raise ValueError(f"unknown {what}")
        return v

    return parse


_config = _one_of(CONFIGS, "configuration")

MODEL_NAMES = ("accurate", "fast", "custom")  # lib/configs


def bundled_order() -> Tuple[str, ...]:
    """Both bundled models, the library's default first (samus.DEFAULT_MODEL: the one measured best for
    clicks, see MODEL_CARD.md)."""
    from samus import BUNDLED_MODELS, DEFAULT_MODEL

    return (DEFAULT_MODEL,) + tuple(n for n in BUNDLED_MODELS if n != DEFAULT_MODEL)


def _models(v: str) -> Tuple[str, ...]:
    names = tuple(n.strip() for n in v.split(",") if n.strip())
    bad = [n for n in names if n not in MODEL_NAMES]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"need distinct names from {', '.join(MODEL_NAMES)}")
    return names


_model_name = _one_of(MODEL_NAMES, "model")


def _device(v: str) -> str:
    import torch

    v = v.strip().lower()
    if v == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if v == "cpu":
        return v
    if v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError("CUDA is not available on this machine")
        index = int(v[5:]) if ":" in v else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"only {torch.cuda.device_count()} CUDA device(s)")
        return v
    raise ValueError("not a device")


def _precision(v: str) -> str:
    if v not in PRECISIONS + ("auto",):
        raise ValueError("unknown precision")
    return v


def native_bf16(device: str) -> bool:
    """Whether the device computes bfloat16 natively (where bf16 is faster than fp32 at equal masks)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        n = int(v)  # ValueError for "abc", "1.5"
        if n < low:
            raise ValueError(f"must be >= {low}")
        return n

    return parse


def _threads(v: str) -> int:
    """auto: PyTorch's default (one per physical core), minus one core left to the web server and to a
    viewer on the same machine when there are more than two: with OpenMP every small op waits for all its
    threads, so a busy core slows clicks down. On two cores, one thread would halve the encoder's speed
    (measured on an idle 2-core machine: propagation 8.4 -> 13.9 frames/s, first click 121 -> 84 ms)."""
    import torch

    if v == "auto":
        cores = os.cpu_count() or 1
        return max(1, min(torch.get_num_threads(), cores - 1 if cores > 2 else cores))
    return _int_at_least(1)(v)


def _train_threads(v: str) -> int:
    """auto: leave the server's model threads a core of their own where there are more than two cores,
    else one thread (with nice, clicks then keep a core and take the other when training yields it)."""
    if v == "auto":
        cores = os.cpu_count() or 1
        return max(1, cores - 2) if cores > 2 else 1
    return _int_at_least(1)(v)


def _nice(v: str) -> int:
    n = int(v)
    if not 0 <= n <= 19:
        raise ValueError("must be 0..19")
    return n


def _bool(v: str) -> bool:
    if v.lower() in _TRUE:
        return True
    if v.lower() in _FALSE:
        return False
    raise ValueError("not a boolean")


def _model_dir(v: str) -> str:
    return os.path.realpath(os.path.expanduser(v))


def _sam2(v: str) -> bool:
    if _bool(v):
        raise ValueError("this app serves SAMUS only; MONAI Label's SAM2 tasks are not part of it")
    return False


# key -> (parser, what is accepted, default)
KEYS: Dict[str, Tuple[Callable[[str], object], str, Optional[str]]] = {
    "checkpoint": (_checkpoint, "path to an official SAMUS .pth, a SAM ViT-B .pth, LiteMedSAM's lite_medsam.pth "
                   "or a samus checkpoint (served as the `custom` model)", None),
    "config": (_config, f"one of {', '.join(CONFIGS)}", None),
    "models": (_models, "comma-separated served models from accurate, fast, custom (the first is the default "
               "for clicks; custom = --conf checkpoint); default both bundled ones, the library's default first, "
               "or custom with a checkpoint", None),
    "propagation_model": (_model_name, "a served model (default: fast when served, else the first)", None),
    "device": (_device, "auto, cpu, cuda or cuda:N", "auto"),
    "precision": (_precision, f"auto or one of {', '.join(PRECISIONS)}", "auto"),
    "backend": (_one_of(BACKENDS + ("auto",), "backend"),
                "torch, openvino, or auto (openvino when it is installed); it runs the accurate model's frozen "
                "trunk, other models run on torch", "auto"),
    "cache_size": (_int_at_least(0), "an integer >= 0 (image embeddings kept in memory)", "64"),
    "cache_mb": (_int_at_least(1), "an integer >= 1 (MiB for cached embeddings)", "512"),
    "model_dir": (_model_dir, "a folder for published trained weights", None),
    "max_image_voxels": (_int_at_least(1), "an integer >= 1", str(2**28)),
    "max_frame_pixels": (_int_at_least(4), "an integer >= 4 (rows x columns of one frame)", str(2**24)),
    "max_clicks_per_frame": (_int_at_least(1), "an integer >= 1", "64"),
    "max_clicks": (_int_at_least(1), "an integer >= 1 (clicks in one request, all frames)", "256"),
    "max_propagation_frames": (_int_at_least(1), "an integer >= 1", "1000"),
    "max_upload_mb": (_int_at_least(1), "an integer >= 1 (MiB in one request body)", "1024"),
    "max_params_kb": (_int_at_least(1), "an integer >= 1 (KiB of JSON params in one request)", "1024"),
    "threads": (_threads, "auto or an integer >= 1 (CPU threads for PyTorch)", "auto"),
    "max_long_jobs": (_int_at_least(1), "an integer >= 1 (propagations running or queued at once)", "8"),
    "batch_frames": (_int_at_least(1), "an integer >= 1 (frames a propagation encodes per turn)", "4"),
    "encode_ahead": (_int_at_least(0), "an integer >= 0 (neighbouring frames encoded ahead on each side; 0: off)",
                     "2"),
    "encode_ahead_delay": (_seconds, "a number of seconds >= 0 (quiet time before encode-ahead starts)", "1.0"),
    "train_nice": (_nice, "0..19 (niceness added to the training process)", "10"),
    "train_threads": (_train_threads, "auto or an integer >= 1 (CPU threads of the training process)", "auto"),
    "max_sessions": (_int_at_least(1), "an integer >= 1 (sessions kept at once)", "64"),
    "max_sessions_mb": (_int_at_least(1), "an integer >= 1 (MiB of session files together)", "4096"),
    "max_datastore_files": (_int_at_least(1), "an integer >= 1 (images and labels in the studies folder)",
                            "100000"),
    "max_datastore_mb": (_int_at_least(1), "an integer >= 1 (MiB of the studies folder)", str(100 * 1024)),
    "skip_trainers": (_bool, "true or false", "false"),
    "refine": (_bool, "true or false (reuse the previous request's mask when a request adds one click)", "true"),
    "sam2": (_sam2, "false (SAM2 is not part of this app)", "false"),
}


def describe_keys() -> str:
    return "; ".join(f"{k}: {what}" for k, (_, what, _) in KEYS.items())


def parse_conf(conf: Optional[Dict[str, str]]) -> AppConf:
    """Validate MONAI Label's `--conf` dictionary; raises ConfError naming the key and what is accepted."""
    conf = dict(conf or {})
    conf.pop("server_mode", None)  # set by MONAI Label itself, not a user key
    unknown = sorted(k for k in conf if k not in KEYS)
    if unknown:
        raise ConfError(f"unknown --conf key(s) {', '.join(unknown)}. Accepted keys: {describe_keys()}")
    values = {}
    for key, (parse, what, default) in KEYS.items():
        raw = conf.get(key, default)
        if raw is None:
            values[key] = None
            continue
        try:
            values[key] = parse(str(raw).strip())
        except ValueError as e:
            raise ConfError(f"--conf {key} {raw!r}: {e}; accepted: {what}") from None
    if values["precision"] == "auto":
        values["precision"] = "bf16" if native_bf16(values["device"]) else "fp32"
    if values["backend"] == "openvino" and values["device"] != "cpu":
        raise ConfError(f"--conf backend openvino runs on the CPU, not on --conf device {values['device']}")
    models = values["models"] or (("custom",) if values["checkpoint"] else bundled_order())
    if "custom" in models and not values["checkpoint"]:
        raise ConfError("--conf models names custom, which needs --conf checkpoint PATH")
    if values["checkpoint"] and "custom" not in models:
        raise ConfError(f"--conf checkpoint is served as the `custom` model; add custom to --conf models "
                        f"(now {','.join(models)})")
    propagation = values["propagation_model"] or ("fast" if "fast" in models else models[0])
    if propagation not in models:
        raise ConfError(f"--conf propagation_model {propagation!r} is not served; --conf models is {','.join(models)}")
    return AppConf(
        models=models,
        propagation_model=propagation,
        checkpoint=values["checkpoint"],
        config=values["config"],
        device=values["device"],
        precision=values["precision"],
        backend=values["backend"],
        cache_size=values["cache_size"],
        cache_mb=values["cache_mb"],
        model_dir=values["model_dir"],
        skip_trainers=values["skip_trainers"],
        refine=values["refine"],
        threads=values["threads"],
        limits=RequestLimits(
            image_voxels=values["max_image_voxels"], frame_pixels=values["max_frame_pixels"],
            clicks_per_frame=values["max_clicks_per_frame"], clicks=values["max_clicks"],
            propagation_frames=values["max_propagation_frames"], upload_bytes=values["max_upload_mb"] * 2**20,
            params_bytes=values["max_params_kb"] * 2**10),
        sharing=SharingConf(**{k: values[k] for k in SharingConf.__dataclass_fields__}),
    )
