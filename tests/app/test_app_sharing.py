"""Many users on one server (issue 16): clicks never wait behind someone else's whole propagation.

A real server (bundled model), driven with MONAI Label's official client from several threads: one user
propagates through a generated cine while others click on 2D images. Nothing here is timed: the server
reports, for each request, the batches of others' long work it waited for and the monotonic times of its
slot holdings, from which the test counts independently how many propagation batches ran between a click's
arrival at the scheduler and its turn. The masks must be those of the same requests sent alone.
"""
import io
import json
import sys
import threading
import time

import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient
from PIL import Image
from scipy import ndimage

from app_server import APP_DIR, running_server
sys.path.insert(0, str(APP_DIR))
from lib.storage_limits import usage  # noqa: E402

from helpers_app import build_cine, load_busi, load_volume, make_studies, save_nifti

IMAGES = ("benign_3", "malignant_2", "benign_13", "benign_6")
CINE = "benign_3_cine"
FRAMES = 48
SEED_FRAME = 20
CONF = {"cache_size": "16",  # small: a repeated propagation encodes its frames again, so it stays long
        "batch_frames": "2", "encode_ahead": "2", "refine": "false"}


SECOND_CINE = "malignant_2_cine"  # only the encode-ahead test uses it


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = make_studies(tmp_path_factory.mktemp("sharing") / "studies", images=IMAGES, cine="benign_3",
                          frames=FRAMES)
    vol, truth = build_cine(*load_busi("malignant_2"), 12, seed=1)
    save_nifti(vol, folder / f"{SECOND_CINE}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def sessions_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sessions")


@pytest.fixture(scope="module")
def server(studies, sessions_dir):
    # Room for a few more datastore files and about 3 MiB more; sessions in a folder of their own.
    files, size = usage(str(studies))
    conf = dict(CONF, max_datastore_files=str(files + 8), max_datastore_mb=str(size // 2**20 + 3),
                max_sessions="3", max_sessions_mb="1")
    with running_server(studies, conf=conf, env={"MONAI_LABEL_SESSION_PATH": str(sessions_dir)}) as url:
        yield url


def deepest(mask: np.ndarray):
    dist = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return [int(x), int(y)]


def cine_click(studies):
    truth = load_volume(studies.parent / (studies.name + "_truth") / f"{CINE}.nii.gz")
    return deepest(truth[:, :, SEED_FRAME] > 0) + [SEED_FRAME]


def click_requests():
    return [(name, {"foreground": [deepest(load_busi(name)[1])]}) for name in IMAGES]


def propagate(client, params):
    result, reply = client.infer("samus_propagate", CINE, params)
    return load_volume(result), reply


def click(client, name, params):
    result, reply = client.infer("samus", name, params)
    return np.asarray(Image.open(result)) > 0, reply


def test_clicks_go_between_the_batches_of_another_users_propagation(server, studies, tmp_path):
    seed = cine_click(studies)
    lone_client = MONAILabelClient(server, tmpdir=str(tmp_path / "lone"))
    (tmp_path / "lone").mkdir()
    alone, _ = propagate(lone_client, {"foreground": [seed]})
    clicks_alone = {name: click(lone_client, name, p)[0] for name, p in click_requests()}

    done = threading.Event()
    out, clicks, errors = {}, [], []

    def propagating_user():
        try:
            (tmp_path / "p").mkdir()
            out["masks"], out["reply"] = propagate(MONAILabelClient(server, tmpdir=str(tmp_path / "p")),
                                                   {"foreground": [seed]})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"propagation: {e!r}")
        finally:
            done.set()

    def clicking_user(n):
        folder = tmp_path / f"c{n}"
        folder.mkdir()
        client = MONAILabelClient(server, tmpdir=str(folder))
        requests_ = click_requests()
        i = n
        try:
            while not done.is_set() or i < n + 2:  # keep clicking until the propagation is over
                name, params = requests_[i % len(requests_)]  # a new image each click
                mask, reply = click(client, name, params)
                clicks.append((name, mask, reply))
                i += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"clicks: {e!r}")

    prop = threading.Thread(target=propagating_user)
    prop.start()
    users = [threading.Thread(target=clicking_user, args=(n,)) for n in range(2)]
    for u in users:
        u.start()
    prop.join(timeout=600)
    for u in users:
        u.join(timeout=600)
    assert not errors, errors

    # The propagation completed, with exactly the masks of a lone run.
    reply = out["reply"]
    assert len(reply["frames"]) > FRAMES // 2, reply["frames"]
    assert np.array_equal(out["masks"], alone)
    batches = reply["scheduler"]["holdings"]
    assert len(batches) > 20  # it did yield: many turns, not one

    # Every click got the mask it gets alone, and no click waited for more than one propagation batch.
    during = 0
    for name, mask, click_reply in clicks:
        assert np.array_equal(mask, clicks_alone[name]), name
        sched = click_reply["scheduler"]
        assert sched["waited_batches"] <= 1, sched
        arrived, (turn, _) = sched["queued_at"][0], sched["holdings"][0]
        waited_for = [b for b in batches if b[0] >= arrived and b[1] <= turn]
        assert len(waited_for) <= 1, (sched, waited_for)
        if batches[0][0] < arrived < batches[-1][0]:
            during += 1
            assert "samus_propagate" in sched["busy_on_arrival"]
    assert during >= 3, f"only {during} clicks arrived while the propagation ran"


