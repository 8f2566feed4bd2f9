"""Fine-tuning SAMUS on the labels users submit, as a MONAI Label train task.

MONAI Label runs it in its own subprocess (POST /train/samus); with `multi_gpu` and several GPUs it
spawns one worker per GPU through MONAI Label's `main_worker`, exactly as its BasicTrainTask does. The
training itself is `samus.train` (the one implementation, with its simulated clicks). The best weights
are published atomically (copy to a temporary file in the model folder, then rename) to the path the infer
tasks watch, so they serve the new model on their next request; a run that fails or is stopped publishes
nothing. Submitted labels are copied at the start, so labels saved during training are never half-read
(they are used by the next run).
"""
import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

import torch
from filelock import FileLock
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.train.basic_train import main_worker
from monailabel.utils.async_tasks.utils import processes
from monailabel.utils.others.generic import device_list, name_to_device
from samus import read_checkpoint
from samus.atomic import atomic_path
from samus.predictor import PRECISIONS as MODEL_PRECISIONS
from samus.train import label_recipe, train_on_pairs, trainer_option_defaults

from ..app_conf import native_bf16
from ..errors import show
from ..model_service import ModelService, current_file

logger = logging.getLogger(__name__)

TRAIN_MODES = ["auto", "adapter", "full"]
PRECISIONS = ["auto"] + list(MODEL_PRECISIONS)  # auto: bf16 where the device computes it natively
# The options that are TrainConfig fields take their defaults from it (samus.train.config).
TRAINING_DEFAULTS = trainer_option_defaults()


class TrainRequestError(ValueError):
    pass


_INTEGER = re.compile(r"\s*-?[0-9]{1,18}\s*")
_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_DEVICE = re.compile(r"cpu|cuda(:[0-9]{1,2})?|[A-Za-z0-9 _.()-]{1,100}(:[0-9]{1,2})?")  # names: device_list()
_GPUS = re.compile(r"all|[0-9]{1,2}(,[0-9]{1,2}){0,31}")


def _atomic_json(path: str, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)


