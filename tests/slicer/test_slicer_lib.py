"""Unit tests of the Slicer module's Slicer-free library (geometry, NRRD, multipart, prompts, undo, threads)."""
import gzip
import http.server
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import helpers_slicer  # noqa: F401  (puts the library on sys.path)
from SAMUSSegmentLib import geometry, nrrd
from SAMUSSegmentLib.client import SamusClient, ServerError, ServerUnreachable, normalize_url
from SAMUSSegmentLib.frames import ArrayMaskStore, frame_from_result, merge_segments, non_empty_frames, write_frame
from SAMUSSegmentLib.multipart import decode_multipart, encode_multipart
from SAMUSSegmentLib.prompts import PromptStore
from SAMUSSegmentLib.session import InteractiveSession, JobResult, frame_range
from SAMUSSegmentLib.training import describe_training
from SAMUSSegmentLib.undo import PackedMask
from SAMUSSegmentLib.upload import FrameStack, content_id
from SAMUSSegmentLib.worker import TaskRunner


def oblique_ijk_to_ras():
    """A rotated, anisotropic, offset volume geometry (what real ultrasound volumes look like)."""
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    return geometry.ijk_to_ras_matrix([12.5, -40.0, 7.0], [0.3, 0.25, 1.5], rotation)


def test_ras_to_ijk_with_parent_transform_round_trips():
    ijk_to_ras = oblique_ijk_to_ras()
    local_to_world = np.eye(4)
    local_to_world[:3, 3] = [5.0, -2.0, 30.0]
    local_to_world[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    ijk = np.array([17.0, 4.0, 9.0])
    world = geometry.ijk_to_world(ijk, ijk_to_ras, local_to_world)
    back = geometry.world_to_ijk(world, geometry.invert(ijk_to_ras), geometry.invert(local_to_world))
    np.testing.assert_allclose(back, ijk, atol=1e-9)
    # Ignoring the parent transform (what some plugins do) lands elsewhere.
    wrong = geometry.world_to_ijk(world, geometry.invert(ijk_to_ras))
    assert np.abs(wrong - ijk).max() > 1


def test_voxel_index_rounds_to_containing_voxel_and_rejects_outside_points():
    assert geometry.voxel_index([3.49, 0.5, 1.51], (10, 10, 4)) == (3, 1, 2)
    assert geometry.voxel_index([-0.49, 9.4, 0], (10, 10, 4)) == (0, 9, 0)
    with pytest.raises(geometry.GeometryError, match="outside the volume"):
        geometry.voxel_index([5, 10.6, 1], (10, 10, 4))


def test_frame_plane_and_frame_at_world_follow_the_k_axis():
    ijk_to_ras = oblique_ijk_to_ras()
    slice_to_ras = geometry.frame_slice_to_ras(ijk_to_ras, (20, 10, 6), 4)
    normal, transverse, centre = slice_to_ras[:3, 2], slice_to_ras[:3, 0], slice_to_ras[:3, 3]
    k_axis = ijk_to_ras[:3, 2] / np.linalg.norm(ijk_to_ras[:3, 2])
    np.testing.assert_allclose(np.dot(normal, k_axis), 1.0)  # the plane is the IJ plane, normal towards +K
    assert abs(np.dot(normal, transverse)) < 1e-9
    np.testing.assert_allclose(geometry.world_to_ijk(centre, geometry.invert(ijk_to_ras)), [9.5, 4.5, 4])
    assert geometry.frame_at_world(centre, geometry.invert(ijk_to_ras), 6) == 4
    assert geometry.frame_at_world(centre + 100 * k_axis, geometry.invert(ijk_to_ras), 6) == 5
    assert geometry.frame_at_world(centre - 100 * k_axis, geometry.invert(ijk_to_ras), 6) == 0


def test_singular_matrix_is_reported():
    with pytest.raises(geometry.GeometryError, match="singular"):
        geometry.invert(np.zeros((4, 4)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("compress", [True, False])
def test_nrrd_matches_simpleitk_both_ways(tmp_path, dtype, compress):
    import SimpleITK as sitk
    rng = np.random.default_rng(0)
    array = (rng.random((3, 5, 7)) * 100).astype(dtype)  # [k, j, i]
    ijk_to_ras = oblique_ijk_to_ras()

    path = tmp_path / "ours.nrrd"
    path.write_bytes(nrrd.write_nrrd(array, ijk_to_ras, compress=compress))
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
    lps = geometry.ras_to_lps(ijk_to_ras)
    np.testing.assert_allclose(image.GetOrigin(), lps[:3, 3], atol=1e-9)
    np.testing.assert_allclose(image.GetSpacing(), [0.3, 0.25, 1.5], atol=1e-9)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), lps[:3, :3] / [0.3, 0.25, 1.5],
                               atol=1e-9)

    theirs = tmp_path / "theirs.nrrd"
    sitk.WriteImage(image, str(theirs), useCompression=compress)
    back, back_geometry, header = nrrd.read_nrrd(theirs.read_bytes())
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_geometry, ijk_to_ras, atol=1e-9)