def test_chunked_propagation_equals_one_shot(server, studies, tmp_path):
    seed = cine_click(studies)
    client = MONAILabelClient(server, tmpdir=str(tmp_path))
    params = {"foreground": [seed], "min_area": 0}
    whole, reply = propagate(client, params)
    # Chunks of 7 frames from the clicked frame outward, forward then backward, as a viewer asks for them.
    chunks = [(a, min(a + 6, FRAMES - 1)) for a in range(SEED_FRAME, FRAMES, 7)]
    chunks += [(max(b - 6, 0), b) for b in range(SEED_FRAME - 1, -1, -7)]
    pieced = np.zeros_like(whole)
    returned = []
    for lo, hi in chunks:
        masks, chunk_reply = propagate(client, dict(params, frames=[lo, hi]))
        assert all(lo <= k <= hi for k in chunk_reply["frames"])
        assert not np.delete(masks, range(lo, hi + 1), axis=2).any()  # nothing outside the chunk
        pieced[:, :, lo:hi + 1] = masks[:, :, lo:hi + 1]
        returned += chunk_reply["frames"]
    assert sorted(returned) == reply["frames"]
    assert np.array_equal(pieced, whole)
    # A chunk asked again from scratch (a new server-side walk from the seed) is the same too.
    masks, _ = propagate(client, dict(params, frames=[SEED_FRAME + 14, SEED_FRAME + 20]))
    assert np.array_equal(masks[:, :, SEED_FRAME + 14:SEED_FRAME + 21], whole[:, :, SEED_FRAME + 14:SEED_FRAME + 21])


def test_a_named_propagation_reports_progress_and_can_be_cancelled(server, studies):
    seed = cine_click(studies)
    answer = {}

    def run():
        answer["r"] = requests.post(f"{server}/infer/samus_propagate", params={"image": CINE, "output": "json"},
                                    data={"params": '{"foreground": [%s], "job": "stop-me", "min_area": 0}'
                                          % seed}, timeout=600)

    t = threading.Thread(target=run)
    t.start()
    progress = None
    for _ in range(2000):  # poll until it has done some frames (no time limit is asserted)
        r = requests.get(f"{server}/samus/jobs/stop-me", timeout=60)
        if r.status_code == 200 and r.json()["frames_done"] >= 2:
            progress = r.json()
            break
        time.sleep(0.01)
    assert progress is not None and progress["state"] == "running"
    assert progress["frames_total"] == FRAMES and progress["frames_done"] < FRAMES
    cancelled = requests.delete(f"{server}/samus/jobs/stop-me", timeout=60)
    t.join(timeout=600)
    assert cancelled.status_code == 200
    assert answer["r"].status_code == 409 and "cancelled" in answer["r"].text
    after = requests.get(f"{server}/samus/jobs/stop-me", timeout=60).json()
    assert after["state"] == "cancelled" and after["frames_done"] < FRAMES
    assert requests.get(f"{server}/samus/jobs/nope", timeout=60).status_code == 404
    assert requests.get(f"{server}/samus/jobs/a%20b", timeout=60).status_code == 400


