"""Chunked propagation from the Slicer module's logic (SAMUSSegmentLib.chunks), without Slicer.

The "server" here is the app's own propagation algorithm (samus.propagate.propagate, what the
`samus_propagate` task runs) with a stand-in predictor, fed the module's requests exactly as the task parses
them: clicks [i, j, k] grouped by frame, `roi` on `slice`, the `frames` range and `direction`. So the test
checks the module against the real chain rules (seeds, half-way splits between seeds, stops where the object
is lost, clicks carried along the measured motion).
"""
from types import SimpleNamespace

import numpy as np
import pytest

import helpers_slicer  # noqa: F401  (puts the library on sys.path)
from SAMUSSegmentLib.chunks import ChunkedPropagation, ChunkPlan
from SAMUSSegmentLib.frames import ArrayMaskStore
from SAMUSSegmentLib.session import InteractiveSession, JobResult
from SAMUSSegmentLib.upload import FrameStack

from samus import propagate as propagate_module  # the app's propagation (lib/), what samus_propagate runs

ROWS, COLS, N = 40, 48, 24


def cine(n=N):
    """A bright disc drifting right by 1 pixel a frame on a textured background (for the motion estimate)."""
    rng = np.random.default_rng(0)
    background = rng.integers(20, 60, (ROWS, COLS)).astype(np.float32)
    y, x = np.mgrid[0:ROWS, 0:COLS]
    frames = []
    for k in range(n):
        frame = background.copy()
        frame[(x - 14 - k) ** 2 + (y - 20) ** 2 < 36] = 200
        frames.append(frame.astype(np.uint8))
    return np.stack(frames)


class Predictor:
    """Stand-in for SamusPredictor: a disc of radius 6 around the mean positive click (or the box centre);
    nothing on the frames in `lost` (the object left the picture)."""

    def __init__(self, lost=()):
        self.lost = set(lost)
        self.model = SimpleNamespace(geometry=None)  # derived prompts use SAMUS's canvas (samus.propagate)

    def encode_frames(self, frames, keys, batch_size=8):
        return [SimpleNamespace(original_size=np.shape(f)[:2], key=k) for f, k in zip(frames, keys)]

    def predict_embedding(self, emb, points, labels, box, mask_input=None, correction="local"):
        h, w = emb.original_size
        y, x = np.mgrid[0:h, 0:w]
        if points is not None and (np.asarray(labels) == 1).any():
            cx, cy = np.asarray(points)[np.asarray(labels) == 1].mean(axis=0)
        else:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        mask = ((x - cx) ** 2 + (y - cy) ** 2 < 36) & (emb.key not in self.lost)
        logits = np.where(mask[::2, ::2], 4.0, -4.0)[:32, :32]
        logits = np.pad(logits, ((0, 32 - logits.shape[0]), (0, 32 - logits.shape[1])), constant_values=-4.0)
        return mask, 0.9, logits


def serve(frames, predictor, params):
    """The `samus_propagate` task's handling of the module's request params (monailabel_app/lib/infers)."""
    prompts = {}
    for key, label in (("foreground", 1), ("background", 0)):
        for i, j, k in params.get(key, []):
            p = prompts.setdefault(k, [[], []])
            p[0].append([i, j])
            p[1].append(label)
    prompts = {k: propagate_module.FramePrompt(np.array(p, float), np.array(lab)) for k, (p, lab) in prompts.items()}
    if "roi" in params:
        prompts.setdefault(params["slice"], propagate_module.FramePrompt()).box = np.array(params["roi"], float)
    options = propagate_module.PropagationOptions(direction=params["direction"], min_area=params.get("min_area", 20))
    result = propagate_module.propagate(predictor, lambda k: frames[k], len(frames), prompts, frame_key=lambda k: k,
                                        frame_range=tuple(params["frames"]), options=options)
    return result.masks, {"frames": result.frames, "stopped_at": result.stopped_at}


def new_session(frames):
    stack = FrameStack("cine", frames, np.eye(4), ("cine", 1))
    return InteractiveSession(None, ArrayMaskStore(len(frames), frames.shape[1:]), stack)


def prompt(session, frame, positive=(), box=None):
    job = session.set_points("s", frame, positive, [], box)
    session.apply(JobResult(job, {frame: np.zeros((ROWS, COLS), bool)}))  # the click's own mask: not relevant


