"""The MONAI Label app end to end: a real `monailabel start_server` driven by the official client and HTTP.

One server for the whole module, serving the bundled default model (no --conf checkpoint), on a studies
folder with BUSI test images and a 30-frame cine built from a BUSI image with known ground truth.
"""
import json
import shutil
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
import samus
import SimpleITK as sitk
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from PIL import Image

from app_server import running_server
from helpers_app import SAMPLES, click_xy, dice, huge_png, load_busi, load_volume, make_studies

IMAGES = ("benign_3", "malignant_2", "benign_13", "benign_6")
CINE = "benign_3_cine"
# The bundled model meets these on this data (see README: it scores higher); a broken click path,
# coordinate swap or geometry error drops far below them.
CLICK_DICE = 0.65
PROPAGATION_DICE = 0.65


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return make_studies(tmp_path_factory.mktemp("app") / "studies", images=IMAGES, cine="benign_3")


BUNDLED = samus.DEFAULT_CHECKPOINT.is_file()


@pytest.fixture(scope="module")
def server(studies, tmp_path_factory, tiny_checkpoint):
    # No checkpoint key: the server must serve the bundled default model by itself. Without it (a checkout
    # before the model was trained) a tiny model keeps the plumbing tests running; accuracy tests then fail.
    conf = {"model_dir": str(tmp_path_factory.mktemp("model")), "threads": "1"}
    if not BUNDLED:
        conf["checkpoint"] = str(tiny_checkpoint)
    # Two inference threads, so concurrent requests really run concurrently in the app.
    with running_server(studies, conf, env={"MONAI_LABEL_INFER_CONCURRENCY": "2"},
                        log_dir=tmp_path_factory.mktemp("log")) as url:
        yield url


@pytest.fixture
def bundled_model():
    assert BUNDLED, f"accuracy needs the bundled model {samus.DEFAULT_CHECKPOINT}, which is missing"


def post_infer(server, model, image, params, files=None):
    return requests.post(f"{server}/infer/{model}", params={"image": image, "output": "json"},
                         data={"params": json.dumps(params)}, files=files, timeout=120)


def truth_volume(studies) -> np.ndarray:
    return load_volume(studies.parent / (studies.name + "_truth") / f"{CINE}.nii.gz")


def test_info_lists_tasks_and_strategies(client):
    info = client.info()
    assert info["models"]["samus"]["type"] == "deepgrow"
    assert info["models"]["samus"]["dimension"] == 2
    assert info["models"]["samus_propagate"]["type"] == "deepgrow"
    assert set(info["strategies"]) == {"random", "first", "diversity"}
    assert "samus" in info["trainers"]
    assert "config" not in info  # the Slicer plugin reads a top-level config as "upgrade the server"
    assert info["datastore"]["total"] == len(IMAGES) + 1


def test_info_offers_both_bundled_models(client):
    info = client.info()
    # MONAI Label's way of offering a choice: a list in the task's config, the default first
    other = "fast" if samus.DEFAULT_MODEL == "accurate" else "accurate"
    assert info["models"]["samus"]["config"]["variant"] == [samus.DEFAULT_MODEL, other]
    assert info["models"]["samus_propagate"]["config"]["variant"] == ["fast", "accurate"]
    assert set(info["models"]["samus"]["variants"]) == {"accurate", "fast"}
    assert {"samus", f"samus_{other}"} <= set(info["trainers"])  # each served model can be fine-tuned


@pytest.mark.parametrize("variant", ["accurate", "fast"])
def test_each_model_follows_clicks_and_boxes_through_the_server(client, bundled_model, variant):
    from samus.prompts import tight_box

    click_scores, box_scores = [], []
    for name in IMAGES:
        _, mask = load_busi(name)
        x, y = click_xy(mask)
        result, params = client.infer("samus", name, {"foreground": [[x, y]], "variant": variant})
        assert params["variant"] == variant
        click_scores.append(dice(np.asarray(Image.open(result)), mask))
        x1, y1, x2, y2 = (int(v) for v in tight_box(mask))
        result, params = client.infer("samus", name, {"roi": [x1, y1, x2, y2], "variant": variant})
        box_scores.append(dice(np.asarray(Image.open(result)), mask))
        # box + a click: the answer for the box with the click added is refined from the box alone
        _, both = client.infer("samus", name, {"roi": [x1, y1, x2, y2], "foreground": [[x, y]], "variant": variant})
        assert both["refined"] is True
    # per model, what it measures on these images less a margin (clicks: fast 0.82, accurate 0.93; boxes:
    # fast 0.91 with its box decoder, accurate 0.93); broken plumbing or geometry falls far below
    assert np.mean(click_scores) >= {"fast": CLICK_DICE, "accurate": 0.85}[variant], click_scores
    assert np.mean(box_scores) >= {"fast": 0.85, "accurate": 0.88}[variant], box_scores