def publish(src: str, dest: str) -> None:
    """Copy `src` over `dest` atomically: readers see the old file or the new one, never a partial one."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


class SamusTrainTask(TrainTask):
    def __init__(self, model_dir: str, service: ModelService, folder: str = "samus"):
        super().__init__(f"Fine-tune the {service.name} model on the submitted labels (labels/final): 2D images "
                         "and labelled frames of volumes, with simulated clicks and boxes")
        # Plain values only: with multi_gpu, MONAI Label pickles the task into every worker process.
        self.base_path = service.base_path
        self.publish_path = service.publish_path
        self.base_config = service.conf.config
        self.root = os.path.join(model_dir, folder)
        # Frozen-trunk models train on cached trunk features; the cache outlives runs (keyed by image content).
        self.feature_cache = os.path.join(model_dir, "feature_cache")
        self.stats_path = os.path.join(self.root, "train_stats.json")
        sharing = service.conf.sharing
        self.nice, self.threads = sharing.train_nice, sharing.train_threads  # --conf train_nice / train_threads
        self._config = {
            "name": "train_01",
            "max_epochs": TRAINING_DEFAULTS["max_epochs"],
            "val_split": 0.2,
            "train_batch_size": TRAINING_DEFAULTS["train_batch_size"],
            "learning_rate": TRAINING_DEFAULTS["learning_rate"],
            "train_mode": TRAIN_MODES,  # auto: the official freezing rule for vit_b, everything for smaller models
            "precision": PRECISIONS,
            "max_rounds": TRAINING_DEFAULTS["max_rounds"],  # corrective clicks per sample, drawn from 0..max_rounds
            "max_steps_per_epoch": TRAINING_DEFAULTS["max_steps_per_epoch"],  # 0 = whole epochs
            "seed": TRAINING_DEFAULTS["seed"],
            "device": device_list(),
            "multi_gpu": True,
            "gpus": "all",
        }

    def config(self):
        return self._config

    def _read_stats(self) -> dict:
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stats(self):
        stats = self._read_stats()
        # A run killed by DELETE /train (or a crash) cannot say so itself. In the server, MONAI Label keeps
        # the train subprocess registered exactly while it runs (an in-process run_sync one is this pid).
        if stats.get("status") == "RUNNING" and stats.get("pid") != os.getpid() and not processes("train"):
            stats["status"] = "INTERRUPTED"
        return stats

    # ---------------------------------------------------------------------------------------- request
    def check_request(self, request: dict) -> dict:
        """The checked options of a train request; TrainRequestError names the first bad one. The server calls
        this before MONAI Label starts the train subprocess, so a bad request gets a 400 at once."""
        return self._options(request)

    def _options(self, request: dict) -> dict:
        if not isinstance(request, dict):
            raise TrainRequestError(f"training options must be a JSON object, got {type(request).__name__}")
        req = {k: (v[0] if isinstance(v, list) and v else v) for k, v in self._config.items()}
        req.update({k: (v[0] if isinstance(v, list) and k in ("train_mode", "precision", "device") and v else v)
                    for k, v in request.items()})

        def integer(key, low, high):
            v = req[key]
            if isinstance(v, str) and _INTEGER.fullmatch(v):
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise TrainRequestError(f"{key} must be an integer in [{low}, {high}], got {show(v)}")
            return v

        def number(key, low, high):
            v = req[key]
            try:
                f = float(v) if not isinstance(v, bool) else math.nan
            except (TypeError, ValueError, OverflowError):
                f = math.nan
            if not low <= f < high:  # also False for NaN
                raise TrainRequestError(f"{key} must be a number in [{low}, {high}), got {show(v)}")
            return f

        if req["train_mode"] not in TRAIN_MODES:
            raise TrainRequestError(f"train_mode must be one of {TRAIN_MODES}, got {show(req['train_mode'])}")
        if req["precision"] not in PRECISIONS:
            raise TrainRequestError(f"precision must be one of {PRECISIONS}, got {show(req['precision'])}")
        name = req["name"]
        if not isinstance(name, str) or not _RUN_NAME.fullmatch(name):
            raise TrainRequestError(f"name {show(name)} must be a plain folder name (letters, digits, . _ -)")
        device = req.get("device")
        if device is not None and (not isinstance(device, str) or not _DEVICE.fullmatch(device)):
            raise TrainRequestError(f"device must be cpu, cuda, cuda:N or a name from /info, got {show(device)}")
        gpus = req.get("gpus") or "all"
        if not isinstance(gpus, str) or not _GPUS.fullmatch(gpus):  # becomes CUDA_VISIBLE_DEVICES
            raise TrainRequestError(f"gpus must be 'all' or GPU indices like '0,1', got {show(gpus)}")
        lr = number("learning_rate", 1e-12, 1.0)
        device = name_to_device(device)
        return {
            "name": name,
            "epochs": integer("max_epochs", 1, 100_000),
            "val_split": number("val_split", 0.0, 1.0),
            "batch_size": integer("train_batch_size", 1, 1024),
            "lr": lr,
            "train_mode": req["train_mode"],
            "bf16": req["precision"] == "bf16" or (req["precision"] == "auto" and native_bf16(device)),
            "max_rounds": integer("max_rounds", 0, 20),
            "max_steps_per_epoch": integer("max_steps_per_epoch", 0, 10**9) or None,
            "seed": integer("seed", 0, 2**32 - 1),
            "device": device,
            "multi_gpu": str(req.get("multi_gpu")).lower() in ("true", "1"),
            "gpus": gpus,
        }

    # ---------------------------------------------------------------------------------------- data
    def snapshot(self, datastore: Datastore, folder: str) -> List[Tuple[str, str]]:
        """Copy every (image, final label) pair, under the datastore's lock, into the run folder."""
        os.makedirs(folder, exist_ok=True)
        lock = getattr(datastore, "_lock_file", None)
        pairs = []
        with FileLock(lock) if lock else contextlib.nullcontext():
            for n, item in enumerate(datastore.datalist()):
                dst_image = os.path.join(folder, f"{n:05d}_image_{os.path.basename(item['image'])}")
                dst_label = os.path.join(folder, f"{n:05d}_label_{os.path.basename(item['label'])}")
                shutil.copyfile(item["image"], dst_image)
                shutil.copyfile(item["label"], dst_label)
                pairs.append((dst_image, dst_label))
        return pairs

    # ---------------------------------------------------------------------------------------- run
    def __call__(self, request, datastore: Datastore):
        logger.info(f"Train request: {request}")
        self.yield_to_clicks()
        opts, pairs = self.prepare(request, datastore)
        gpus = opts["gpus"]
        world_size = torch.cuda.device_count() if gpus == "all" else len(str(gpus).split(","))
        multi_gpu = opts["multi_gpu"] and world_size >= 2 and opts["device"].startswith("cuda")
        return self.run(opts, pairs, world_size if multi_gpu else 1)

    def yield_to_clicks(self) -> None:
        """MONAI Label runs this in its train subprocess, on the cores that serve clicks: a lower CPU priority
        and fewer threads keep clicks fast while training runs (benchmarks/bench_sharing.py measures both). The
        server never runs it itself (SamusApp.train refuses run_sync)."""
        if self.nice:
            os.nice(self.nice)
        torch.set_num_threads(self.threads)
        logger.info(f"training at niceness {os.nice(0)} with {self.threads} thread(s)")

    def current_file(self) -> str:
        return current_file(self.publish_path, self.base_path)

    def prepare(self, request: dict, datastore: Datastore) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
        """Checked options and a snapshot of the labelled data."""
        opts = self._options(request)
        run_dir = os.path.join(self.root, opts["name"])
        os.makedirs(run_dir, exist_ok=True)
        for stale in ("best.pt", "last.pt"):  # never publish a previous run's file by mistake
            if os.path.exists(os.path.join(run_dir, stale)):
                os.unlink(os.path.join(run_dir, stale))
        pairs = self.snapshot(datastore, os.path.join(run_dir, "data"))
        if not pairs:
            raise TrainRequestError("no labels to train on: save labels (tag 'final') for some images first")
        start = self.current_file()  # continue from what is served now
        ckpt = read_checkpoint(start)
        config_name = ckpt.config_name or self.base_config or "vit_b"
        # auto: the official freezing rule for vit_b; everything trainable for smaller SAMUS and, on a frozen
        # foundation trunk, its heads and SAMUS additions
        mode = opts["train_mode"] if opts["train_mode"] != "auto" else ("adapter" if config_name == "vit_b" else "full")
        opts.update(run_id=datetime.now().strftime("%Y%m%d_%H%M%S"), run_dir=run_dir, start_checkpoint=start,
                    config=config_name, mode=mode, start_ts=int(time.time()), arch=ckpt.arch)
        return opts, pairs

    def run(self, opts: Dict[str, Any], pairs: List[Tuple[str, str]], world_size: int = 1):
        """Train on one process, or on `world_size` workers through MONAI Label's multi-GPU `main_worker`."""
        self._write_stats(opts, status="RUNNING", train_pairs=len(pairs), epoch=0)
        try:
            if world_size > 1:
                logger.info(f"Distributed training with {world_size} workers")
                os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # MONAI Label's train subprocess sets both
                os.environ.setdefault("MASTER_PORT", "29533")
                torch.multiprocessing.spawn(main_worker, nprocs=world_size, args=(world_size, opts, pairs, self))
            else:
                self.train(0, 1, opts, pairs)
        except BaseException as e:
            self._write_stats(opts, status="FAILED", error=f"{type(e).__name__}: {e}")
            raise
        return self.stats()

    def train(self, rank: int, world_size: int, opts: Dict[str, Any], pairs: List[Tuple[str, str]]):
        """One rank's share (rank 0 alone without multi_gpu); `main_worker` calls this in each worker."""
        if world_size > 1:
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
        device = opts["device"]
        if world_size > 1 and device.startswith("cuda"):
            device = "cuda"  # samus.train picks cuda:LOCAL_RANK

        def progress(epoch, step, loss, metrics):
            if step == metrics["steps"]:  # end of an epoch
                logger.info(f"epoch {epoch + 1}/{metrics['epochs']}: loss {loss:.4f}, val Dice {metrics.get('val_dice')}")
                self._write_stats(opts, status="RUNNING", epoch=epoch + 1, step=step, steps=metrics["steps"],
                                  train_loss=metrics.get("train_loss"), val_dice=metrics.get("val_dice"))
            elif step % 10 == 0:
                logger.info(f"epoch {epoch + 1}/{metrics['epochs']} step {step}/{metrics['steps']}: loss {loss:.4f}")
                self._write_stats(opts, status="RUNNING", epoch=epoch + 1, step=step, steps=metrics["steps"],
                                  train_loss=loss)

        result = train_on_pairs(
            pairs, val_fraction=opts["val_split"], progress=progress,
            arch=opts["arch"], feature_cache=self.feature_cache if opts["arch"] != "samus" else None,
            config=opts["config"], checkpoint=opts["start_checkpoint"], mode=opts["mode"], lr=opts["lr"],
            batch_size=opts["batch_size"], epochs=opts["epochs"], seed=opts["seed"], bf16=opts["bf16"],
            device=device, out_dir=opts["run_dir"], max_rounds=opts["max_rounds"], **label_recipe(opts["mode"]),
            max_steps_per_epoch=opts["max_steps_per_epoch"], progress_bar=False, tensorboard=True,
            data="MONAI Label datastore (labels/final)",
        )
        if rank != 0:
            return None
        if result["stopped"]:
            self._write_stats(opts, status="STOPPED", history=result["history"])
            return None
        best = result["best"] or result["last"]
        publish(best, self.publish_path)
        logger.info(f"published {best} -> {self.publish_path}")
        self._write_stats(opts, status="DONE", history=result["history"], published=self.publish_path,
                          best_metric=result["best_dice"], epochs_done=result["epochs_done"])
        return result

    def _write_stats(self, opts: Dict[str, Any], status: str, **fields) -> None:
        """train_stats.json, read by /info (train_stats) and GET /model/info; replaced atomically."""
        os.makedirs(self.root, exist_ok=True)
        stats = self._read_stats()
        if stats.get("run_id") != opts["run_id"]:
            stats = {}
        stats.update(name=opts["name"], run_id=opts["run_id"], status=status, start_ts=opts["start_ts"],
                     total_epochs=opts["epochs"], mode=opts["mode"], config=opts["config"],
                     start_checkpoint=opts["start_checkpoint"], device=opts["device"], pid=os.getpid(),
                     niceness=os.nice(0), threads=torch.get_num_threads(),
                     total_time=round(time.time() - opts["start_ts"], 1))
        stats.update(fields)
        dices = [h["val_dice"] for h in stats.get("history") or [] if h.get("val_dice") is not None]
        if dices:
            stats["best_metric"] = max(dices)
        _atomic_json(self.stats_path, stats)
