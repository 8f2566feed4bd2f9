"""The Slicer module's library against a real, running SAMUS MONAI Label server:
connect -> clicks -> masks on their frame only -> propagation -> undo -> submitted label -> training -> next sample.

One server (tiny random model) for the whole module; the input is a small cine built from a sample image.
"""
import json
import shutil
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

import helpers_slicer  # noqa: F401  (puts the library on sys.path)
from helpers_slicer import APP_TESTS_DIR, SAMPLES

sys.path.insert(0, str(APP_TESTS_DIR))  # app_server.py, which starts the app for the app tests too
from app_server import running_server  # noqa: E402
from SAMUSSegmentLib.chunks import ChunkedPropagation
from SAMUSSegmentLib.client import SamusClient, ServerError
from SAMUSSegmentLib.frames import ArrayMaskStore, non_empty_frames
from SAMUSSegmentLib.geometry import ijk_to_ras_matrix
from SAMUSSegmentLib.nrrd import read_nrrd
from SAMUSSegmentLib.session import InteractiveSession
from SAMUSSegmentLib.training import describe_training
from SAMUSSegmentLib.upload import FrameStack, ImageUploader
from SAMUSSegmentLib.worker import TaskRunner

N_FRAMES = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    studies = tmp_path_factory.mktemp("studies")
    for name in ("benign_3.png", "malignant_2.png"):  # unlabelled images for the active-learning strategies
        shutil.copy(SAMPLES / "images" / name, studies / name)
    with running_server(studies, conf={"checkpoint": str(tiny_checkpoint)}) as url:
        yield url


@pytest.fixture(scope="module")
def cine():
    """A 4-frame cine (a sample image drifting sideways), small and with an oblique, offset geometry."""
    image = Image.open(SAMPLES / "images" / "benign_3.png").convert("L").resize((72, 56))
    frame = np.asarray(image)
    array = np.stack([np.roll(frame, 2 * f, axis=1) for f in range(N_FRAMES)])  # [k, j, i]
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return FrameStack("Slicer cine #1", array, ijk_to_ras_matrix([10.0, -20.0, 5.0], [0.2, 0.25, 1.0], rotation),
                      change_key=("vtkMRMLScalarVolumeNode1", 1))


@pytest.fixture(scope="module")
def session(server, cine):
    client = SamusClient(server, timeout=30, infer_timeout=300)
    return InteractiveSession(client, ArrayMaskStore(cine.n_frames, cine.frame_shape), cine)


def run(session, job, runner=None):
    """Executes a job on a worker thread and applies it on this one, as the module does."""
    runner = runner or TaskRunner()
    applied = []
    try:
        runner.submit(lambda: session.execute(job), on_done=lambda r: applied.append((r, session.apply(r))))
        runner.wait(300)
    finally:
        runner.shutdown()
    return applied[0]


def test_connect_lists_the_samus_models(server):
    info = SamusClient(server).connect()
    assert {"samus", "samus_propagate"} <= set(info["models"])
    assert info["models"]["samus"]["type"] == "deepgrow"
    assert {"random", "first", "diversity"} <= set(info["strategies"])
    assert "samus" in info["trainers"]


def test_server_errors_reach_the_user_readably(server, session, cine):
    with pytest.raises(ServerError, match="Server error 4\\d\\d on POST /infer/samus"):
        session.client.infer("samus", "no_such_image", {"foreground": [[1, 1, 0]]})
    with pytest.raises(ServerError, match="Server error 404 on POST /infer/nope"):
        session.client.infer("nope", "no_such_image", {})