def one_shot(frames, predictor, seeds, count, direction):
    session = new_session(frames)
    for frame, positive, box in seeds:
        prompt(session, frame, positive, box)
    job = session.propagate("s", seeds[0][0], count, direction)
    masks, meta = serve(frames, predictor, job.params)
    session.apply(JobResult(job, masks, meta))
    return session.masks.segment_volume("s").copy()


def chunked(frames, predictor, seeds, count, direction, chunk_frames, stop_after=None):
    session = new_session(frames)
    for frame, positive, box in seeds:
        prompt(session, frame, positive, box)
    run = ChunkedPropagation(session, "s", seeds[0][0], count, direction, chunk_frames)
    job, windows, views = run.start(), [], []
    while job is not None:
        windows.append(tuple(job.params["frames"]))
        masks, meta = serve(frames, predictor, job.params)
        written, job = run.on_result(JobResult(job, masks, meta))
        views.append(session.masks.segment_volume("s").copy())  # what the user sees after this chunk
        if stop_after is not None and len(windows) == stop_after:
            run.stop()
            if job is not None:  # the request already sent comes back after Stop: it must change nothing
                masks, meta = serve(frames, predictor, job.params)
                assert run.on_result(JobResult(job, masks, meta)) == ([], None)
            break
    return session, run, windows, views


CASES = {
    "forward": ([(3, [(17, 20)], None)], 14, "forward", ()),
    "forward, object lost": ([(3, [(17, 20)], None)], 18, "forward", (12,)),
    "whole loop": ([(10, [(24, 20)], None)], None, "both", ()),
    "whole loop, two seeds, lost in between": ([(6, [(20, 20)], None), (17, [(31, 20)], None)], None, "both", (9,)),
    # Early windows (without the seed on 17) carry frame 6's chain to 12 and 13; the full range gives them to
    # 17's chain, which is lost at 14 on its way back: 12 and 13 must end up empty, as in the one-shot run.
    "whole loop, a later seed takes frames back": ([(6, [(20, 20)], None), (17, [(31, 20)], None)], None, "both",
                                                   (14,)),
    "box only": ([(8, [], (16, 14, 28, 26))], 10, "forward", ()),
}


