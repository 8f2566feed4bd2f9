"""Click latency and propagation speed of the SAMUS MONAI Label app, end to end through REST.

Starts `monailabel start_server` with the bundled model (or --checkpoint) on the bundled BUSI images plus a
30-frame cine built from one of them, then times the official client:
- first click on a frame (the image embedding is computed) and following clicks (cache hit), median and
  95th percentile, for 2D BUSI images and for frames of the cine (whose result is a full label volume);
- propagation through the cine in frames per second (cold: every frame encoded; warm: cached);
- the server's resident memory (RSS) after that, and again once the accurate model's embedding cache is full
  (accurate propagations through fresh cine copies until it holds `cache_mb` worth of frames).

    .venv/bin/python benchmarks/bench_app.py [--checkpoint PATH] [--copies 3] [--follow 4]
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

from app_server import server_process  # noqa: E402
from helpers_app import SAMPLES, click_xy, load_busi, load_volume, make_studies  # noqa: E402

SAM2_REFERENCE = "MONAI Label's built-in SAM2 task re-encodes on every click: 8.9 s (SAM2.1 Hiera-L), 1.8 s (Hiera-T)"


def summary(name: str, seconds) -> str:
    ms = np.asarray(seconds) * 1000
    return (f"{name:<38} n={len(ms):3d}  median {np.median(ms):7.1f} ms  p95 {np.percentile(ms, 95):7.1f} ms  "
            f"min {ms.min():7.1f} ms")


def memory_mib(pid: int):
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="serve this checkpoint instead of the bundled model")
    ap.add_argument("--copies", type=int, default=3, help="copies of each BUSI image (more first clicks)")
    ap.add_argument("--follow", type=int, default=4, help="following clicks per frame")
    ap.add_argument("--cine-frames", type=int, default=10, help="cine frames to click on")
    ap.add_argument("--threads", default="auto", help="server CPU threads (--conf threads)")
    ap.add_argument("--fill-copies", type=int, default=3,
                    help="fresh cine copies propagated with the accurate model to fill its cache (0: skip)")
    ap.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="extra --conf for the server (e.g. --conf precision bf16)")
    args = ap.parse_args()

    from monailabel.client import MONAILabelClient

    work = Path(tempfile.mkdtemp(prefix="bench-app-"))
    names = sorted(p.stem for p in (SAMPLES / "images").glob("*.png"))
    studies = make_studies(work / "studies", images=(), cine="benign_3")
    ids = []
    for name in names:
        for c in range(args.copies):
            shutil.copy(SAMPLES / "images" / f"{name}.png", studies / f"{name}__{c}.png")
            ids.append((f"{name}__{c}", name))
    truth = load_volume(work / "studies_truth" / "benign_3_cine.nii.gz")
    conf = {"model_dir": str(work / "model"), "threads": args.threads, **dict(args.conf)}
    if args.checkpoint:
        conf["checkpoint"] = args.checkpoint

    with server_process(studies, conf, log_dir=work / "log") as server:
        url = server.url
        client = MONAILabelClient(url, tmpdir=str(work / "client"))
        info = client.info()
        print(f"server {url}; models {sorted(info['models'])}")
        client.infer("samus", ids[0][0], {"foreground": [[5, 5]]})  # connection + any lazy set-up

        first, follow, server_first, server_follow = [], [], [], []
        for image_id, name in ids[1:]:
            x, y = click_xy(load_busi(name)[1])
            dt, (_, p) = timed(lambda: client.infer("samus", image_id, {"foreground": [[x, y]]}))
            assert not p["cache_hit"], p
            first.append(dt)
            server_first.append(p["latencies"]["total"])
            for n in range(args.follow):
                params = {"foreground": [[x, y]], "background": [[3 + n, 3]]}
                dt, (_, p) = timed(lambda: client.infer("samus", image_id, params))
                assert p["cache_hit"], p
                follow.append(dt)
                server_follow.append(p["latencies"]["total"])

        cine_first, cine_follow = [], []
        step = max(1, truth.shape[2] // args.cine_frames)
        for k in range(0, truth.shape[2], step)[: args.cine_frames]:
            x, y = click_xy(truth[:, :, k])
            params = {"foreground": [[x, y, k]], "result_extension": ".nrrd"}  # as the Slicer plugin asks
            dt, (_, p) = timed(lambda: client.infer("samus", "benign_3_cine", params))
            assert not p["cache_hit"], p
            cine_first.append(dt)
            for n in range(args.follow):
                params = {"foreground": [[x, y, k]], "background": [[3 + n, 3, k]], "result_extension": ".nrrd"}
                dt, (_, p) = timed(lambda: client.infer("samus", "benign_3_cine", params))
                cine_follow.append(dt)

        # Propagation: a fresh copy of the cine, so no frame is cached (cold), then the same again (warm).
        shutil.copy(studies / "benign_3_cine.nii.gz", work / "cine_cold.nii.gz")
        client.upload_image(str(work / "cine_cold.nii.gz"), "cine_cold")
        x, y = click_xy(truth[:, :, 15])
        prop = {"foreground": [[x, y, 15]]}
        cold_dt, (_, cold) = timed(lambda: client.infer("samus_propagate", "cine_cold", prop))
        warm_dt, (_, warm) = timed(lambda: client.infer("samus_propagate", "cine_cold", prop))
        rss = [("after the runs above", memory_mib(server.proc.pid))]
        for c in range(args.fill_copies):
            shutil.copy(studies / "benign_3_cine.nii.gz", work / f"cine_fill{c}.nii.gz")
            client.upload_image(str(work / f"cine_fill{c}.nii.gz"), f"cine_fill{c}")
            client.infer("samus_propagate", f"cine_fill{c}", {**prop, "variant": "accurate"})
        if args.fill_copies:
            rss.append((f"+ {args.fill_copies * truth.shape[2]} frames propagated with accurate", memory_mib(server.proc.pid)))

    print()
    print(f"Model: {conf.get('checkpoint', 'bundled default')}; threads {conf['threads']}; "
          f"precision {conf.get('precision', 'auto')}; backend {conf.get('backend', 'auto')}; first click {len(first)} images of "
          f"{names[0]}..{names[-1]} (x{args.copies} copies); {args.follow} following clicks each")
    print(summary("2D image, first click on a frame", first))
    print(summary("2D image, following clicks", follow))
    print(summary("  (server side) first click", server_first))
    print(summary("  (server side) following clicks", server_follow))
    print(summary("cine frame -> .nrrd volume, first click", cine_first))
    print(summary("cine frame -> .nrrd volume, following", cine_follow))
    n = len(cold["frames"])
    print(f"{'propagation, cold (encode every frame)':<38} {n} frames in {cold_dt:.2f} s = {n / cold_dt:.1f} frames/s "
          f"end to end ({cold['latencies']['frames_per_second']:.1f} frames/s in the server)")
    n = len(warm["frames"])
    print(f"{'propagation, warm (embeddings cached)':<38} {n} frames in {warm_dt:.2f} s = {n / warm_dt:.1f} frames/s "
          f"end to end")
    for when, (now, peak) in rss:
        print(f"{'server RSS, ' + when:<38} {now:.0f} MiB (peak {peak:.0f} MiB)")
    print(f"Reference: {SAM2_REFERENCE}")
    print(f"Targets: following clicks <= 60 ms median, first click <= 150 ms, propagation >= 10 frames/s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