def test_nrrd_reads_pynrrd_2d_and_rejects_garbage(tmp_path):
    import nrrd as pynrrd
    mask = np.zeros((6, 9), dtype=np.uint8)
    mask[2:4, 3:7] = 1
    path = tmp_path / "mask.nrrd"
    pynrrd.write(str(path), mask.T.copy(), index_order="F")  # pynrrd's default: [i, j] axes
    back, geo, _ = nrrd.read_nrrd(path.read_bytes())
    np.testing.assert_array_equal(back, mask)
    assert geo is None
    with pytest.raises(nrrd.NrrdError, match="not an NRRD"):
        nrrd.read_nrrd(b"P6 not an nrrd")
    good = nrrd.write_nrrd(np.ones((2, 3, 4), np.uint8), compress=False)
    with pytest.raises(nrrd.NrrdError, match="truncated"):
        nrrd.read_nrrd(good[:-5])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_labels_written_by_simpleitk_read_back(tmp_path, dtype, suffix):
    import SimpleITK as sitk
    from SAMUSSegmentLib.nifti import read_label, read_nifti

    label = np.zeros((40, 30, 20), dtype)  # [k, j, i]: a long cine with one labelled frame
    label[7, 10:20, 5:12] = 1
    image = sitk.GetImageFromArray(label)
    image.SetSpacing((0.3, 0.25, 1.5))
    path = tmp_path / f"label{suffix}"
    sitk.WriteImage(image, str(path), useCompression=suffix.endswith(".gz"))  # what the app does
    data = path.read_bytes()
    np.testing.assert_array_equal(read_label(data), label)
    if suffix == ".nii.gz":
        assert len(data) < label.nbytes / 20  # why the module asks for .nii.gz
    flat = tmp_path / "frame.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(label[7]), str(flat))  # a 2D result
    np.testing.assert_array_equal(read_nifti(flat.read_bytes()), label[7])
    nrrd_bytes = nrrd.write_nrrd(label)
    np.testing.assert_array_equal(read_label(nrrd_bytes), label)


def test_nifti_reader_rejects_what_it_cannot_read():
    from SAMUSSegmentLib.nifti import NiftiError, read_label

    with pytest.raises(NiftiError, match="too short"):
        read_label(b"not a label")
    with pytest.raises(NiftiError, match="header size"):
        read_label(b"x" * 400)
    with pytest.raises(NiftiError, match="gzip stream is damaged"):
        read_label(gzip.compress(b"x" * 400)[:-12])


def test_multipart_round_trip_and_monailabel_answers():
    body, ctype = encode_multipart({"params": '{"a": 1}'}, {"file": ("x.nrrd", b"\x00\r\n--binary\xff")})
    parts = decode_multipart(body, ctype)
    assert parts["params"].data == b'{"a": 1}'
    assert parts["file"].data == b"\x00\r\n--binary\xff" and parts["file"].filename == "x.nrrd"
    # The server builds its answers with requests_toolbelt; parse one of those too.
    import requests_toolbelt as toolbelt
    encoder = toolbelt.MultipartEncoder(fields={"params": (None, '{"frame": 3}', "application/json"),
                                                "image": ("r.nrrd", gzip.compress(b"abc"), "application/octet-stream")})
    parts = decode_multipart(encoder.to_string(), encoder.content_type)
    assert parts["params"].data == b'{"frame": 3}'
    assert gzip.decompress(parts["image"].data) == b"abc"
    with pytest.raises(ValueError, match="not a multipart"):
        decode_multipart(b"{}", "application/json")


