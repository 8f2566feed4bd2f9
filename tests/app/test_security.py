"""Hostile input against a real server: every hole of issue 9, one test each, and 8 concurrent clients.

One server for the module (bundled model, small limits so each limit is cheap to reach), with its own
temporary folder (TMPDIR) and session folder, so leftovers can be counted, and a secret file outside its
folders that no request may read.
"""
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import samus
from monailabel.client import MONAILabelClient
from PIL import Image

from app_server import APP_DIR, server_process
from helpers_app import (SAMPLES, click_xy, detached_mha, detached_nrrd, huge_png, load_busi, make_studies, multipart,
                         nifti_pair_header, png_bytes)

CINE = "benign_3_cine"
LIMITS = {"max_clicks_per_frame": "8", "max_clicks": "12", "max_propagation_frames": "10",
          "max_frame_pixels": str(1024 * 1024), "max_upload_mb": "4", "max_params_kb": "256"}
SECRET = bytes(np.random.default_rng(9).integers(0, 256, 256, dtype=np.uint8))  # 16 x 16 uint8 "pixels"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("security")
    studies = make_studies(root / "studies", images=("benign_3", "malignant_2", "benign_13"), cine="benign_3")
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(studies / "tiny16.png")
    secret = root / "outside" / "secret.raw"  # a file of the server's machine that no request may read
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    tmp, sessions = root / "server_tmp", root / "sessions"
    tmp.mkdir()
    conf = dict(LIMITS, threads="1", model_dir=str(root / "model"))
    if not samus.DEFAULT_CHECKPOINT.is_file():
        conf["checkpoint"] = str(tiny_checkpoint)
    env = {"TMPDIR": str(tmp), "MONAI_LABEL_SESSION_PATH": str(sessions), "MONAI_LABEL_INFER_CONCURRENCY": "2"}
    with server_process(studies, conf, env=env, log_dir=root / "log") as server:
        yield {"url": server.url, "pid": server.proc.pid, "studies": studies, "tmp": tmp, "secret": secret,
               "root": root}


@pytest.fixture(scope="module")
def url(world):
    return world["url"]


@pytest.fixture
def client(url, tmp_path):
    return MONAILabelClient(url, tmpdir=str(tmp_path))


def infer(url, params, image="benign_3", model="samus", files=None, **query):
    """As MONAI Label's client sends it: a multipart form with `params` (and the upload, if any)."""
    parts = {"params": (None, params if isinstance(params, str) else json.dumps(params)), **(files or {})}
    return requests.post(f"{url}/infer/{model}", params={"image": image, "output": "json", **query}, files=parts,
                         timeout=120)


def put_label(url, image, content, name="label.png", params="{}", tag="final"):
    return requests.put(f"{url}/datastore/label", params={"image": image, "tag": tag}, data={"params": params},
                        files={"label": (name, content)}, timeout=60)


def raw(url, method, path, body: bytes, content_type: str, query=None):
    return requests.request(method, f"{url}{path}", params=query, data=body, headers={"Content-Type": content_type},
                            timeout=60)


def temp_files(world):
    return sorted(os.listdir(world["tmp"]))


def assert_no_new_temp_files(world, before, timeout=5.0):
    """MONAI Label removes a request's temporary files right after the response: allow it a moment."""
    deadline = time.time() + timeout
    while set(temp_files(world)) - set(before) and time.time() < deadline:
        time.sleep(0.1)
    assert set(temp_files(world)) - set(before) == set()


def expect(r, status, message):
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert message in r.json()["detail"], r.json()["detail"]


