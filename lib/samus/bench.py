"""`samus bench`: encoder and click latency, side by side with reference paths, in one process.

Prints medians over repeated runs on the same machine and thread count:
- our SAMUS image encoder at 256 (fp32 and bf16, the predictor's path),
- the same weights run the straightforward way (SAM's unfused attention, autocast re-casting weights,
  position adapter per frame) as the authors' code does,
- SAM ViT-B's image encoder at 1024 from `segment_anything`,
- a click on a cached embedding (prompt encoder + mask decoder + upsampling + threshold),
and the peak resident memory of a separate process that loads the model and encodes one frame.
"""
import resource
import statistics
import subprocess
import sys
import time
import types

import numpy as np
import torch


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _reference_encoder(model):
    """A copy of the encoder whose attention runs SAM's original (unfused) code, as the authors' model does."""
    import copy

    from segment_anything.modeling.image_encoder import Attention

    enc = copy.deepcopy(model.image_encoder)
    for blk in enc.blocks:
        blk.attn.forward = types.MethodType(Attention.forward, blk.attn)
    return enc


def peak_rss_of_encoding(config: str, precision: str) -> float:
    """Peak RSS (GB) of a fresh process that builds `config`, wraps it in a predictor and encodes one frame."""
    code = (
        "import numpy as np, torch, samus;"
        f"torch.set_num_threads({torch.get_num_threads()});"
        f"p = samus.SamusPredictor(samus.build_samus({config!r}), precision={precision!r});"
        "p.set_image((np.random.rand(400, 500) * 255).astype(np.uint8));"
        # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss over fork + exec.
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1e6


def run(config: str = "vit_b", repeats: int = 5, sam_repeats: int = 3, threads: int = 2, skip_sam: bool = False) -> dict:
    import samus
    from segment_anything import sam_model_registry

    torch.set_num_threads(threads)
    results = {"config": config, "threads": threads, "torch": torch.__version__,
               "cpu": torch.backends.cpu.get_cpu_capability()}
    model = samus.build_samus(config)
    frame = (np.random.default_rng(0).random((400, 500)) * 255).astype(np.uint8)
    x = samus.preprocess_image(frame)

    for precision in ("fp32", "bf16"):
        pred = samus.SamusPredictor(model, precision=precision, cache_size=0)
        results[f"encoder_{precision}_s"] = _median_time(lambda: pred.set_image(frame), repeats)
    ref = _reference_encoder(model)
    with torch.inference_mode():
        results["reference_encoder_fp32_s"] = _median_time(lambda: ref(x), repeats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results["reference_encoder_bf16_s"] = _median_time(lambda: ref(x), repeats)
    del ref

    pred = samus.SamusPredictor(model, precision="fp32")
    pred.set_image(frame, key="bench")
    clicks = np.array([[250.0, 200.0], [300.0, 220.0]])
    results["click_ms"] = 1000 * _median_time(lambda: pred.predict(clicks, [1, 0]), max(20, repeats * 4), warmup=3)

    if not skip_sam:
        sam = sam_model_registry["vit_b"](checkpoint=None).eval()
        big = torch.rand(1, 3, 1024, 1024)
        with torch.inference_mode():
            results["sam_vit_b_1024_fp32_s"] = _median_time(lambda: sam.image_encoder(big), sam_repeats)
        del sam
    results["peak_rss_gb_fp32"] = peak_rss_of_encoding(config, "fp32")
    results["peak_rss_gb_bf16"] = peak_rss_of_encoding(config, "bf16")
    results["this_process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return results


def report(r: dict) -> str:
    lines = [f"SAMUS {r['config']} on CPU ({r['cpu']}), {r['threads']} threads, torch {r['torch']}; medians"]
    row = "  {:<46} {:>10}"
    lines.append(row.format("SAMUS encoder @256, fp32 (ours)", f"{r['encoder_fp32_s']:.3f} s"))
    lines.append(row.format("SAMUS encoder @256, bf16 (ours)", f"{r['encoder_bf16_s']:.3f} s"))
    lines.append(row.format("SAMUS encoder @256, fp32 (reference path)", f"{r['reference_encoder_fp32_s']:.3f} s"))
    lines.append(row.format("SAMUS encoder @256, bf16 autocast (reference)", f"{r['reference_encoder_bf16_s']:.3f} s"))
    if "sam_vit_b_1024_fp32_s" in r:
        lines.append(row.format("SAM ViT-B encoder @1024, fp32", f"{r['sam_vit_b_1024_fp32_s']:.3f} s"))
    lines.append(row.format("click on a cached embedding", f"{r['click_ms']:.1f} ms"))
    lines.append(row.format("peak RSS: load + encode one frame, fp32", f"{r['peak_rss_gb_fp32']:.2f} GB"))
    lines.append(row.format("peak RSS: load + encode one frame, bf16", f"{r['peak_rss_gb_bf16']:.2f} GB"))
    lines.append("ratios:")
    lines.append(f"  ours bf16 vs reference bf16: {r['reference_encoder_bf16_s'] / r['encoder_bf16_s']:.2f}x faster")
    lines.append(f"  ours fp32 vs reference fp32: {r['reference_encoder_fp32_s'] / r['encoder_fp32_s']:.2f}x faster")
    if "sam_vit_b_1024_fp32_s" in r:
        lines.append(f"  ours bf16 vs SAM ViT-B @1024 fp32: {r['sam_vit_b_1024_fp32_s'] / r['encoder_bf16_s']:.1f}x faster")
        lines.append(f"  ours fp32 vs SAM ViT-B @1024 fp32: {r['sam_vit_b_1024_fp32_s'] / r['encoder_fp32_s']:.1f}x faster")
    return "\n".join(lines)