def test_server_address_errors_are_readable():
    assert normalize_url(" 127.0.0.1:8000/ ") == "http://127.0.0.1:8000"
    with pytest.raises(ServerError, match="Enter the server address"):
        normalize_url("")
    with pytest.raises(ServerError, match="not a server address"):
        normalize_url("ftp://host")
    with pytest.raises(ServerError, match="invalid port"):
        normalize_url("http://host:99999999")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_reports_server_down():
    client = SamusClient(f"http://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(ServerUnreachable, match="connection refused. Is the MONAI Label server running"):
        client.connect()


def test_client_times_out_on_a_silent_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the TCP connection but never answers
    try:
        client = SamusClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(ServerUnreachable, match=r"No answer from .* within 0.5 s \(GET /info/\)"):
            client.connect()
    finally:
        listener.close()


def test_client_recognises_a_server_that_is_not_monai_label(tmp_path):
    (tmp_path / "index.html").write_text("<html>hello</html>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client = SamusClient(f"http://127.0.0.1:{httpd.server_address[1]}", timeout=5)
        with pytest.raises(ServerError, match="not MONAI Label") as error:
            client.connect()
        # Something answers: a wrong address, not a missing server (the self-test must fail, not skip).
        assert not isinstance(error.value, ServerUnreachable)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_prompt_store_keeps_points_per_frame_and_segment():
    store = PromptStore()
    assert not store.set("tumour", 3, [(10.0, 20.0)], [(1, 2)])
    store.set("tumour", 5, [(4, 4)], [])
    store.set("cyst", 3, [], [(7, 7)])
    assert store.get("tumour", 3).positive == ((10, 20),) and store.get("tumour", 3).negative == ((1, 2),)
    assert store.frames("tumour") == [3, 5] and store.segments() == ["cyst", "tumour"]
    assert store.get("tumour", 3).server_points(3) == ([[10, 20, 3]], [[1, 2, 3]])
    restored = PromptStore.from_json(store.to_json())
    assert restored.to_json() == store.to_json()
    store.set("tumour", 5, [], [])
    assert store.frames("tumour") == [3]


def test_write_frame_touches_only_that_frame_and_that_label():
    volume = np.zeros((4, 5, 6), dtype=np.uint8)
    volume[1] = 2  # another segment's label on the same frame
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    assert write_frame(volume, 1, mask, value=1)
    assert not write_frame(volume, 1, mask, value=1)  # no change the second time
    assert (volume[1][mask] == 1).all() and (volume[1][~mask] == 2).all()
    assert non_empty_frames(volume) == [1]
    with pytest.raises(IndexError, match="frame 4 is outside"):
        write_frame(volume, 4, mask)
    with pytest.raises(ValueError, match="does not match the frame shape"):
        write_frame(volume, 0, np.ones((6, 5)))
    assert merge_segments([volume == 1, volume == 2]).max() == 2
    np.testing.assert_array_equal(frame_from_result(volume, 1, (5, 6)), volume[1] > 0)
    with pytest.raises(ValueError, match="expected frames of shape"):
        frame_from_result(volume, 1, (6, 5))


def test_image_scalars_become_kji_arrays_with_their_components():
    from SAMUSSegmentLib.frames import array_from_scalars, to_grayscale

    flat = np.arange(2 * 3 * 4 * 3)  # VTK order: component, then I, then J, then K
    rgb = array_from_scalars(flat, (4, 3, 2), 3)
    assert rgb.shape == (2, 3, 4, 3) and rgb[1, 2, 3, 0] == ((1 * 3 + 2) * 4 + 3) * 3
    assert array_from_scalars(np.arange(24), (4, 3, 2)).shape == (2, 3, 4)
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(to_grayscale(rgb.astype(np.float64), True), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="has 24 values, expected 72"):
        array_from_scalars(np.arange(24), (4, 3, 2), 3)


def test_rgba_frames_become_uint8_luminance_without_alpha():
    from SAMUSSegmentLib.frames import to_grayscale

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((2, 5, 7, 1), 255, np.uint8)], axis=-1)  # Slicer's RGBA PNG
    grey = to_grayscale(rgba, True)
    assert grey.dtype == np.uint8 and grey.shape == (2, 5, 7)  # no float32 copy: 4x less to upload
    np.testing.assert_array_equal(grey, to_grayscale(rgb, True))  # alpha does not enter
    luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(grey.astype(int) - luma).max() <= 1  # float32 rounding only
    # A black-to-white ramp keeps its full contrast (the old mean of RGBA gave 64..255, a quarter lost).
    ramp = np.repeat(np.arange(0, 256, 51, dtype=np.uint8)[:, None], 4, axis=1)[None, None]
    ramp[..., 3] = 255
    assert to_grayscale(ramp, True).min() == 0 and to_grayscale(ramp, True).max() == 255
    # Pure colours weigh as luminance (green brightest), not equally.
    pure = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]], np.uint8)
    np.testing.assert_array_equal(to_grayscale(pure, True)[0, 0], [76, 150, 29])
    # Grey + alpha keeps the grey; 16-bit colour stays 16-bit; scalar frames are untouched.
    ga = np.stack([rgb[..., 0], np.zeros_like(rgb[..., 0])], axis=-1)
    np.testing.assert_array_equal(to_grayscale(ga, True), rgb[..., 0])
    assert to_grayscale(rgb.astype(np.uint16) * 257, True).dtype == np.uint16
    scalar = rgb[..., 0]
    assert to_grayscale(scalar, False) is scalar