# ------------------------------------------------------------------------------------------ 1. file reads
@pytest.mark.parametrize("make", [detached_nrrd, detached_mha], ids=["nrrd data file", "mha ElementDataFile"])
def test_detached_headers_cannot_read_server_files(world, url, tmp_path, make):
    from samus.data import read_array

    hostile = make(tmp_path / f"label{'.nrrd' if make is detached_nrrd else '.mha'}", world["secret"])
    assert read_array(hostile)[0].tobytes() == SECRET  # the attack is real: a plain reader follows the header
    content = hostile.read_bytes()

    expect(put_label(url, "tiny16", content, hostile.name), 400, "not self-contained")
    r = requests.get(f"{url}/datastore/label", params={"label": "tiny16", "tag": "final"}, timeout=30)
    assert r.status_code == 404
    r = requests.put(f"{url}/datastore/image", params={"image": "evil"}, files={"file": (hostile.name, content)},
                     timeout=60)
    expect(r, 400, "not self-contained")
    expect(infer(url, {"foreground": [[3, 3]]}, image="", files={"file": (hostile.name, content)}), 400,
           "not self-contained")
    # A session stores any file; reading it for a click is what must fail.
    session = requests.put(f"{url}/session/", files={"files": (hostile.name, content)}, timeout=60).json()
    expect(infer(url, {"foreground": [[3, 3]]}, image="", session_id=session["session_id"]), 400, "not self-contained")


def test_two_file_forms_and_disguised_formats_are_refused(url, tmp_path):
    header = nifti_pair_header(tmp_path / "pair.nii").read_bytes()
    expect(put_label(url, "tiny16", header, "pair.nii"), 400, "separate .img")
    nhdr = detached_nrrd(tmp_path / "x.nhdr", "x.raw").read_bytes()
    expect(put_label(url, "tiny16", nhdr, "x.nhdr"), 400, "not self-contained")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n"  # Pillow would hand it to Ghostscript
    expect(put_label(url, "tiny16", eps, "x.png"), 400, "named .png but holds EPS data")


# ------------------------------------------------------------------------------------------ 2. temp files
def test_temporary_files_are_not_served_by_path(world, url):
    other = world["tmp"] / "tmpabcd1234.png"  # as another request's upload is named while it runs
    other.write_bytes(png_bytes(np.full((32, 32), 200, np.uint8)))
    try:
        expect(infer(url, {"foreground": [[3, 3]]}, image=str(other)), 400, "file path")
        expect(infer(url, {"foreground": [[3, 3]], "image": str(other)}), 400, "params may not set image")
        # With a file, the request reads its own upload, whatever `image` says.
        upload = png_bytes(np.zeros((20, 24), np.uint8))
        r = infer(url, {"foreground": [[23, 19]]}, image=str(other), files={"file": ("mine.png", upload)})
        assert r.status_code == 200, r.text
        assert other.exists()  # and never deletes another request's file
    finally:
        other.unlink()


# ------------------------------------------------------------------------------------------ 3. app 500s
HUGE = 10**400


@pytest.mark.parametrize("model, params, message", [
    ("samus", {"foreground": [[5, 5]], "roi": [0, 0, HUGE, 5]}, "finite"),
    ("samus", {"foreground": [[5, 5]], "slice": HUGE}, "finite"),
    ("samus", {"foreground": [[5, 5]], "mask_input": [[0] * 128] * 127 + [[HUGE] + [0] * 127]}, "mask_input"),
    ("samus", {"foreground": [[HUGE, 5]]}, "finite"),
    ("samus_propagate", {"foreground": [[5, 5, 3]], "frames": [0, HUGE]}, "finite"),
    ("samus_propagate", {"foreground": [[5, 5, 3]], "frames": [0, 9], "min_area": HUGE}, "finite"),
    ("samus_propagate", {"foreground": [[5, 5, 3]], "frames": [0, 9], "min_score": -HUGE}, "finite"),
], ids=["roi", "slice", "mask_input", "click", "frames", "min_area", "min_score"])
def test_huge_integers_get_400(url, model, params, message):
    expect(infer(url, params, image=CINE if model == "samus_propagate" else "benign_3", model=model), 400, message)