def test_a_click_segments_its_frame_only_and_uploads_once(session, cine):
    job = session.set_points("lesion", 2, [(36, 28)], [])
    result, written = run(session, job)
    assert written == [2]
    assert result.meta["frame"] == 2 and "score" in result.meta and result.meta["cache_hit"] is False
    volume = session.masks.segment_volume("lesion")
    assert non_empty_frames(volume) == [2]  # the mask lands on the clicked frame and nowhere else
    np.testing.assert_array_equal(volume[2] > 0, result.masks[2])
    assert session.uploader.uploads == 1

    # The server's own answer for the same request, fetched and decoded independently, is what we wrote.
    # (Asked as NRRD, which carries the geometry; the module itself asks for the smaller .nii.gz.)
    assert job.params["result_extension"] == ".nii.gz"
    image_id = session.uploader.ensure(cine)
    body = json.dumps(dict(job.params, result_extension=".nrrd")).encode()
    boundary = "x" * 16
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n").encode() + body + \
        f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{session.client.url}/infer/samus?image={image_id}&output=image", data=form,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=300) as answer:
        label, geometry, _ = read_nrrd(answer.read())
    assert label.shape == cine.array.shape
    np.testing.assert_allclose(geometry, cine.ijk_to_ras, atol=1e-6)  # the label comes back in our geometry
    np.testing.assert_array_equal(label[2] > 0, volume[2] > 0)

    # A second point on the same frame reuses the uploaded image and the cached embedding.
    job = session.set_points("lesion", 2, [(36, 28)], [(5, 5)])
    assert job.params["background"] == [[5, 5, 2]]
    result, written = run(session, job)
    assert written == [2] and result.meta["cache_hit"] is True
    assert session.uploader.uploads == 1
    assert session.prompts.get("lesion", 2).negative == ((5, 5),)


def test_undo_restores_the_previous_mask_and_points(session):
    before_undo = session.masks.segment_volume("lesion").copy()
    entry = session.undo()
    assert entry is not None and entry.frames == [2]
    assert session.prompts.get("lesion", 2).negative == ()
    # Redo the same request: the mask must come back exactly.
    result, _ = run(session, session.set_points("lesion", 2, [(36, 28)], [(5, 5)]))
    np.testing.assert_array_equal(session.masks.segment_volume("lesion"), before_undo)


def test_propagation_writes_the_next_frames_and_keeps_the_prompted_one(session):
    source = session.masks.read_frame("lesion", 2).copy()
    # No stop criterion: the random test model's masks and scores mean nothing.
    job = session.propagate("lesion", 2, count=1, min_area=0, min_score=-1e9)
    assert job.params["frames"] == [2, 3]
    result, written = run(session, job)
    assert result.meta["frames"] == [2, 3]
    assert written == [3]  # the prompted source frame keeps its own mask
    np.testing.assert_array_equal(session.masks.read_frame("lesion", 3), result.masks[3])
    np.testing.assert_array_equal(session.masks.read_frame("lesion", 2), source)
    assert not session.masks.read_frame("lesion", 0).any() and not session.masks.read_frame("lesion", 1).any()
    undone = session.undo()
    assert undone.description.startswith("propagation") and undone.frames == [3]
    assert not session.masks.read_frame("lesion", 3).any()


def test_submitted_label_is_stored_on_the_server(session, cine):
    # Make sure something is labelled even if the random model answered with empty masks.
    manual = np.zeros(cine.frame_shape, bool)
    manual[10:20, 30:50] = True
    session.masks.write_frame("lesion", 1, manual)
    expected = session.masks.segment_volume("lesion").copy()
    result, _ = run(session, session.submit_labels([("lesion", "lesion")]))
    image_id = session.uploader.ensure(cine)
    assert result.meta["image"] == image_id
    url = f"{session.client.url}/datastore/label?label={image_id}&tag=final"
    with urllib.request.urlopen(url, timeout=60) as answer:
        stored, geometry, _ = read_nrrd(answer.read())
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_allclose(geometry, cine.ijk_to_ras, atol=1e-6)
    with urllib.request.urlopen(f"{session.client.url}/datastore/?output=all", timeout=60) as answer:
        datastore = json.loads(answer.read())
    info = datastore["objects"][image_id]["labels"]["final"]["info"]
    assert info["label_info"] == [{"name": "lesion", "idx": 1}]
    assert 1 in info["labelled_frames"] and 2 in info["labelled_frames"]