def test_packed_mask_round_trip():
    mask = np.random.default_rng(1).random((37, 53)) > 0.5
    np.testing.assert_array_equal(PackedMask(mask).unpack(), mask)


def test_frame_range_covers_the_requested_frames():
    assert frame_range(5, 20, 3, "forward") == [5, 8]
    assert frame_range(5, 20, 10, "backward") == [0, 5]
    assert frame_range(18, 20, None, "both") == [0, 19]
    with pytest.raises(ValueError, match="direction"):
        frame_range(5, 20, 3, "sideways")
    with pytest.raises(ValueError, match="at least 1"):
        frame_range(5, 20, 0, "forward")


def _offline_session(n=4, shape=(8, 10)):
    stack = FrameStack("cine", np.zeros((n, *shape), np.uint8), np.eye(4), ("node", 1))
    return InteractiveSession(client=None, masks=ArrayMaskStore(n, shape), stack=stack)


def test_session_undo_restores_masks_and_points_and_drops_stale_results():
    session = _offline_session()
    first = session.set_points("s", 2, [(3, 4)], [])
    assert first.kind == "interactive" and first.params["foreground"] == [[3, 4, 2]]
    assert first.params["slice"] == 2
    assert session.set_points("s", 2, [(3, 4)], []) is None  # unchanged points: nothing to run
    mask = np.zeros((8, 10), bool)
    mask[2:5, 2:6] = True
    assert session.apply(JobResult(first, {2: mask})) == [2]
    assert session.masks.read_frame("s", 2).sum() == mask.sum()

    # Two quick changes: the older answer arrives after the newer job exists and is dropped.
    older = session.set_points("s", 2, [(3, 4), (6, 6)], [])
    newer = session.set_points("s", 2, [(3, 4), (6, 6)], [(0, 0)])
    assert session.apply(JobResult(older, {2: np.ones((8, 10), bool)})) == []
    assert session.apply(JobResult(newer, {2: mask | np.eye(8, 10, dtype=bool)})) == [2]

    entry = session.undo()  # back to one positive point and the first mask
    assert entry.frames == [2]
    assert session.prompts.get("s", 2).positive == ((3, 4),) and session.prompts.get("s", 2).negative == ()
    np.testing.assert_array_equal(session.masks.read_frame("s", 2), mask)
    assert session.undo() is not None and not session.masks.read_frame("s", 2).any()
    assert session.undo() is None

    # Removing the last positive point clears the frame without asking the server.
    session.apply(JobResult(session.set_points("s", 1, [(1, 1)], []), {1: mask}))
    clear = session.set_points("s", 1, [], [(1, 1)])
    assert clear.kind == "clear"
    session.apply(session.execute(clear))
    assert not session.masks.read_frame("s", 1).any()
    with pytest.raises(ValueError, match="outside the frame"):
        session.set_points("s", 1, [(10, 0)], [])
    with pytest.raises(ValueError, match="positive point or a box on frame 3"):
        session.propagate("s", 3, 2)


