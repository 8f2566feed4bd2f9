"""Training through MONAI Label (POST /train/samus, its separate process) and active learning by diversity.

A server with a 'tiny' model keeps this fast; what is checked is the plumbing: the served model changes
only when a run finishes, labels saved meanwhile are kept, stopped or failed runs publish nothing.
"""
import os
import shutil
import sys
import time

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from app_server import APP_DIR, free_port, running_server
from helpers_app import SAMPLES, load_busi

IMAGES = ("benign_3", "malignant_2", "benign_6", "malignant_15")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train") / "studies"
    folder.mkdir()
    for name in IMAGES:
        shutil.copy(SAMPLES / "images" / f"{name}.png", folder / f"{name}.png")
    shutil.copy(SAMPLES / "images" / "benign_3.png", folder / "benign_3_copy.png")  # for the diversity test
    return folder


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, tmp_path_factory):
    conf = {"checkpoint": str(tiny_checkpoint), "model_dir": str(tmp_path_factory.mktemp("model")), "threads": "1",
            "train_nice": "5", "train_threads": "1"}
    with running_server(studies, conf, log_dir=tmp_path_factory.mktemp("log")) as url:
        yield url


def save_labels(client, names=("benign_3", "malignant_2")):
    for name in names:
        client.save_label(name, str(SAMPLES / "masks" / f"{name}.png"), tag="final")