def test_the_models_keep_their_own_embeddings(client):
    _, mask = load_busi("benign_13")
    x, y = click_xy(mask)
    _, fast = client.infer("samus", "benign_13", {"foreground": [[x, y]], "variant": "fast"})
    _, accurate = client.infer("samus", "benign_13", {"foreground": [[x, y]], "variant": "accurate"})
    _, default = client.infer("samus", "benign_13", {"foreground": [[x, y]], "background": [[3, 3]]})
    assert fast["model_version"] != accurate["model_version"]
    own = accurate if samus.DEFAULT_MODEL == "accurate" else fast
    assert default["variant"] == samus.DEFAULT_MODEL and default["cache_hit"] is True  # the default's own entry
    assert default["model_version"] == own["model_version"]


def test_click_on_busi_images_matches_ground_truth(client, bundled_model):
    scores = []
    for name in IMAGES:
        _, mask = load_busi(name)
        x, y = click_xy(mask)
        result, params = client.infer("samus", name, {"foreground": [[x, y]], "background": []})
        assert result.endswith(".png")  # lossless mask for a 2D image
        pred = np.asarray(Image.open(result))
        assert pred.shape == mask.shape and set(np.unique(pred)) <= {0, 1}
        assert params["frame"] == 0 and np.isfinite(params["score"])
        scores.append(dice(pred, mask))
    assert np.mean(scores) >= CLICK_DICE, scores


def test_second_click_on_a_frame_reuses_the_embedding(client, tmp_path):
    shutil.copy(SAMPLES / "images" / "malignant_15.png", tmp_path / "cache_probe.png")
    client.upload_image(str(tmp_path / "cache_probe.png"), "cache_probe")
    _, mask = load_busi("malignant_15")
    x, y = click_xy(mask)
    _, first = client.infer("samus", "cache_probe", {"foreground": [[x, y]]})
    _, second = client.infer("samus", "cache_probe", {"foreground": [[x, y]], "background": [[2, 2]]})
    assert first["cache_hit"] is False
    assert second["cache_hit"] is True
    assert second["model_version"] == first["model_version"]


def test_an_added_click_refines_the_previous_mask_without_a_mask_from_the_client(client):
    # Clients (the Slicer plugin, our module) resend every click of the frame plus the new one and no mask:
    # the server feeds back the logits of the request with one click fewer itself.
    _, mask = load_busi("malignant_2")
    x, y = click_xy(mask)
    one = {"foreground": [[x, y]]}
    two = {"foreground": [[x, y]], "background": [[5, 5]]}
    first, a = client.infer("samus", "malignant_2", one)
    second, b = client.infer("samus", "malignant_2", two)
    again, b2 = client.infer("samus", "malignant_2", two)
    _, plain = client.infer("samus", "malignant_2", dict(two, refine=False))
    undo, a2 = client.infer("samus", "malignant_2", one)
    assert [a["refined"], b["refined"], b2["refined"], plain["refined"], a2["refined"]] == [
        False, True, True, False, False]
    # same request, same history -> same mask; undoing the click gives back the first mask
    assert np.array_equal(np.asarray(Image.open(second)), np.asarray(Image.open(again)))
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(undo)))
    # a click on another image never meets this image's logits
    _, other = client.infer("samus", "benign_3", two)
    assert other["refined"] is False


