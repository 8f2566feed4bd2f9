"""Click latency when users share one server: alone, while another user propagates, while training runs.

Starts `monailabel start_server` with the bundled model (or --checkpoint) and drives it with the official
client from several threads: `--users` users click, each on a new image every `--interval` seconds (each
click is a first click: an encoder pass), while
- nobody else works ("alone"),
- a further user propagates one click through a `--frames`-frame 256 x 256 cine (NIfTI) in one request,
- a training run goes on in MONAI Label's train subprocess (with this app's `--conf train_nice` and
  `train_threads`; `--compare-training` repeats the training rows on a second server without them).
It prints click latency (p50 / p95 / max, and the most batches of others' work a click waited for), the
propagation's time alone and during the clicks, training speed (training images per second, from the run's history) alone and during the
clicks, and the first-click latency after stepping one frame in a cine with and without encode-ahead.

    .venv/bin/python benchmarks/bench_sharing.py [--frames 300] [--users 3] [--compare-training]
"""
import argparse
import itertools
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

from app_server import running_server  # noqa: E402
from helpers_app import SAMPLES, build_cine, click_xy, load_busi, save_nifti  # noqa: E402

NAMES = sorted(p.stem for p in (SAMPLES / "images").glob("*.png"))


def stats(name, seconds, waited=None) -> str:
    ms = np.asarray(seconds) * 1000
    extra = f"  waited <= {max(waited)} batch(es)" if waited else ""
    return (f"{name:<34} n={len(ms):3d}  p50 {np.percentile(ms, 50):7.1f} ms  p95 {np.percentile(ms, 95):7.1f} ms  "
            f"max {ms.max():7.1f} ms{extra}")


def make_studies(folder: Path, copies: int, frames: int) -> dict:
    """Copies of the BUSI samples (each copy is a new image to the server) and two identical cines."""
    from PIL import Image

    folder.mkdir(parents=True)
    clicks = {}
    for name in NAMES:
        _, mask = load_busi(name)
        for c in range(copies):
            shutil.copy(SAMPLES / "images" / f"{name}.png", folder / f"{name}__{c}.png")
            clicks[f"{name}__{c}"] = list(click_xy(mask))
    image, mask = load_busi("benign_3")
    small = np.asarray(Image.fromarray(image).resize((256, 256), Image.BILINEAR))
    small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((256, 256), Image.NEAREST)) > 0
    vol, truth = build_cine(small, small_mask, frames)
    for name in ("cine_alone", "cine_shared", "cine_step"):
        save_nifti(vol, folder / f"{name}.nii.gz")
    k = frames // 2
    return {"images": clicks, "cine_click": list(click_xy(truth[:, :, k] > 0)) + [k]}