def test_propagation_skips_frames_the_user_prompted():
    session = _offline_session(n=6)
    session.set_points("s", 1, [(2, 2)], [])
    session.set_points("s", 3, [(5, 5)], [])
    job = session.propagate("s", 1, count=4)
    assert job.params["frames"] == [1, 5] and job.params["direction"] == "forward"
    assert job.params["slice"] == 1
    assert job.params["foreground"] == [[2, 2, 1], [5, 5, 3]]  # frame 3's points go along as a seed
    assert session.propagate("s", 3, count=1).params["foreground"] == [[5, 5, 3]]  # frame 1 is out of range
    full = {f: np.ones((8, 10), bool) for f in range(1, 6)}
    assert session.apply(JobResult(job, full)) == [2, 4, 5]
    assert non_empty_frames(session.masks.segment_volume("s")) == [2, 4, 5]
    session.undo()
    assert non_empty_frames(session.masks.segment_volume("s")) == []


def test_content_id_changes_with_voxels_and_geometry():
    a = FrameStack("My cine #1", np.zeros((2, 3, 4), np.uint8), np.eye(4))
    b = FrameStack("My cine #1", np.ones((2, 3, 4), np.uint8), np.eye(4))
    c = FrameStack("My cine #1", np.zeros((2, 3, 4), np.uint8), np.diag([2.0, 1, 1, 1]))
    ids = {content_id(x) for x in (a, b, c)}
    assert len(ids) == 3 and all(i.startswith("My_cine_1_") for i in ids)
    assert content_id(a) == content_id(FrameStack("My cine #1", np.zeros((2, 3, 4), np.uint8), np.eye(4)))


def test_task_runner_hands_results_back_on_the_polling_thread():
    runner = TaskRunner()
    main = threading.get_ident()
    seen = []
    try:
        runner.submit(lambda: threading.get_ident(), on_done=lambda worker: seen.append((worker, threading.get_ident())))
        runner.submit(lambda: 1 / 0, on_error=lambda exc: seen.append(type(exc)), label="dividing")
        runner.wait(30)
    finally:
        runner.shutdown()
    (worker, callback_thread), error = seen
    assert worker != main and callback_thread == main
    assert error is ZeroDivisionError
    assert not runner.busy and runner.current() == ""


def test_task_runner_is_a_daemon_that_shutdown_stops_without_waiting():
    runner = TaskRunner()
    assert runner.thread.daemon and runner.thread.is_alive()
    release = threading.Event()
    seen = []
    blocked = runner.submit(lambda: release.wait(30), on_done=seen.append, label="blocked request")
    queued = runner.submit(lambda: seen.append("ran"), on_done=seen.append)
    time.sleep(0.05)
    started = time.monotonic()
    runner.shutdown()
    assert time.monotonic() - started < 0.5  # a request in flight does not hold up cleanup()
    assert queued.cancelled() and not runner.busy and runner.current() == ""
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit(lambda: 1)
    release.set()
    runner.thread.join(5)
    assert not runner.thread.is_alive() and blocked.result() is True
    assert runner.poll() == 0 and seen == []  # no callbacks after shutdown


def test_poll_waits_for_a_result_and_returns_as_soon_as_it_arrives():
    runner = TaskRunner()
    try:
        started = time.monotonic()
        assert runner.poll(wait=5) == 0 and time.monotonic() - started < 0.5  # idle: no waiting
        results = []
        runner.submit(lambda: time.sleep(0.2) or "mask", on_done=results.append)
        started = time.monotonic()
        handled = 0
        while not handled:
            handled = runner.poll(wait=5)
        assert results == ["mask"] and 0.1 < time.monotonic() - started < 3
    finally:
        runner.shutdown()