def test_corrective_clicks_through_the_server_improve_the_mask(client, bundled_model):
    """The click curve as a user meets it: each request adds the corrective click (samus.prompts.next_click:
    positive on the largest miss, negative on the largest false alarm) and sends no mask."""
    from samus.prompts import next_click

    curves = []
    for name in IMAGES:
        _, mask = load_busi(name)
        gt = mask > 0
        fg, bg = [list(click_xy(mask))], []
        curve = []
        for k in range(3):
            result, params = client.infer("samus", name, {"foreground": fg, "background": bg})
            assert params["refined"] is (k > 0)
            pred = np.asarray(Image.open(result)) > 0
            curve.append(dice(pred, gt))
            click = next_click(pred, gt, previous=fg + bg)
            if click is None:
                break
            (fg if click[2] == 1 else bg).append([int(click[0]), int(click[1])])
        curves.append(curve + [curve[-1]] * (3 - len(curve)))
    mean = np.mean(curves, axis=0)
    assert mean[2] > mean[0] and mean[1] >= mean[0] - 0.01, mean


def test_uploaded_file_is_segmented_and_cached_by_content(server, tmp_path):
    path = SAMPLES / "images" / "benign_4.png"
    answers = []
    for _ in range(2):
        with open(path, "rb") as f:
            r = post_infer(server, "samus", "", {"foreground": [[150, 60]]}, files={"file": ("b4.png", f)})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    assert [a["cache_hit"] for a in answers] == [False, True]


def test_session_image_is_segmented(client, studies):
    # The Slicer plugin's way for local images: upload once as a session, then click with its id.
    session = client.create_session(str(studies / f"{CINE}.nii.gz"))
    answers = [client.infer("samus", "", {"foreground": [[100, 100, 3]]}, session_id=session["session_id"])[1]
               for _ in range(2)]
    assert [a["frame"] for a in answers] == [3, 3]
    assert [a["cache_hit"] for a in answers] == [False, True]


def test_click_on_cine_frame_returns_full_volume_in_input_geometry(client, studies, bundled_model):
    truth = truth_volume(studies)
    k = 12
    x, y = click_xy(truth[:, :, k] > 0)
    # As the official Slicer plugin sends it: [i, j, k] voxel indices (i = column, j = row of frame k).
    result, params = client.infer("samus", CINE, {"foreground": [[x, y, k]], "background": [],
                                                  "slice": k, "result_extension": ".nrrd", "result_dtype": "uint8"})
    assert params["frame"] == k
    label = sitk.ReadImage(result)
    image = sitk.ReadImage(str(studies / f"{CINE}.nii.gz"))
    assert label.GetSize() == image.GetSize()
    assert np.allclose(label.GetSpacing(), image.GetSpacing())
    assert np.allclose(label.GetOrigin(), image.GetOrigin())
    assert np.allclose(label.GetDirection(), image.GetDirection())
    arr = load_volume(result)  # rows x columns x frames
    assert label.GetPixelID() == sitk.sitkUInt8
    assert arr[:, :, k].any() and not np.delete(arr, k, axis=2).any()
    assert dice(arr[:, :, k], truth[:, :, k]) >= CLICK_DICE

    # Default result type: the input's (.nii.gz), same affine.
    result, _ = client.infer("samus", CINE, {"foreground": [[x, y, k]]})
    nii = nib.load(result)
    assert result.endswith(".nii.gz") and load_volume(result).shape == truth.shape
    assert np.allclose(nii.affine, nib.load(studies / f"{CINE}.nii.gz").affine)


def test_propagation_through_cine_follows_the_lesion(client, studies, bundled_model):
    truth = truth_volume(studies)
    k = 15
    x, y = click_xy(truth[:, :, k] > 0)
    result, params = client.infer("samus_propagate", CINE, {"foreground": [[x, y, k]]})
    pred = load_volume(result)
    assert pred.shape == truth.shape
    per_frame = [dice(pred[:, :, t], truth[:, :, t]) for t in range(truth.shape[2])]
    assert params["seeds"] == [k]
    assert k in params["frames"] and len(params["scores"]) == len(params["frames"])
    assert np.mean(per_frame) >= PROPAGATION_DICE, np.round(per_frame, 3).tolist()


def test_propagation_respects_frame_range_and_direction(client, studies):
    truth = truth_volume(studies)
    k = 15
    x, y = click_xy(truth[:, :, k] > 0)
    request = {"foreground": [[x, y, k]], "frames": [10, 20], "direction": "forward"}
    result, params = client.infer("samus_propagate", CINE, request)
    pred = load_volume(result)
    segmented = [t for t in range(pred.shape[2]) if pred[:, :, t].any()]
    assert segmented == params["frames"]
    assert k in segmented and set(segmented) <= set(range(15, 21))
    # Running it again encodes nothing: every frame's embedding is in the cache.
    _, again = client.infer("samus_propagate", CINE, request)
    assert again["frames"] == params["frames"]
    assert again["cached_frames"] >= len(params["frames"])