def test_training_runs_on_the_submitted_label_and_reports_progress(session):
    """Start training as the module does, watch it like the progress bar does, then click with the new model."""
    client = session.client
    version_before = run(session, session.set_points("lesion", 3, [(20, 20)], []))[0].meta["model_version"]
    assert version_before
    task = client.train_start("samus", {"max_epochs": 1, "max_steps_per_epoch": 1, "val_split": 0,
                                        "train_batch_size": 2, "multi_gpu": False})
    assert task.get("id") and task.get("status") in ("SUBMITTED", "RUNNING")
    seen = []
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            seen.append(describe_training(client.train_status()))
            if seen[-1][0] not in ("SUBMITTED", "RUNNING"):
                break
            time.sleep(1)
    finally:
        if seen and seen[-1][0] in ("SUBMITTED", "RUNNING"):
            client.train_stop()
    status, fraction, text = seen[-1]
    assert status == "DONE", text
    assert fraction == 1.0 and text.startswith("Training finished")

    # The next click is answered by the newly published model.
    job = session.set_points("lesion", 0, [(30, 30)], [])
    result, _ = run(session, job)
    assert result.meta["model_version"] != version_before


def test_next_sample_comes_from_the_strategy_and_downloads(session):
    sample = session.client.next_sample("first")
    assert sample["id"] in ("benign_3", "malignant_2")
    data, filename = session.client.download_image(sample["id"])
    assert data.startswith(b"\x89PNG") and filename.endswith(".png")


def test_uploader_skips_images_the_server_already_has(server, cine):
    first = ImageUploader(SamusClient(server))
    image_id = first.ensure(cine)
    again = ImageUploader(SamusClient(server))  # e.g. after restarting Slicer: same content, same id
    copy = FrameStack(cine.name, cine.array.copy(), cine.ijk_to_ras, change_key=("another node", 7))
    assert again.ensure(copy) == image_id
    assert again.uploads == 0


def test_a_box_segments_and_chunked_propagation_equals_one_request(server, cine):
    """A box (with a click) on one frame of a 12-frame cine, then the whole loop: once as one request, once in
    chunks as the module sends it; the server must give the same masks. (Last in this file: the cine it
    uploads is an unlabelled image for the active-learning strategies tested above.)"""
    long_cine = FrameStack("Slicer cine #2", np.concatenate([cine.array, cine.array[:, :, ::-1], cine.array]),
                           cine.ijk_to_ras, change_key=("vtkMRMLScalarVolumeNode2", 1))
    client = SamusClient(server, timeout=30, infer_timeout=300)

    def prompted():
        session = InteractiveSession(client, ArrayMaskStore(long_cine.n_frames, long_cine.frame_shape), long_cine)
        job = session.set_points("lesion", 5, [(36, 28)], [], box=(20, 15, 55, 45))
        assert job.params["roi"] == [20, 15, 55, 45]
        run(session, job)
        return session

    one = prompted()
    job = one.propagate("lesion", 5, None, "both", min_area=0, min_score=-1e9)
    result, _ = run(one, job)
    assert result.meta["frames"] == list(range(12))

    chunked = prompted()
    propagation = ChunkedPropagation(chunked, "lesion", 5, None, "both", chunk_frames=2, min_area=0, min_score=-1e9)
    job, windows = propagation.start(), []
    while job is not None:
        windows.append(job.params["frames"])
        result = chunked.execute(job)
        _, job = propagation.on_result(result)
    assert windows[0] == [4, 6] and windows[-1] == [0, 11] and len(windows) >= 4
    np.testing.assert_array_equal(chunked.masks.segment_volume("lesion"), one.masks.segment_volume("lesion"))