@pytest.mark.parametrize("chunk_frames", [3, 5, 16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_chunked_propagation_gives_the_one_shot_masks(case, chunk_frames):
    seeds, count, direction, lost = CASES[case]
    frames, predictor = cine(), Predictor(lost)
    expected = one_shot(frames, predictor, seeds, count, direction)
    session, run, windows, views = chunked(frames, predictor, seeds, count, direction, chunk_frames)
    np.testing.assert_array_equal(session.masks.segment_volume("s"), expected)
    assert expected[[f for f in range(N) if f not in {s[0] for s in seeds}]].any()  # something was propagated
    assert run.finished and not run.stopped
    # Outward from the clicked frame: every window contains the previous one and the clicked frame.
    clicked = seeds[0][0]
    for (lo0, hi0), (lo1, hi1) in zip(windows, windows[1:]):
        assert lo1 <= lo0 <= clicked <= hi0 <= hi1 and (lo1, hi1) != (lo0, hi0)
    if chunk_frames == 3 and not lost:
        assert len(windows) > 2 and len(views) == len(windows)  # the view is updated after every chunk
        assert [int(v.reshape(N, -1).any(axis=1).sum()) for v in views] == sorted(
            int(v.reshape(N, -1).any(axis=1).sum()) for v in views)  # masks appear outward, chunk by chunk


def test_a_lost_object_ends_that_side_early():
    frames, predictor = cine(), Predictor(lost=(12,))
    _, run, windows, _ = chunked(frames, predictor, [(3, [(17, 20)], None)], 18, "forward", 3)
    assert windows == [(3, 6), (3, 9), (3, 12)]  # frame 12 lost: no request beyond it
    assert run.stopped_at == [12] and "lost at frame 13" in run.describe()


def test_stop_ends_the_propagation_between_chunks_and_undo_reverts_it_in_one_step():
    frames, predictor = cine(), Predictor()
    seeds = [(3, [(17, 20)], None)]
    session, run, windows, views = chunked(frames, predictor, seeds, 18, "forward", 4, stop_after=2)
    assert windows == [(3, 7), (3, 11)] and run.stopped and run.finished
    shown = session.masks.segment_volume("s")
    np.testing.assert_array_equal(shown, views[-1])  # what was shown at Stop stays
    assert [int(k) for k in np.flatnonzero(shown.reshape(N, -1).any(axis=1))] == list(range(4, 12))
    assert "stopped" in run.describe()
    entry = session.undo()  # both chunks are one undo step
    assert entry.description == "propagation from frame 3" and entry.frames == list(range(4, 12))
    assert not session.masks.segment_volume("s").any()
    assert session.undo() is not None and session.undo() is None  # then the click, then nothing


def test_an_undone_propagation_ignores_a_late_chunk():
    frames, predictor = cine(), Predictor()
    session = new_session(frames)
    prompt(session, 3, [(17, 20)])
    run = ChunkedPropagation(session, "s", 3, 18, "forward", 4)
    job = run.start()
    masks, meta = serve(frames, predictor, job.params)
    written, job = run.on_result(JobResult(job, masks, meta))
    assert written == [4, 5, 6, 7]
    session.undo()  # the user undoes the propagation while its next chunk runs
    masks, meta = serve(frames, predictor, job.params)
    written, _ = run.on_result(JobResult(job, masks, meta))
    assert written == [] and not session.masks.segment_volume("s").any()


def test_chunk_plan_grows_outward_and_clips_to_the_range():
    plan = ChunkPlan(10, 30, None, "both", chunk_frames=8)
    assert [plan.next_window() for _ in range(5)] == [[6, 14], [2, 18], [0, 22], [0, 29], None]
    assert plan.done and plan.next_window() is None
    plan = ChunkPlan(2, 30, 5, "forward", chunk_frames=2)
    assert [plan.next_window() for _ in range(4)] == [[2, 4], [2, 6], [2, 7], None]
    assert plan.progress() == (6, 6)
    plan = ChunkPlan(29, 30, None, "forward", chunk_frames=4)
    assert plan.done and plan.next_window() is None  # nothing after the last frame
    plan = ChunkPlan(10, 30, None, "both", chunk_frames=4)
    plan.next_window()
    plan.record([8, 12], returned_frames=[9, 10, 11, 12], seeded_frames=[10])  # backward chain lost at 9
    assert not plan.backward and plan.forward
    plan.record([8, 12], returned_frames=[9, 10, 11], seeded_frames=[10, 20])  # a seed further on: go on
    assert plan.forward
    # Windows grow by half their size, within [chunk, 4 x chunk] new frames: the repeated work stays bounded.
    plan = ChunkPlan(0, 300, None, "forward", chunk_frames=16)
    sizes = []
    while (window := plan.next_window()) is not None:
        sizes.append(window[1] - window[0] + 1)
    assert sizes == [17, 33, 49, 73, 109, 163, 227, 291, 300]
    assert sum(sizes) - 300 < 1000  # frames computed again; constant chunks of 16 would repeat about 2,700
    with pytest.raises(ValueError, match="at least one frame"):
        ChunkPlan(1, 5, None, "both", chunk_frames=0)


def test_a_server_that_keeps_the_chains_gets_its_token_back_and_constant_chunks():
    """The proposed `resume` protocol: the answer's token goes back with the next request; windows then grow by
    a constant chunk (the server computes only the new frames). Old servers never send a token."""
    frames, predictor = cine(), Predictor()
    session = new_session(frames)
    prompt(session, 3, [(17, 20)])
    run = ChunkedPropagation(session, "s", 3, None, "forward", 4)
    job, requests, tokens = run.start(), [], iter(range(100))
    while job is not None:
        requests.append((tuple(job.params["frames"]), job.params.get("resume")))
        masks, meta = serve(frames, predictor, job.params)
        meta["resume"] = f"chains-{next(tokens)}"
        _, job = run.on_result(JobResult(job, masks, meta))
    assert requests[:4] == [((3, 7), None), ((3, 11), "chains-0"), ((3, 15), "chains-1"), ((3, 19), "chains-2")]
    assert requests[-1][0] == (3, N - 1)
    np.testing.assert_array_equal(session.masks.segment_volume("s"),
                                  one_shot(frames, predictor, [(3, [(17, 20)], None)], None, "forward"))