def test_saved_labels_are_stored(client, tmp_path):
    client.save_label("benign_3", str(SAMPLES / "masks" / "benign_3.png"), tag="final")
    # A viewer like 3D Slicer saves a PNG's label as NIfTI in ITK (x, y) order: stored as the image's PNG.
    _, mask = load_busi("benign_13")
    itk = sitk.GetImageFromArray(mask.astype(np.uint8))  # ITK size = (W, H)
    sitk.WriteImage(itk, str(tmp_path / "benign_13.nii.gz"))
    client.save_label("benign_13", str(tmp_path / "benign_13.nii.gz"), tag="final")

    ds = client.datastore()
    for name in ("benign_3", "benign_13"):
        assert "final" in ds["objects"][name]["labels"]
        stored = client.download_label(name, "final")
        assert np.array_equal(np.asarray(Image.open(stored)) > 0, load_busi(name)[1])


def test_next_sample_returns_an_unlabeled_image(client):
    ds = client.datastore()
    unlabeled = {k for k, v in ds["objects"].items() if "final" not in v["labels"]}
    assert unlabeled
    for strategy in ("random", "first", "diversity"):
        sample = client.next_sample(strategy, {})
        assert sample["id"] in unlabeled, (strategy, sample)
        assert Path(sample["path"]).is_file()