def test_a_request_in_flight_does_not_keep_the_process_alive(tmp_path):
    # A non-daemon worker (what ThreadPoolExecutor makes) would keep this process alive for the whole request.
    script = tmp_path / "exit_while_busy.py"
    script.write_text(
        "import sys, threading\n"
        f"sys.path.insert(0, {str(helpers_slicer.MODULE_DIR)!r})\n"
        "from SAMUSSegmentLib.worker import TaskRunner\n"
        "runner = TaskRunner()\n"
        "runner.submit(lambda: threading.Event().wait(120))\n"
        "print('exiting')\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "exiting"
    assert time.monotonic() - started < 30


def test_training_progress_is_readable(running_task, train_record):
    assert describe_training(None)[0] == "NONE"
    status, fraction, text = describe_training(running_task, train_record)  # progress: the trainer's record
    assert status == "RUNNING" and fraction == pytest.approx(0.3) and "30%" in text and "loss 0.41" in text
    assert describe_training({"status": "DONE", "details": []})[1] == 1.0


def test_training_progress_comes_from_the_trainers_record_not_the_log(running_task, train_record):
    mid_epoch = dict(train_record, epoch=4, step=3, steps=12)  # a quarter into epoch 4 of 10
    assert describe_training(running_task, mid_epoch)[1] == pytest.approx(0.325)
    assert describe_training(running_task, dict(train_record, epoch=0, step=None))[1] == 0.0  # started
    # The log says "Epoch: 3/10", but without the record there is no progress: a busy indicator.
    status, fraction, text = describe_training(running_task, None)
    assert (status, fraction) == ("RUNNING", None) and "%" not in text and "loss 0.41" in text
    # The record of an earlier run (this one has not written its own yet) says nothing about this one.
    assert describe_training(running_task, dict(train_record, status="DONE"))[1] is None
    assert describe_training(running_task, dict(train_record, total_epochs=0))[1] is None
    assert describe_training({"status": "SUBMITTED"}, train_record)[1] is None  # queued: not started
    assert describe_training({"status": "STOPPED"}, train_record)[1] is None


def test_read_training_asks_for_the_record_only_while_training_runs(running_task, train_record):
    from SAMUSSegmentLib.training import read_training

    class Client:
        def __init__(self, task, stats):
            self.task, self.stats, self.asked = task, stats, []

        def train_status(self):
            return self.task

        def train_stats(self, trainer):
            self.asked.append(trainer)
            return self.stats

    client = Client(running_task, train_record)
    assert read_training(client)[1] == pytest.approx(0.3) and client.asked == ["samus"]
    client = Client({"status": "DONE", "details": []}, None)
    assert read_training(client)[:2] == ("DONE", 1.0) and client.asked == []
    assert read_training(Client(None, None))[0] == "NONE"


def test_client_reads_the_trainers_record_from_info():
    client = SamusClient("http://127.0.0.1:1")
    client.info = lambda: {"models": {}, "train_stats": {"samus": {"status": "RUNNING", "epoch": 1}, "other": {}}}
    assert client.train_stats() == {"status": "RUNNING", "epoch": 1}
    assert client.train_stats("other") is None and client.train_stats("none") is None
    client.info = lambda: {"models": {}}
    assert client.train_stats() is None


def test_a_box_goes_with_the_frames_clicks_as_roi_and_is_undone_with_them():
    from SAMUSSegmentLib.frames import ArrayMaskStore
    from SAMUSSegmentLib.prompts import PromptStore
    from SAMUSSegmentLib.session import InteractiveSession, JobResult
    from SAMUSSegmentLib.upload import FrameStack

    stack = FrameStack("img", np.zeros((3, 10, 12), np.uint8), np.eye(4), ("k", 1))
    session = InteractiveSession(None, ArrayMaskStore(3, (10, 12)), stack)
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:7] = True
    # A box alone segments (MedSAM-style); its corners are sorted and clipped to the frame.
    job = session.set_points("s", 1, [], [], box=(8, 7, 2, 1))
    assert job.kind == "interactive" and job.params["roi"] == [2, 1, 8, 7] and job.params["slice"] == 1
    assert job.params["foreground"] == [] and "variant" not in job.params  # no choice offered: no `variant` param
    session.apply(JobResult(job, {1: mask}))
    # Clicks refine it: the box goes along with them.
    session.model_choice = "accurate"
    job = session.set_points("s", 1, [(4, 3)], [(9, 8)], box=(2, 1, 8, 30))
    assert job.params["roi"] == [2, 1, 8, 9] and job.params["foreground"] == [[4, 3, 1]]
    assert job.params["background"] == [[9, 8, 1]] and job.params["variant"] == "accurate"
    session.apply(JobResult(job, {1: ~mask}))
    assert session.prompts.get("s", 1).box == (2, 1, 8, 9)
    # Undo brings back the box-only prompt and its mask, then nothing.
    session.undo()
    assert session.prompts.get("s", 1).box == (2, 1, 8, 7) and not session.prompts.get("s", 1).positive
    np.testing.assert_array_equal(session.masks.read_frame("s", 1), mask)
    session.undo()
    assert not session.prompts.get("s", 1) and not session.masks.read_frame("s", 1).any()
    # Removing the box of a frame with only negatives clears the frame locally (nothing to segment).
    session.set_points("s", 2, [], [(1, 1)], box=(1, 1, 5, 5))
    assert session.set_points("s", 2, [], [(1, 1)]).kind == "clear"
    with pytest.raises(ValueError, match="too small"):
        session.set_points("s", 0, [], [], box=(3, 3, 3, 9))
    # Saved in the scene with the points.
    session.set_points("s", 0, [(1, 2)], [], box=(0, 0, 4, 4))
    restored = PromptStore.from_json(session.prompts.to_json())
    assert restored.get("s", 0).box == (0, 0, 4, 4) and restored.get("s", 2).box is None
    # The propagation request carries the clicked frame's box as roi on its slice, and the propagation model.
    session.propagate_choice = "fast"
    job = session.propagate("s", 0, count=2)
    assert job.params["roi"] == [0, 0, 4, 4] and job.params["slice"] == 0 and job.params["variant"] == "fast"