class Clickers:
    """`users` threads, each clicking on a new image every `interval` seconds until stopped (or `n` clicks)."""

    def __init__(self, url, images: dict, users: int, interval: float, tmp: Path):
        self.url, self.images, self.users, self.interval, self.tmp = url, images, users, interval, tmp
        self.ids = itertools.cycle(list(images))
        self.lock = threading.Lock()

    def run(self, stop: threading.Event = None, n: int = None):
        from monailabel.client import MONAILabelClient

        latencies, waited, errors = [], [], []

        def user(u):
            folder = Path(tempfile.mkdtemp(dir=self.tmp))
            client = MONAILabelClient(self.url, tmpdir=str(folder))
            count = 0
            while (n is None or count < n) and not (stop is not None and stop.is_set()):
                with self.lock:
                    image = next(self.ids)
                t = time.perf_counter()
                try:
                    _, reply = client.infer("samus", image, {"foreground": [self.images[image]]})
                except Exception as e:  # noqa: BLE001 - counted and shown
                    errors.append(repr(e))
                    continue
                took = time.perf_counter() - t
                latencies.append(took)
                waited.append(reply["scheduler"]["waited_batches"])
                count += 1
                time.sleep(max(0.0, self.interval - took))

        threads = [threading.Thread(target=user, args=(u,)) for u in range(self.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            print(f"  {len(errors)} click errors, e.g. {errors[0]}")
        return latencies, waited


def propagate(url, cine, click, tmp):
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(url, tmpdir=str(tmp))
    t = time.perf_counter()
    _, reply = client.infer("samus_propagate", cine, {"foreground": [click]})
    return time.perf_counter() - t, len(reply["frames"])


def train_stats(url) -> dict:
    return requests.get(f"{url}/info/", timeout=60).json().get("train_stats", {}).get("samus", {})


def training_speed(history: Path, seconds: float) -> float:
    """Mean training images/s of the epochs that finish within the next `seconds` (the run's history.json)."""
    def records():
        try:
            return json.loads(history.read_text())
        except (OSError, ValueError):  # not written yet, or being replaced
            return []

    before = len(records())
    time.sleep(seconds)
    done = records()[before:]
    return float(np.mean([r["images_per_s"] for r in done])) if done else float("nan")


def start_training(url, labelled):
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(url)
    for image in labelled:
        client.save_label(image, str(SAMPLES / "masks" / f"{image.split('__')[0]}.png"), tag="final")
    r = requests.post(f"{url}/train/samus", json={"max_epochs": 100000, "train_batch_size": 4, "val_split": 0.25},
                      timeout=60)
    r.raise_for_status()
    while train_stats(url).get("epoch", 0) < 1:  # past start-up and the first epoch
        time.sleep(0.5)


def stop_training(url):
    requests.delete(f"{url}/train/", timeout=60)
    while requests.get(f"{url}/train/", params={"check_if_running": "true"}, timeout=60).status_code == 200:
        time.sleep(0.5)


def training_rows(url, clickers, labelled, args, label, log_dir: Path):
    start_training(url, labelled)
    history = log_dir / "model" / "samus" / "train_01" / "history.json"  # running_server's model_dir
    alone = training_speed(history, args.train_seconds)
    result = {}
    t = threading.Thread(target=lambda: result.update(speed=training_speed(history, args.train_seconds)))
    t.start()
    lat, waited = clickers.run(n=args.clicks)
    t.join()
    stop_training(url)
    print(stats(f"clicks during training{label}", lat, waited))
    print(f"training{label}: {alone:.1f} images/s alone, {result['speed']:.1f} while users click")


def step_row(url, click, frames, tmp, label, first_frame=0):
    """First click on frame k+1 after a click on frame k and a 2 s pause (the user looks at the mask)."""
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(url, tmpdir=str(tmp))
    x, y, _ = click
    times, hits = [], []
    for j in range(8):
        frame = (first_frame + 7 * j) % (frames - 2)
        client.infer("samus", "cine_step", {"foreground": [[x, y, frame]]})
        time.sleep(2.0)
        t = time.perf_counter()
        _, reply = client.infer("samus", "cine_step", {"foreground": [[x, y, frame + 1]]})
        times.append(time.perf_counter() - t)
        hits.append(reply["cache_hit"])
    print(stats(f"next frame's first click, {label}", times) + f"  cache hits {sum(hits)}/{len(hits)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="serve this checkpoint instead of the bundled model")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between one user's clicks")
    ap.add_argument("--clicks", type=int, default=20, help="clicks per user in the 'alone' and training rows")
    ap.add_argument("--copies", type=int, default=30, help="copies of each BUSI sample (distinct images)")
    ap.add_argument("--train-seconds", type=float, default=40.0, help="window for measuring training speed")
    ap.add_argument("--compare-training", action="store_true",
                    help="also run the training rows on a server with train_nice 0 and all threads")
    ap.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-sharing-"))
    setup = make_studies(work / "studies", args.copies, args.frames)
    conf = dict(args.conf)
    if args.checkpoint:
        conf["checkpoint"] = args.checkpoint
    labelled = [f"{name}__{c}" for name in NAMES for c in range(4)]
    clicks = {k: v for k, v in setup["images"].items() if k not in labelled}
    print(f"{args.users} users, each clicking a new image every {args.interval} s; propagation of "
          f"{args.frames} frames (256 x 256)")
    with running_server(work / "studies", conf=conf, log_dir=work / "log") as url:
        clickers = Clickers(url, clicks, args.users, args.interval, work)
        clickers.run(n=2)  # warm-up
        lat, waited = clickers.run(n=args.clicks)
        print(stats("clicks alone", lat, waited))

        alone, n = propagate(url, "cine_alone", setup["cine_click"], work)
        stop = threading.Event()
        out = {}

        def shared():
            out["t"], out["n"] = propagate(url, "cine_shared", setup["cine_click"], work)
            stop.set()

        t = threading.Thread(target=shared)
        t.start()
        lat, waited = clickers.run(stop=stop)
        t.join()
        print(stats("clicks during propagation", lat, waited))
        print(f"propagation of {n} frames: {alone:.2f} s alone, {out['t']:.2f} s while users click "
              f"(+{100 * (out['t'] / alone - 1):.0f}%)")

        step_row(url, setup["cine_click"], args.frames, work, "encode-ahead")
        training_rows(url, clickers, labelled, args, " (nice, thread budget)", work / "log")

    # Without encode-ahead (and, with --compare-training, training without nice and thread budget).
    conf = dict(conf, encode_ahead="0")
    if args.compare_training:
        conf.update(train_nice="0", train_threads=conf.get("threads", "2"))
    shutil.rmtree(work / "studies" / "labels", ignore_errors=True)
    with running_server(work / "studies", conf=conf, log_dir=work / "log2") as url:
        step_row(url, setup["cine_click"], args.frames, work, "no encode-ahead", first_frame=3)
        if args.compare_training:
            clickers = Clickers(url, clicks, args.users, args.interval, work)
            clickers.run(n=2)
            training_rows(url, clickers, labelled, args, " (no nice, all threads)", work / "log2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