def test_concurrent_clicks_get_their_own_results(client, server, tmp_path):
    jobs = {name: click_xy(load_busi(name)[1]) for name in IMAGES}
    expected = {n: np.asarray(Image.open(client.infer("samus", n, {"foreground": [[x, y]]})[0]))
                for n, (x, y) in jobs.items()}
    got, errors = {}, []

    def worker(name, x, y):
        try:
            c = MONAILabelClient(server, tmpdir=str(tmp_path / name))
            (tmp_path / name).mkdir()
            got[name] = np.asarray(Image.open(c.infer("samus", name, {"foreground": [[x, y]]})[0]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {e}")

    threads = [threading.Thread(target=worker, args=(n, x, y)) for n, (x, y) in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in IMAGES:
        assert np.array_equal(got[name], expected[name]), name


# ------------------------------------------------------------------------------------------ bad requests
BAD_INFER = [
    ("no clicks", "samus", "benign_3", {}, 400, "no clicks"),
    ("empty click lists", "samus", "benign_3", {"foreground": [], "background": []}, 400, "no clicks"),
    ("click outside", "samus", "benign_3", {"foreground": [[5000, 10]]}, 400, "outside the image"),
    ("negative click", "samus", "benign_3", {"foreground": [[-1, 10]]}, 400, "outside the image"),
    ("frame that does not exist", "samus", CINE, {"foreground": [[10, 10, 99]]}, 400, "does not exist"),
    ("slice that does not exist", "samus", CINE, {"foreground": [[10, 10]], "slice": 30}, 400, "does not exist"),
    ("NaN coordinate", "samus", "benign_3", {"foreground": [[float("nan"), 10]]}, 400, "finite"),
    ("infinite coordinate", "samus", "benign_3", {"foreground": [[float("inf"), 10]]}, 400, "finite"),
    ("text coordinate", "samus", "benign_3", {"foreground": [["ten", 10]]}, 400, "must be a number"),
    ("click not a list", "samus", "benign_3", {"foreground": "10,10"}, 400, "list of clicks"),
    ("click of 4 numbers", "samus", "benign_3", {"foreground": [[1, 2, 3, 4]]}, 400, "a click is"),
    ("volume click without frame", "samus", CINE, {"foreground": [[10, 10]]}, 400, "needs its frame"),
    ("clicks on several frames", "samus", CINE, {"foreground": [[10, 10, 1], [10, 10, 2]]}, 400, "several frames"),
    ("unknown image id", "samus", "no_such_image", {"foreground": [[1, 1]]}, 404, "not in the datastore"),
    ("path traversal id", "samus", "../../etc/passwd", {"foreground": [[1, 1]]}, 400, "file path"),
    ("absolute path id", "samus", "/etc/passwd", {"foreground": [[1, 1]]}, 400, "file path"),
    ("lossy result", "samus", "benign_3", {"foreground": [[50, 50]], "result_extension": ".jpg"}, 400, "result_extension"),
    ("bad result dtype", "samus", "benign_3", {"foreground": [[50, 50]], "result_dtype": "complex"}, 400, "result_dtype"),
    ("bad roi", "samus", "benign_3", {"roi": [1, 2, 3]}, 400, "roi"),
    ("refine not a boolean", "samus", "benign_3", {"foreground": [[50, 50]], "refine": "yes"}, 400, "refine"),
    ("unknown correction", "samus", "benign_3", {"foreground": [[50, 50]], "correction": "partial"}, 400,
     "correction must be one of"),
    ("unknown variant", "samus", "benign_3", {"foreground": [[50, 50]], "variant": "huge"}, 400, "variant must be one of"),
    ("variant not a string", "samus", "benign_3", {"foreground": [[50, 50]], "variant": ["fast"]}, 400, "variant"),
    ("propagation variant", "samus_propagate", CINE, {"foreground": [[10, 10, 3]], "variant": "x"}, 400, "variant"),
    ("bad direction", "samus_propagate", CINE, {"foreground": [[10, 10, 3]], "direction": "sideways"}, 400, "direction"),
    ("bad frame range", "samus_propagate", CINE, {"foreground": [[10, 10, 3]], "frames": [20, 5]}, 400, "frames"),
    ("job id", "samus_propagate", CINE, {"foreground": [[10, 10, 3]], "frames": [5, 20], "job": "../x"}, 400, "job"),
    ("propagation without clicks", "samus_propagate", CINE, {}, 400, "no clicks"),
]


@pytest.mark.parametrize("case", BAD_INFER, ids=[c[0] for c in BAD_INFER])
def test_bad_infer_requests_get_4xx_with_a_message(server, case):
    _, model, image, params, status, message = case
    r = post_infer(server, model, image, params)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_bad_uploads_get_4xx(server, tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png at all" * 10)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((SAMPLES / "images" / "benign_3.png").read_bytes()[:2000])
    huge = tmp_path / "huge.png"
    huge_png(huge)
    for path, status, message in ((garbage, 400, "cannot read"), (empty, 400, "empty"),
                                  (truncated, 400, "cannot"), (huge, 413, "too large")):
        with open(path, "rb") as f:
            r = post_infer(server, "samus", "", {"foreground": [[1, 1]]}, files={"file": (path.name, f)})
        assert r.status_code == status, (path.name, r.text)
        assert message in r.json()["detail"], (path.name, r.text)
        with open(path, "rb") as f:  # the datastore refuses the same files
            r = requests.put(f"{server}/datastore/image", params={"image": path.stem}, files={"file": (path.name, f)},
                             timeout=60)
        assert 400 <= r.status_code < 500 and r.json()["detail"], (path.name, r.text)
    with open(SAMPLES / "images" / "benign_3.png", "rb") as f:
        r = requests.put(f"{server}/datastore/image", params={"image": "../escape"}, files={"file": ("x.png", f)},
                         timeout=60)
    assert r.status_code == 400 and "not allowed" in r.json()["detail"]
    ids = set(requests.get(f"{server}/datastore/", params={"output": "all"}, timeout=60).json()["objects"])
    assert not ids & {"garbage", "empty", "truncated", "huge", "../escape"}


def test_bad_labels_get_4xx(client, server, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(small)
    with pytest.raises(MONAILabelClientException, match="must match its image"):
        client.save_label("malignant_2", str(small), tag="final")
    with open(small, "rb") as f:
        r = requests.put(f"{server}/datastore/label", params={"image": "no_such_image", "tag": "final"},
                         files={"label": ("small.png", f)}, timeout=60)
    assert r.status_code == 404 and "not in the datastore" in r.json()["detail"]
    assert "final" not in client.datastore()["objects"]["malignant_2"]["labels"]


def test_server_keeps_serving_after_bad_requests(client):
    _, params = client.infer("samus", "malignant_2", {"foreground": [[200, 200]]})
    assert params["frame"] == 0