def test_nul_bytes_bad_training_and_unknown_strategies_get_4xx(url):
    expect(infer(url, {"foreground": [[5, 5]]}, image="benign\x003"), 400, "control character")
    r = requests.post(f"{url}/train/samus", params={"run_sync": "true"}, json={"max_epochs": -1}, timeout=30)
    expect(r, 400, "max_epochs must be an integer")
    expect(requests.post(f"{url}/train/samus", json={"learning_rate": HUGE}, timeout=30), 400, "learning_rate")
    expect(requests.post(f"{url}/train/samus", json={"gpus": ["0"]}, timeout=30), 400, "gpus")  # -> env variable
    expect(requests.post(f"{url}/activelearning/nope", json={}, timeout=30), 404, "no active learning strategy 'nope'")


# ------------------------------------------------------------------------------------------ 4. limits
def test_every_limit_gets_413_naming_its_conf_key(world, url, tmp_path):
    expect(infer(url, {"foreground": [[5, 5]] * 9}), 413, "--conf max_clicks_per_frame")
    expect(infer(url, {"foreground": [[5, 5]] * 7, "background": [[6, 6]] * 6}), 413, "--conf max_clicks")
    t0 = time.time()
    expect(infer(url, {"foreground": [[5, 5]] * 30_000}), 413, "--conf max_clicks")  # once 30 GB of decoder memory
    assert time.time() - t0 < 10
    expect(infer(url, {"foreground": [[5, 5, 3]]}, image=CINE, model="samus_propagate"), 413,
           "--conf max_propagation_frames")
    expect(infer(url, {"foreground": [[5, 5, 3]], "frames": [0, 29]}, image=CINE, model="samus_propagate"), 413,
           "--conf max_propagation_frames")
    big = tmp_path / "big.png"
    huge_png(big, 8192, 8192)  # tiny on disk, 64 M pixels decoded
    expect(infer(url, {"foreground": [[5, 5]]}, image="", files={"file": ("big.png", big.read_bytes())}), 413,
           "--conf max_frame_pixels")
    r = requests.put(f"{url}/datastore/image", params={"image": "fat"},
                     files={"file": ("fat.png", b"\0" * (5 * 2**20))}, timeout=60)
    expect(r, 413, "--conf max_upload_mb")
    expect(infer(url, {"foreground": [[5, 5]], "pad": "x" * 300_000}), 413, "--conf max_params_kb")
    # Within the limits the same requests work.
    r = infer(url, {"foreground": [[5, 5, 3]], "frames": [0, 9]}, image=CINE, model="samus_propagate")
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------ 5. NaN
def test_nan_never_reaches_the_datastore(world, url):
    r = put_label(url, "benign_13", (SAMPLES / "masks" / "benign_13.png").read_bytes(), params='{"a": NaN}')
    expect(r, 400, "finite")
    r = raw(url, "POST", "/activelearning/random", b'{"client_id": NaN}', "application/json")
    expect(r, 400, "finite")
    r = requests.put(f"{url}/datastore/image/info", params={"image": "benign_13"}, data={"info": '{"x": Infinity}'},
                     timeout=30)
    expect(r, 400, "finite")
    assert requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).status_code == 200

    def strict(name):
        raise ValueError(name)

    json.loads((world["studies"] / "datastore_v2.json").read_text(), parse_constant=strict)


# ------------------------------------------------------------------------------------------ 6. failed saves
def test_a_refused_label_save_keeps_the_previous_label(world, url, client):
    good = (SAMPLES / "masks" / "malignant_2.png").read_bytes()
    assert put_label(url, "malignant_2", good).status_code == 200
    stored = world["studies"] / "labels" / "final" / "malignant_2.png"
    before = stored.read_bytes()
    wrong = png_bytes(np.ones((10, 10), np.uint8))
    for params, content, status in (("[1, 2]", good, 400), ('"text"', good, 400), ("{}", wrong, 400),
                                    ("{}", b"garbage", 400), ('{"deep": ' + "[" * 40 + "]" * 40 + "}", good, 400)):
        r = put_label(url, "malignant_2", content, params=params)
        assert r.status_code == status, (params, r.text)
        assert stored.read_bytes() == before
    assert Path(client.download_label("malignant_2", "final")).read_bytes() == before