def test_a_propagation_stops_when_its_client_goes_away(server, studies):
    seed = cine_click(studies)
    params = '{"foreground": [%s], "job": "gone", "min_area": 0}' % seed
    with pytest.raises(requests.exceptions.ReadTimeout):  # the client gives up after 1 s and hangs up
        requests.post(f"{server}/infer/samus_propagate", params={"image": CINE, "output": "json"},
                      data={"params": params}, timeout=(30, 1.0))
    for _ in range(2000):  # poll until the server has noticed (nothing timed)
        job = requests.get(f"{server}/samus/jobs/gone", timeout=60).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.01)
    assert job["state"] == "cancelled" and job["frames_done"] < FRAMES, job


def test_idle_time_encodes_the_neighbouring_frames(server, tmp_path):
    _, mask = load_busi("malignant_2")
    x, y = deepest(mask)  # the cine moves the lesion a little; any click on the frame will do here
    k = 6
    client = MONAILabelClient(server, tmpdir=str(tmp_path))

    def first_click_after_a_pause(frame):
        for _ in range(100):  # the user looks at the frame for a while (nothing is timed)
            time.sleep(0.05)
        return client.infer("samus", SECOND_CINE, {"foreground": [[x, y, frame]], **FAST})[1]["cache_hit"]

    # the fast model: what is tested is the scheduling, and the accurate encoder in fp32 (a CPU without
    # native bf16) could take longer than the pause for the four neighbours
    FAST = {"variant": "fast"}
    _, first = client.infer("samus", SECOND_CINE, {"foreground": [[x, y, k]], **FAST})
    assert not first["cache_hit"]
    hits = {}
    for step in (3, -2, -1, 1, 2):  # the window is 2 frames on each side; +3 is outside it
        hits[step] = first_click_after_a_pause(k + step)
        client.infer("samus", SECOND_CINE, {"foreground": [[x, y, k]], **FAST})  # back to frame k
    assert hits == {3: False, -2: True, -1: True, 1: True, 2: True}, hits


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_datastore_uploads_are_bounded_in_bytes_and_number(server):
    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000), dtype=np.uint8)  # ~4 MiB, incompressible
    r = requests.put(f"{server}/datastore/image", params={"image": "big_noise"},
                     files={"file": ("big_noise.png", png(noise))}, timeout=120)
    assert r.status_code == 413 and "--conf max_datastore_mb" in r.text, r.text
    answers = []
    for n in range(12):
        r = requests.put(f"{server}/datastore/image", params={"image": f"small_{n}"},
                         files={"file": (f"small_{n}.png", png(np.full((16, 16), n, np.uint8)))}, timeout=120)
        answers.append(r.status_code)
        if r.status_code == 429:
            assert "--conf max_datastore_files" in r.text, r.text
            break
    assert answers[0] == 200 and answers[-1] == 429, answers
    # Replacing a stored image by the same file adds nothing: still accepted.
    r = requests.put(f"{server}/datastore/image", params={"image": "small_0"},
                     files={"file": ("small_0.png", png(np.full((16, 16), 0, np.uint8)))}, timeout=120)
    assert r.status_code == 200, r.text


def test_sessions_are_bounded_in_number_and_bytes_and_stale_ones_removed(server, sessions_dir):
    def create(pixels):
        return requests.put(f"{server}/session/", files={"files": ("s.png", png(pixels))}, timeout=120)

    created = []
    for n in range(3):
        r = create(np.full((16, 16), n, np.uint8))
        assert r.status_code == 200, r.text
        created.append(r.json()["session_id"])
    r = create(np.zeros((16, 16), np.uint8))
    assert r.status_code == 429 and "--conf max_sessions" in r.text, r.text
    assert requests.delete(f"{server}/session/{created[0]}", timeout=60).status_code == 200
    assert create(np.zeros((16, 16), np.uint8)).status_code == 200  # room again
    assert requests.delete(f"{server}/session/{created[1]}", timeout=60).status_code == 200
    noise = np.random.default_rng(1).integers(0, 256, (1200, 1200), dtype=np.uint8)  # ~1.4 MiB
    r = create(noise)
    assert r.status_code == 413 and "--conf max_sessions_mb" in r.text, r.text
    # Full again; then one session goes stale (its last use long ago): it is removed to make room.
    assert create(np.ones((16, 16), np.uint8)).status_code == 200
    assert create(np.ones((16, 16), np.uint8)).status_code == 429
    meta = sessions_dir / created[2] / "meta.info"
    info = json.loads(meta.read_text())
    meta.write_text(json.dumps(dict(info, last_access_ts=info["last_access_ts"] - 10 * 86400)))
    assert create(np.ones((16, 16), np.uint8)).status_code == 200
    assert not (sessions_dir / created[2]).exists()
