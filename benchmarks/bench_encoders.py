"""Per-frame image-encoder time of the bundled models, side by side in one run (medians), and what the
accurate model's speed options change in its masks.

    python benchmarks/bench_encoders.py [--repeats 7] [--compile]

Rows: the fast model (small SAMUS) fp32 / bf16; the accurate model's TinyViT trunk + SAMUS additions in
fp32, bf16 (a bf16 copy, channels-last, as the predictor runs it) and, with --compile, torch.compile of the
bf16 copy, then the trunk through OpenVINO (samus.openvino_trunk) in fp32 and bf16. The last column is the Dice between the box-prompted mask of each setting and fp32's on a real
BUSI sample (1.0 = the same mask). The CPU's bf16 / AMX flags are printed first: speeds differ by machine.
A second table times a further click on an already encoded frame (prompt encoder + mask decoder, the
previous mask fed back, local correction, mapping to the image) with the predictor in fp32 and bf16
(bf16 runs the mask decoder under autocast too), and its mask's Dice to fp32's.
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import samus

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "busi"


def cpu_flags() -> str:
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
        model = next(l for l in open("/proc/cpuinfo") if l.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return "unknown CPU"
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model}; {', '.join(have) or 'no AVX-512'}; {torch.get_num_threads()} threads"


def median_ms(fn, batch, repeats: int) -> float:
    with torch.inference_mode():
        fn(batch)  # warm-up (and compilation)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(batch)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def box_mask(model, encoder, image, box):
    predictor = samus.SamusPredictor(model)
    predictor._encoder = encoder  # the setting under test
    predictor.set_image(image)
    return predictor.predict(box=box)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = p.parse_args(argv)
    from PIL import Image

    from samus.prompts import tight_box

    image = np.asarray(Image.open(SAMPLE / "images" / "benign_3.png").convert("L"))
    box = tight_box(np.asarray(Image.open(SAMPLE / "masks" / "benign_3.png")) > 0)
    print(cpu_flags())
    print(f"{'model':10s} {'setting':28s} {'ms/frame':>9s} {'mask Dice vs fp32':>18s}")
    for name in ("fast", "accurate"):
        model = samus.load_default_model(model=name)
        batch = model.preprocess(samus.to_unit_grayscale(image))
        settings = [("fp32", model.inference_encoder(torch.float32)),
                    ("bf16 (channels-last copy)", model.inference_encoder(torch.bfloat16))]
        if args.compile:
            compiled = model.inference_encoder(torch.bfloat16)
            settings.append(("bf16 + torch.compile", torch.compile(compiled)))
        if "openvino" in model.backends:  # converted once (not timed), as a server does at start
            settings += [("openvino fp32", model.inference_encoder(torch.float32, "openvino")),
                         ("openvino bf16", model.inference_encoder(torch.bfloat16, "openvino"))]
        reference = None
        for label, encoder in settings:
            ms = median_ms(encoder, batch, args.repeats)
            mask = box_mask(model, encoder, image, box)
            reference = mask if reference is None else reference
            dice = 2 * (mask & reference).sum() / max(1, mask.sum() + reference.sum())
            print(f"{name:10s} {label:28s} {ms:9.1f} {dice:18.4f}", flush=True)
    print(f"\n{'model':10s} {'further click, predictor':28s} {'ms/click':>9s} {'mask Dice vs fp32':>18s}")
    gt = np.asarray(Image.open(SAMPLE / "masks" / "benign_3.png")) > 0
    for name in ("fast", "accurate"):
        model = samus.load_default_model(model=name)
        reference = None
        for precision in ("fp32", "bf16"):  # the encoder's backend does not change a further click
            ms, mask = click_ms(samus.SamusPredictor(model, precision=precision), image, gt, args.repeats * 4)
            reference = mask if reference is None else reference
            dice = 2 * (mask & reference).sum() / max(1, mask.sum() + reference.sum())
            print(f"{name:10s} {precision:28s} {ms:9.1f} {dice:18.4f}", flush=True)
    return 0


def click_ms(predictor, image, gt, repeats: int):
    """Median time of a second click (at the lesion's rightmost pixel) after a first one at its middle."""
    predictor.set_image(image)
    ys, xs = np.nonzero(gt)
    first = [[int(np.median(xs)), int(np.median(ys))]]
    _, _, low = predictor.predict(first, [1])
    clicks = first + [[int(xs.max()), int(ys[np.argmax(xs)])]]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mask, _, _ = predictor.predict(clicks, [1, 1], mask_input=low)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), mask


if __name__ == "__main__":
    raise SystemExit(main())