# ------------------------------------------------------------------------------------------ 7. leftovers
def test_requests_leave_no_temporary_files(world, url, client):
    client.save_label("benign_3", str(SAMPLES / "masks" / "benign_3.png"), tag="final")
    before = temp_files(world)
    png = (SAMPLES / "images" / "benign_6.png").read_bytes()
    for _ in range(3):
        requests.put(f"{url}/datastore/image", params={"image": "bad"}, files={"file": ("x.png", b"garbage")},
                     timeout=60)
        put_label(url, "benign_3", b"garbage")
        infer(url, {"foreground": [[5, 5]] * 20}, image="", files={"file": ("b6.png", png)})  # refused after upload
        infer(url, {"foreground": [[5, 5]]}, image="", files={"file": ("b6.png", png)})  # answered
        r = requests.get(f"{url}/datastore/dataset", timeout=60)
        assert r.status_code == 200 and r.content[:2] == b"PK"
        expect(infer(url, {"foreground": [[5, 5]]}, output="dicom_seg"), 400, "dicom_seg")
    assert_no_new_temp_files(world, before)


# ------------------------------------------------------------------------------------------ 8. run_sync
def test_run_sync_training_is_refused(world, url, client):
    rss = psutil.Process(world["pid"]).memory_info().rss
    r = requests.post(f"{url}/train/samus", params={"run_sync": "true"}, json={"max_epochs": 1}, timeout=60)
    expect(r, 400, "run_sync is not supported")
    assert not client.train_status(check_if_running=True)
    assert psutil.Process(world["pid"]).memory_info().rss - rss < 50 * 2**20


# ------------------------------------------------------------------------------------------ 9. MONAI Label's own
def test_monai_label_endpoints_answer_4xx(world, url, tmp_path):
    png = (SAMPLES / "images" / "benign_6.png").read_bytes()
    expect(infer(url, "{not json"), 400, "not valid JSON")
    expect(infer(url, '{"a": ' + "[" * 5000 + "]" * 5000 + "}"), 400, "nested too deeply")
    r = requests.put(f"{url}/datastore/image", params={"image": "x"}, data={"params": "[[[["},
                     files={"file": ("x.png", png)}, timeout=60)
    expect(r, 400, "not valid JSON")
    for filename, message in ((b"a\x00b.png", "control character"), (b"a" * 300 + b".png", "bytes long"),
                              (b"..", "does not end in a file name")):
        body, content_type = multipart([("params", "{}")], [("file", filename, png)])
        expect(raw(url, "PUT", "/datastore/image", body, content_type, {"image": "named"}), 400, message)
        expect(raw(url, "POST", "/infer/samus", body, content_type, {"image": ""}), 400, message)
    expect(requests.get(f"{url}/logs/", params={"lines": str(10**30)}, timeout=30), 400, "lines")
    expect(requests.delete(f"{url}/datastore/image", params={"id": "no_such"}, timeout=30), 404, "not in the datastore")
    r = requests.delete(f"{url}/datastore/label", params={"id": "no_such", "tag": "final"}, timeout=30)
    expect(r, 404, "no label")
    r = requests.put(f"{url}/session/", params={"uncompress": "true"}, files={"files": ("a.zip", b"PK")}, timeout=30)
    expect(r, 400, "uncompress")
    expect(requests.delete(f"{url}/session/%2E%2E", timeout=30), 400, "not a session id")
    expect(infer(url, {"foreground": [[5, 5]]}, image="", session_id="../sessions"), 400, "not a session id")
    expect(requests.post(f"{url}/infer/nope", params={"image": "benign_3"}, data={"params": "{}"}, timeout=30), 404,
           "no infer task")
    expect(requests.post(f"{url}/infer/wsi_v2/samus", params={"image": "benign_3"}, timeout=30), 400, "whole-slide")
    expect(requests.post(f"{url}/batch/infer/samus", json={}, timeout=30), 400, "batch inference")
    expect(requests.post(f"{url}/scoring/dice", json={}, timeout=30), 404, "no scoring method")
    expect(requests.get(f"{url}/logs/", params={"refresh": "x" * 20}, timeout=30), 400, "refresh")
    r = requests.head(f"{url}/datastore/image", params={"image": "benign_3", "check_sum": "CRC:1"}, timeout=30)
    assert r.status_code == 400  # (no body for HEAD)