def model_info(server):
    r = requests.get(f"{server}/model/info/samus", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def click_version(client):
    return client.infer("samus", "benign_3", {"foreground": [[200, 150]]})[1]


def wait_until_running(client, timeout=60):
    """MONAI Label starts the train subprocess from a worker thread, shortly after answering."""
    deadline = time.time() + timeout
    while not client.train_status(check_if_running=True):
        assert time.time() < deadline, client.train_status()
        time.sleep(0.2)


def wait_until_finished(client, timeout=400):
    deadline = time.time() + timeout
    while client.train_status(check_if_running=True):
        assert time.time() < deadline, "training did not finish"
        time.sleep(1)
    return client.train_status()


def test_diversity_prefers_images_unlike_the_labelled_ones(client):
    save_labels(client)
    sample = client.next_sample("diversity", {})
    # benign_3_copy is pixel-identical to a labelled image: the least informative choice possible.
    assert sample["id"] in {"benign_6", "malignant_15"}
    assert sample["diversity_distance"] > 0.0


def test_training_publishes_a_new_model_and_keeps_labels_saved_meanwhile(client, server):
    save_labels(client)
    before = model_info(server)
    first = click_version(client)
    task = client.train_start("samus", {"max_epochs": 2, "val_split": 0.5, "train_batch_size": 2})
    assert task["status"] in ("SUBMITTED", "RUNNING")
    wait_until_running(client)
    client.save_label("benign_6", str(SAMPLES / "masks" / "benign_6.png"), tag="final")  # while training
    status = wait_until_finished(client)
    assert status["status"] == "DONE", status.get("details")

    stats = client.info()["train_stats"]["samus"]
    assert stats["status"] == "DONE" and stats["epochs_done"] == 2 and stats["published"]
    # The run yielded the CPU to clicks: lower priority than the server (which has this process's) and 1 thread.
    assert stats["niceness"] == min(19, os.nice(0) + 5) and stats["threads"] == 1
    after = model_info(server)
    assert after["checksum"] != before["checksum"]
    second = click_version(client)
    assert second["model_version"] != first["model_version"]
    assert second["cache_hit"] is False  # embeddings of the old model were dropped
    stored = client.download_label("benign_6", "final")
    assert np.array_equal(np.asarray(Image.open(stored)) > 0, load_busi("benign_6")[1])


def test_stopped_training_leaves_the_served_model(client, server):
    save_labels(client)
    before, version = model_info(server), click_version(client)["model_version"]
    client.train_start("samus", {"max_epochs": 500, "val_split": 0, "train_batch_size": 1})
    wait_until_running(client)
    deadline = time.time() + 300
    while True:  # wait until it really trains, then stop it
        stats = client.info()["train_stats"].get("samus", {})
        if stats.get("status") == "RUNNING" and stats.get("epoch", 0) >= 1:
            break
        assert client.train_status(check_if_running=True), client.train_status().get("details")
        assert time.time() < deadline
        time.sleep(1)
    client.train_stop()
    assert not client.train_status(check_if_running=True)
    assert client.train_status()["status"] == "STOPPED"
    assert client.info()["train_stats"]["samus"]["status"] == "INTERRUPTED"
    assert model_info(server)["checksum"] == before["checksum"]
    assert click_version(client)["model_version"] == version


def test_bad_options_are_refused_before_a_run_starts(client, server):
    before = model_info(server)
    r = requests.post(f"{server}/train/samus", json={"max_epochs": "lots"}, timeout=30)
    assert r.status_code == 400 and "max_epochs must be an integer" in r.json()["detail"]
    assert not client.train_status(check_if_running=True)
    assert model_info(server)["checksum"] == before["checksum"]


def test_failed_training_leaves_the_served_model(client, server, studies):
    save_labels(client)
    before, version = model_info(server), click_version(client)["model_version"]
    label = studies / "labels" / "final" / "malignant_2.png"
    good = label.read_bytes()
    label.write_bytes(b"not a png")  # the run copies it, cannot read it and fails
    try:
        client.train_start("samus", {"max_epochs": 1})
        time.sleep(1)  # let MONAI Label start it (it may fail before check_if_running would see it)
        status = wait_until_finished(client)
    finally:
        label.write_bytes(good)
    assert status["status"] == "ERROR"
    assert client.info()["train_stats"]["samus"]["status"] == "FAILED"
    assert model_info(server)["checksum"] == before["checksum"]
    assert click_version(client)["model_version"] == version


def test_multi_gpu_path_runs_workers_through_monailabel(tiny_checkpoint, tmp_path, monkeypatch):
    """MONAI Label's multi-GPU route (torch.multiprocessing.spawn -> main_worker -> task.train per rank),
    run here with 2 CPU workers (gloo): rank 0 alone publishes."""
    sys.path.insert(0, str(APP_DIR))
    from lib.app_conf import parse_conf
    from lib.model_service import ModelService
    from lib.trainers.samus import SamusTrainTask

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    service = ModelService(parse_conf({"checkpoint": str(tiny_checkpoint), "device": "cpu"}), str(tmp_path))
    task = SamusTrainTask(str(tmp_path), service)

    class Store:  # the two methods the trainer uses, over plain files
        def datalist(self):
            return [{"image": str(SAMPLES / "images" / f"{n}.png"), "label": str(SAMPLES / "masks" / f"{n}.png")}
                    for n in ("benign_3", "malignant_2")]

    opts, pairs = task.prepare({"max_epochs": 1, "val_split": 0, "train_batch_size": 1, "device": "cpu"}, Store())
    stats = task.run(opts, pairs, world_size=2)
    assert stats["status"] == "DONE"
    import samus

    published = samus.read_checkpoint(service.publish_path)
    assert published.config_name == "tiny"
    original = samus.read_checkpoint(tiny_checkpoint).state_dict
    assert any(not torch.equal(v, original[k]) for k, v in published.state_dict.items())


def test_trainer_fine_tunes_the_foundation_model_on_cached_features(tmp_path):
    """The accurate model's trainer: frozen trunk, heads trained on cached trunk features, published in our
    format without the trunk, and the cache kept for the next run."""
    sys.path.insert(0, str(APP_DIR))
    from lib.app_conf import parse_conf
    from lib.model_service import ModelService
    from lib.trainers.samus import SamusTrainTask
    import samus

    base = samus.save_checkpoint(tmp_path / "lite.pt", samus.build_lite_medsam(), {"source": "tests"})
    service = ModelService(parse_conf({"checkpoint": str(base), "device": "cpu", "threads": "1"}), str(tmp_path))
    task = SamusTrainTask(str(tmp_path), service)
    names = ("benign_3", "malignant_2", "benign_6")

    class Store:
        def datalist(self):
            return [{"image": str(SAMPLES / "images" / f"{n}.png"), "label": str(SAMPLES / "masks" / f"{n}.png")}
                    for n in names]

    opts, pairs = task.prepare({"max_epochs": 1, "val_split": 0.3, "train_batch_size": 2, "device": "cpu"}, Store())
    assert opts["arch"] == "lite_medsam" and opts["mode"] == "full"
    stats = task.run(opts, pairs)
    assert stats["status"] == "DONE", stats
    published = samus.read_checkpoint(service.publish_path)
    assert published.arch == "lite_medsam" and published.base is not None
    assert not any(k.startswith("image_encoder.trunk.") for k in published.state_dict)
    original = samus.read_checkpoint(base).state_dict
    assert any(not torch.equal(v, original[k]) for k, v in published.state_dict.items())
    cached = list((tmp_path / "feature_cache").rglob("*.npy"))
    assert len(cached) == len(names)  # one entry per submitted image, reused by the next run
    served = service.get()  # the service swaps the published weights in
    assert served.path == service.publish_path and served.predictor.model.arch == "lite_medsam"


def test_training_precision_auto_is_bf16_where_the_device_computes_it(tiny_checkpoint, tmp_path):
    sys.path.insert(0, str(APP_DIR))
    from lib.app_conf import native_bf16, parse_conf
    from lib.model_service import ModelService
    from lib.trainers.samus import SamusTrainTask, TrainRequestError

    service = ModelService(parse_conf({"checkpoint": str(tiny_checkpoint), "device": "cpu"}), str(tmp_path))
    task = SamusTrainTask(str(tmp_path), service)
    assert task.config()["precision"][0] == "auto"  # the default MONAI Label shows first
    assert task.check_request({"device": "cpu"})["bf16"] is native_bf16("cpu")
    assert task.check_request({"device": "cpu", "precision": "fp32"})["bf16"] is False
    assert task.check_request({"device": "cpu", "precision": "bf16"})["bf16"] is True
    with pytest.raises(TrainRequestError, match="precision must be one of"):
        task.check_request({"precision": "fp16"})
