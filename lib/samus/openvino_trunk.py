"""The frozen LiteMedSAM trunk through OpenVINO: faster than PyTorch on a CPU at masks as close to fp32's
(`benchmarks/bench_encoders.py` on a 2-core AMD EPYC with AVX-512 BF16: 460 against 587 ms per frame in
bf16, 698 against 1582 ms in fp32).

Only a frozen trunk can go this way: it never trains, so it is converted once per trunk fingerprint. The
OpenVINO model (IR) is kept on disk (`SAMUS_OPENVINO_CACHE`, default `~/.cache/samus/openvino`), so later
processes skip the conversion, and the compiled model is kept in the process, so weights the app swaps in
after training (only the heads change) reuse it.

Unlike a PyTorch forward pass, an OpenVINO pass can be stopped: inside `interruptible(event)` it stops within
a few milliseconds of `event` being set and raises `TrunkInterrupted` (the app's encode-ahead uses it, so a
user's click need not wait for a speculative pass to end).
"""
import contextlib
import contextvars
import copy
import importlib.util
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .feature_cache import trunk_fingerprint

BACKENDS = ("torch", "openvino")

_compiled: Dict[Tuple[str, str, int], object] = {}
_lock = threading.Lock()
_stop: contextvars.ContextVar = contextvars.ContextVar("samus_trunk_stop", default=None)


class TrunkInterrupted(Exception):
    """An OpenVINO trunk pass was stopped because its `interruptible` event was set."""


@contextlib.contextmanager
def interruptible(event: Optional[threading.Event]):
    """OpenVINO trunk passes started in this block (in this thread) stop when `event` is set."""
    token = _stop.set(event)
    try:
        yield
    finally:
        _stop.reset(token)


def _infer(request, inputs) -> None:
    stop = _stop.get()
    if stop is None:
        request.infer(inputs)
        return
    request.start_async(inputs)
    while not request.wait_for(5):  # milliseconds
        if stop.is_set():
            request.cancel()
            raise TrunkInterrupted()


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def served_backend(requested: str, model, device: str = "cpu") -> str:
    """What runs `model`'s encoder when a server asks for `requested` (torch, openvino or auto) for all its
    models: OpenVINO only for a model with a frozen trunk, on the CPU (auto: also only when installed)."""
    if requested == "torch" or "openvino" not in model.backends or torch.device(device).type != "cpu":
        return "torch"
    if requested == "auto" and not available():
        return "torch"
    return check_backend(requested if requested != "auto" else "openvino")


def cache_dir() -> Path:
    return Path(os.environ.get("SAMUS_OPENVINO_CACHE") or Path.home() / ".cache" / "samus" / "openvino")


def _openvino():
    try:
        import openvino
    except ImportError:
        raise RuntimeError("backend 'openvino' needs the openvino package: pip install openvino") from None
    return openvino


def _ir_model(ov, core, model, fingerprint: str):
    """The trunk as an OpenVINO model: read from the disk cache, else converted and stored there."""
    folder = cache_dir()
    xml = folder / f"trunk-{fingerprint}.xml"
    if xml.exists() and xml.with_suffix(".bin").exists():
        try:
            return core.read_model(str(xml))
        except RuntimeError:
            pass  # a damaged entry: convert again and replace it
    size = model.img_size
    trunk = copy.deepcopy(model.image_encoder.trunk).eval().requires_grad_(False)  # traced weights become constants
    with torch.no_grad(), torch.autocast("cpu", enabled=False):  # the float32 graph; OpenVINO picks precision
        converted = ov.convert_model(trunk, example_input=torch.zeros(1, 3, size, size))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:  # written aside, then moved in: readers see all or none
        ov.save_model(converted, str(Path(tmp) / xml.name), compress_to_fp16=False)
        os.replace(Path(tmp) / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(Path(tmp) / xml.name, xml)
    return converted


def openvino_trunk(model, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """batch (B x 1 x S x S, the model's preprocessing) -> B x 256 x 64 x 64 float32 trunk features, run by
    OpenVINO on the CPU with PyTorch's thread count; `precision` fp32 or bf16 (where the CPU has it)."""
    ov = _openvino()
    key = (trunk_fingerprint(model), precision, torch.get_num_threads())
    with _lock:
        compiled = _compiled.get(key)
        if compiled is None:
            core = ov.Core()
            compiled = core.compile_model(_ir_model(ov, core, model, key[0]), "CPU", {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": key[2],
                "PERFORMANCE_HINT": "LATENCY",
            })
            _compiled[key] = compiled

    def run(batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().expand(-1, 3, -1, -1).cpu().numpy()
        request = compiled.create_infer_request()  # one per call: requests are not shared between threads
        out = []
        for i in range(len(x)):  # converted for batch 1
            _infer(request, {0: np.ascontiguousarray(x[i:i + 1])})
            out.append(torch.from_numpy(request.get_output_tensor(0).data.copy()))
        return torch.cat(out).to(batch.device)
    return run
