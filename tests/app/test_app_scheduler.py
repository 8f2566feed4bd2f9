"""The scheduler's rules with real threads (no server): who gets the model next, bounds, cancellation."""
import sys
import threading
import time

import pytest

from app_server import APP_DIR

sys.path.insert(0, str(APP_DIR))
from lib.app_conf import ConfError, parse_conf  # noqa: E402
from lib.scheduler import BATCH, INTERACTIVE, PREFETCH, Cancelled, Scheduler, TooManyJobs  # noqa: E402


def queued(s: Scheduler, n: int) -> None:
    while len(s._queue) < n:  # wait until the other threads are in the queue (no time is asserted)
        time.sleep(0.001)


def test_a_click_goes_before_long_jobs_that_asked_earlier():
    s = Scheduler()
    holder = s.start("propagation A", BATCH)
    order = []

    def take(job):
        with job.slot():
            order.append(job.kind)

    waiting = [s.start("propagation B", BATCH), s.start("diversity", BATCH), s.start("click", INTERACTIVE)]
    with holder.slot():
        threads = []
        for n, job in enumerate(waiting):
            threads.append(threading.Thread(target=take, args=(job,)))
            threads[-1].start()
            queued(s, n + 1)
    for t in threads:
        t.join()
    assert order == ["click", "propagation B", "diversity"]  # clicks first, then first come first served
    click = waiting[2]
    assert click.waited_batches == 1 and click.busy_on_arrival == ["diversity", "propagation A", "propagation B"]
    assert waiting[1].waited_batches == 2  # diversity: A's batch and B's (the click is no long work)


def test_long_jobs_are_bounded_and_can_be_cancelled_while_waiting():
    s = Scheduler(max_batch_jobs=2)
    a, b = s.start("a", BATCH), s.start("b", BATCH)
    with pytest.raises(TooManyJobs, match="max_long_jobs"):
        s.start("c", BATCH)
    s.start("click", INTERACTIVE)  # clicks are not counted against the bound
    outcome = []

    def wait_for_slot():
        try:
            with b.slot():
                outcome.append("ran")
        except Cancelled:
            outcome.append("cancelled")

    with a.slot():
        t = threading.Thread(target=wait_for_slot)
        t.start()
        queued(s, 1)
        b.cancel()
        t.join()
    assert outcome == ["cancelled"] and not s._queue
    s.finish(b)
    assert b.state == "cancelled"
    s.start("c", BATCH)  # room again


def test_encode_ahead_runs_only_when_idle_and_stops_when_work_arrives():
    s = Scheduler()
    ahead = s.start("encode_ahead", PREFETCH)
    with ahead.slot():
        pass  # idle server: it may run
    click = s.start("click", INTERACTIVE)
    assert ahead.cancelled  # real work arrived: the plan is dropped
    with pytest.raises(Cancelled):
        with ahead.slot():
            pass
    s.finish(ahead)
    later = s.start("encode_ahead", PREFETCH)
    with pytest.raises(Cancelled):  # never while real work is active
        with later.slot():
            pass
    s.finish(click)
    assert s.wait_idle(timeout=0)


def test_encode_ahead_waits_for_a_quiet_spell_after_the_last_request():
    s = Scheduler()
    with s.job("click", INTERACTIVE):
        pass
    assert not s.wait_idle(timeout=0.05, quiet=0.3)  # a user's next click may follow at once
    assert s.wait_idle(timeout=2.0, quiet=0.3)


@pytest.mark.parametrize("key, value", [("train_nice", "20"), ("train_nice", "-1"), ("batch_frames", "0"),
                                        ("max_long_jobs", "0"), ("encode_ahead", "-1"), ("max_sessions", "x"),
                                        ("encode_ahead_delay", "-1"), ("encode_ahead_delay", "nan"),
                                        ("train_threads", "0"), ("max_datastore_mb", "0")])
def test_bad_sharing_conf_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfError, match=f"--conf {key}"):
        parse_conf({key: value, "device": "cpu"})


def test_sharing_conf_defaults():
    sharing = parse_conf({"device": "cpu"}).sharing
    assert (sharing.max_long_jobs, sharing.batch_frames, sharing.encode_ahead, sharing.train_nice) == (8, 4, 2, 10)
    assert sharing.encode_ahead_delay == 1.0
    assert sharing.train_threads >= 1 and sharing.max_sessions == 64


def test_a_stream_of_clicks_cannot_starve_a_long_job():
    s = Scheduler(click_streak=2)
    holder, long_job = s.start("a first click", INTERACTIVE), s.start("propagation", BATCH)
    clicks = [s.start(f"click {n}", INTERACTIVE) for n in range(5)]
    order = []

    def take(job):
        with job.slot():
            order.append(job.kind)

    threads = []
    with holder.slot():
        for n, job in enumerate([long_job] + clicks):
            threads.append(threading.Thread(target=take, args=(job,)))
            threads[-1].start()
            queued(s, n + 1)
    for t in threads:
        t.join()
    # Two clicks, then the long job's turn, then the other clicks; no click waited for more than one batch.
    assert order == ["click 0", "click 1", "propagation", "click 2", "click 3", "click 4"]
    assert all(c.waited_batches <= 1 for c in clicks), [c.waited_batches for c in clicks]



def test_a_click_stops_an_encode_ahead_pass_of_the_accurate_model_in_flight():
    # The accurate model's trunk runs through OpenVINO, whose pass can be stopped: a click that arrives while
    # encode-ahead holds the model no longer waits for the speculative pass to end, and nothing half-done is
    # cached. The served model and the decoded cine are plain containers; scheduler and predictor are real.
    from types import SimpleNamespace

    import numpy as np
    import samus
    from lib.encode_ahead import EncodeAhead

    predictor = samus.SamusPredictor(samus.load_default_model(model="accurate"), backend="openvino")
    served = SimpleNamespace(predictor=predictor, version=1)
    info = SimpleNamespace(key="cine", frames=3)
    pixels = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    s = Scheduler()
    ahead = EncodeAhead(s, SimpleNamespace(get=lambda _: pixels), window=1)
    worker = threading.Thread(target=ahead._encode, args=(served, info, [1, 2]))
    worker.start()
    while s._holder is None:  # encode-ahead holds the model: its first pass is starting or running
        time.sleep(0.001)
    click = s.start("click", INTERACTIVE)
    with click.slot():  # granted once the pass has stopped
        pass
    worker.join()
    s.finish(click)
    assert ahead.dropped == 1 and ahead.encoded == 0  # a PyTorch pass would have ended: encoded == 1
    assert ("cine", 1, 1) not in predictor.cache and ("cine", 2, 1) not in predictor.cache