def test_model_choices_come_from_info_and_the_remembered_one_wins_when_offered():
    from SAMUSSegmentLib.models import choose, model_choices, propagation_hint, with_model

    info = {"models": {"samus": {"type": "deepgrow", "config": {"variant": ["accurate", "fast"]}},
                       "samus_propagate": {"type": "deepgrow", "config": {"variant": ["fast", "accurate"],
                                                                          "direction": ["both"]}}}}
    assert model_choices(info, "samus") == ["accurate", "fast"]
    assert model_choices(info, "samus_propagate") == ["fast", "accurate"]  # the server's default first
    old = {"models": {"samus": {"type": "deepgrow", "config": {"direction": []}}, "samus_propagate": {}}}
    assert model_choices(old, "samus") == [] and model_choices(old, "samus_propagate") == []
    assert model_choices({"models": {"samus": {"config": {"variant": "fast"}}}}, "samus") == ["fast"]
    assert model_choices({}, "samus") == [] and model_choices({"models": {"samus": None}}, "samus") == []
    assert choose(["accurate", "fast"], None) == "accurate"
    assert choose(["accurate", "fast"], "fast") == "fast"  # remembered in the settings
    assert choose(["accurate", "fast"], "huge") == "accurate"  # no longer offered: the server's default
    assert choose([], "fast") is None
    assert with_model({"a": 1}, "fast") == {"a": 1, "variant": "fast"}
    assert with_model({"a": 1, "variant": "x"}, None) == {"a": 1}  # an older server gets no `variant`
    assert "'fast' is suggested" in propagation_hint("accurate", ["accurate", "fast"], 300)
    assert propagation_hint("fast", ["accurate", "fast"], 300) == ""
    assert propagation_hint("accurate", ["accurate", "fast"], 10) == ""


@pytest.mark.parametrize("name", ["axial", "oblique"])
def test_a_box_shown_as_a_markups_roi_reads_back_as_the_same_pixels(name):
    ijk_to_ras = np.diag([-0.3, -0.3, 1.0, 1.0]) if name == "axial" else oblique_ijk_to_ras()
    frame = 3
    origin = geometry.apply(ijk_to_ras, [0, 0, frame])
    step_i = geometry.apply(ijk_to_ras, [1, 0, frame]) - origin
    step_j = geometry.apply(ijk_to_ras, [0, 1, frame]) - origin
    box = (4, 7, 15, 9)
    object_to_world, size = geometry.box_roi(box, origin, step_i, step_j)
    np.testing.assert_allclose(object_to_world[:3, :3].T @ object_to_world[:3, :3], np.eye(3), atol=1e-12)
    # The ROI's centre is on the frame, in the middle of the box; its edges on the pixel borders.
    np.testing.assert_allclose(geometry.world_to_ijk(object_to_world[:3, 3], geometry.invert(ijk_to_ras)),
                               [9.5, 8.0, frame], atol=1e-9)
    world_to_ijk = geometry.invert(ijk_to_ras)
    assert geometry.box_from_roi(object_to_world, size, world_to_ijk, (10, 20)) == box
    # Clipped to the frame (10 rows x 12 columns here); None when it misses the frame.
    assert geometry.box_from_roi(object_to_world, size, world_to_ijk, (9, 12)) == (4, 7, 11, 8)
    far = object_to_world.copy()
    far[:3, 3] = geometry.apply(ijk_to_ras, [-50, -50, frame])
    assert geometry.box_from_roi(far, size, world_to_ijk, (10, 20)) is None