def test_model_files_are_protected(world, url):
    info = requests.get(f"{url}/model/info/samus", timeout=30).json()
    r = requests.put(f"{url}/model/samus", files={"file": ("model.pt", b"not a checkpoint")}, timeout=60)
    expect(r, 400, "cannot be served")
    expect(requests.delete(f"{url}/model/samus", timeout=30), 409, "base model")
    assert requests.get(f"{url}/model/info/samus", timeout=30).json()["checksum"] == info["checksum"]


def test_with_authentication_on_only_authenticated_requests_reach_the_checks(monkeypatch):
    """MONAI Label checks tokens in its endpoints, after the guard: the guard checks them first itself, so an
    anonymous client learns nothing from its answers (and cannot make the server load uploaded weights)."""
    import asyncio
    import sys

    from monailabel.config import settings

    sys.path.insert(0, str(APP_DIR))
    from lib.app_conf import parse_conf
    from lib.request_guard import RequestGuard

    monkeypatch.setattr(settings, "MONAI_LABEL_AUTH_ENABLE", True)
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    guard = RequestGuard(app, parse_conf({"device": "cpu"}).limits, hooks=None)

    def call(path, headers=()):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "PUT", "path": path, "query_string": b"", "headers": list(headers)}
        asyncio.run(guard(scope, receive, send))
        return sent[0]["status"] if sent else None

    assert call("/model/samus") == 401
    assert call("/model/samus", [(b"authorization", b"Bearer not-a-token")]) == 401
    assert call("/docs") is None and reached == ["/docs"]  # public pages pass on to MONAI Label


# ------------------------------------------------------------------------------------------ concurrency
def test_eight_clients_get_the_same_masks_as_one(url, tmp_path):
    """8 official clients x 25 clicks at once: every mask equals the one a single client gets for the same
    request (no mixing of images, frames or prompts between concurrent requests)."""
    jobs = []  # (client, request number, image, clicks)
    for c in range(8):
        name = ("benign_3", "malignant_2", "benign_13")[c % 3]
        _, mask = load_busi(name)
        x, y = click_xy(mask)
        rng = np.random.default_rng(c)
        clicks = [[int(np.clip(x + dx, 0, mask.shape[1] - 1)), int(np.clip(y + dy, 0, mask.shape[0] - 1))]
                  for dx, dy in rng.integers(-15, 16, size=(25, 2))]
        # A click session: each request sends the latest (at most 4) clicks, as a user refining a mask.
        jobs += [(c, len(jobs) + i, name, clicks[max(0, i - 3):i + 1]) for i in range(25)]
    single = MONAILabelClient(url, tmpdir=str(tmp_path / "single"))
    (tmp_path / "single").mkdir()
    expected = {n: np.asarray(Image.open(single.infer("samus", name, {"foreground": clicks})[0]))
                for _, n, name, clicks in jobs}
    got, errors = {}, []

    def run(c):
        folder = tmp_path / f"client{c}"
        folder.mkdir()
        mine = MONAILabelClient(url, tmpdir=str(folder))
        for cc, n, name, clicks in jobs:
            if cc == c:
                try:
                    got[n] = np.asarray(Image.open(mine.infer("samus", name, {"foreground": clicks})[0]))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(f"client {c} request {n}: {e}")

    threads = [threading.Thread(target=run, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert len(got) == 200
    assert all(np.array_equal(got[n], expected[n]) for n in expected)
