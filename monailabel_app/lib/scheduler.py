"""Who gets the model next: clicks first, long jobs between their batches, encode-ahead when idle.

Every request runs in its own worker thread (see threaded_routes), but the model is one: its work goes
through one *slot*, held by one job at a time for one unit of work - a click's encoder + decoder pass, or
one batch of a long job (a few frames' encoder pass, or one frame's decoder pass). When the slot is
released the most urgent waiter gets it: INTERACTIVE (clicks) before BATCH (propagation, active-learning
scoring) before PREFETCH (encode-ahead); first come, first served within a level. A click therefore waits
for at most the one batch of long work that is running when it arrives (plus other users' clicks), and
long jobs from several users take turns batch by batch. So that a stream of clicks cannot starve a long
job, a waiting long job gets the next turn after `click_streak` clicks in a row, provided no waiting click
has already waited for a batch: a click still waits for at most one.

Results do not depend on the interleaving: each unit of work is the same computation it would be alone
(the same frames in the same batches), and the embedding cache is shared.

Each job counts the batches of other jobs' long work that ran while it waited (`waited_batches`) and
keeps the server's monotonic times of its own slot holdings, which requests report back so that tests can
check the rule without timing anything.
"""
import heapq
import itertools
import logging
import threading
import time
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

INTERACTIVE, BATCH, PREFETCH = 0, 1, 2
LEVELS = {INTERACTIVE: "interactive", BATCH: "batch", PREFETCH: "prefetch"}


class Cancelled(Exception):
    """The job was cancelled (by its client, or - encode-ahead - because real work arrived)."""


class Job:
    """One request's (or the encode-ahead worker's) claim on the model."""

    def __init__(self, scheduler: "Scheduler", kind: str, priority: int, job_id: Optional[str] = None):
        self.scheduler = scheduler
        self.kind = kind
        self.priority = priority
        self.job_id = job_id
        self.cancel_event = threading.Event()
        self.queued_at: List[float] = []  # monotonic time of each slot request
        self.holdings: List[Tuple[float, float]] = []  # monotonic (start, end) of each slot holding
        self.waited_batches = 0  # batches of others' long work that ran while this job waited
        self.seen = 0  # the scheduler's count of finished long batches when this job last asked for the slot
        self.busy_on_arrival: List[str] = []  # kinds of other jobs active when this one first asked
        self.done = 0  # progress units (frames) completed, for GET /samus/jobs/<id>
        self.total = 0
        self.state = "queued"

    @contextmanager
    def slot(self):
        """Hold the model for one unit of work."""
        self.scheduler._acquire(self)
        start = time.monotonic()
        try:
            yield
        finally:
            self.holdings.append((start, time.monotonic()))
            self.scheduler._release(self)

    def cancel(self) -> None:
        self.scheduler.cancel(self)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def report(self, intervals: bool = False) -> dict:
        out = {"priority": LEVELS[self.priority], "waited_batches": self.waited_batches,
               "slot_holdings": len(self.holdings), "busy_on_arrival": self.busy_on_arrival}
        if intervals:  # server monotonic seconds: when it asked first, and each holding
            out["queued_at"] = [round(t, 6) for t in self.queued_at]
            out["holdings"] = [[round(a, 6), round(b, 6)] for a, b in self.holdings]
        return out


class Scheduler:
    def __init__(self, max_batch_jobs: int = 8, max_tracked: int = 256, click_streak: int = 4):
        self.max_batch_jobs = max_batch_jobs  # long jobs running or queued at once (--conf max_long_jobs)
        self.click_streak = click_streak  # clicks in a row before a waiting long job gets a turn
        self._streak = 0  # clicks served in a row while a long job waited
        self._cond = threading.Condition()
        self._holder: Optional[Job] = None
        self._queue: List[Tuple[int, int, Job]] = []  # heap: (priority, arrival, job)
        self._arrival = itertools.count()
        self._long_batches_done = 0
        self._active: Dict[int, Job] = {}  # id(job) -> job, jobs between start() and finish()
        self._tracked: Dict[str, Job] = {}  # client-named jobs, for progress and cancellation (bounded)
        self._max_tracked = max_tracked
        self._quiet_since = time.monotonic()  # when real work was last active

    # ---------------------------------------------------------------------------------------- jobs
    def start(self, kind: str, priority: int, job_id: Optional[str] = None) -> Job:
        """A new job; raises TooManyJobs when `max_batch_jobs` long jobs are already active."""
        job = Job(self, kind, priority, job_id)
        with self._cond:
            if priority == BATCH and sum(j.priority == BATCH for j in self._active.values()) >= self.max_batch_jobs:
                raise TooManyJobs(self.max_batch_jobs)
            if job_id is not None:
                old = self._tracked.get(job_id)
                if old is not None and old.state in ("queued", "running"):
                    raise JobIdInUse(job_id)
                self._tracked.pop(job_id, None)
                self._tracked[job_id] = job
                while len(self._tracked) > self._max_tracked:  # forget the oldest finished ones
                    oldest = next((k for k, j in self._tracked.items() if j.state not in ("queued", "running")), None)
                    if oldest is None:
                        break
                    del self._tracked[oldest]
            job.busy_on_arrival = sorted(j.kind for j in self._active.values() if j.priority != PREFETCH)
            self._active[id(job)] = job
            if priority != PREFETCH:
                self._cancel_prefetch()
        return job

    def finish(self, job: Job, state: str = "done") -> None:
        with self._cond:
            self._active.pop(id(job), None)
            if job.priority != PREFETCH:
                self._quiet_since = time.monotonic()
            job.state = "cancelled" if job.cancelled else state
            self._cond.notify_all()

    @contextmanager
    def job(self, kind: str, priority: int, job_id: Optional[str] = None):
        job = self.start(kind, priority, job_id)
        state = "failed"
        try:
            yield job
            state = "done"
        finally:
            self.finish(job, state)

    def tracked(self, job_id: str) -> Optional[Job]:
        with self._cond:
            return self._tracked.get(job_id)

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancel_event.set()
            self._cond.notify_all()

    def _busy(self) -> bool:  # with the lock held: real work (not encode-ahead) is active
        return any(j.priority != PREFETCH for j in self._active.values())

    def wait_idle(self, timeout: float, quiet: float = 0.0) -> bool:
        """Wait until no real work has been active for `quiet` seconds; False if that has not happened after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                if not self._busy() and now - self._quiet_since >= quiet:
                    return True
                if now >= deadline:
                    return False
                left = deadline - now if self._busy() else min(deadline - now, quiet - (now - self._quiet_since))
                self._cond.wait(max(left, 0.001))

    # ---------------------------------------------------------------------------------------- the slot
    def _cancel_prefetch(self) -> None:  # with the lock held
        for j in list(self._active.values()):
            if j.priority == PREFETCH:
                j.cancel_event.set()
        self._cond.notify_all()

    def _acquire(self, job: Job) -> None:
        with self._cond:
            if job.cancelled or (job.priority == PREFETCH and self._busy()):
                raise Cancelled()  # encode-ahead runs only while nothing else is active
            entry = (job.priority, next(self._arrival), job)
            heapq.heappush(self._queue, entry)
            job.queued_at.append(time.monotonic())
            if job.state == "queued":
                job.state = "running"
            seen = job.seen = self._long_batches_done
            while self._holder is not None or self._next() is not entry:
                self._cond.wait()
                if job.cancelled:
                    self._queue.remove(entry)
                    heapq.heapify(self._queue)
                    self._cond.notify_all()
                    raise Cancelled()
            self._queue.remove(entry)
            heapq.heapify(self._queue)
            long_waiting = any(p == BATCH for p, _, _ in self._queue)
            self._streak = self._streak + 1 if job.priority == INTERACTIVE and long_waiting else 0
            self._holder = job
            job.waited_batches += self._long_batches_done - seen

    def _next(self):  # with the lock held: the entry whose turn it is
        first = self._queue[0]
        if first[0] == INTERACTIVE and self._streak >= self.click_streak:
            waiting = [e for e in self._queue if e[0] == BATCH]
            # A long job's forced turn may not make a click wait for a second batch.
            fresh = all(j.seen == self._long_batches_done for p, _, j in self._queue if p == INTERACTIVE)
            if waiting and fresh:
                return min(waiting)
        return first

    def _release(self, job: Job) -> None:
        with self._cond:
            self._holder = None
            if job.priority != INTERACTIVE:
                self._long_batches_done += 1
            self._cond.notify_all()


class TooManyJobs(Exception):
    def __init__(self, limit: int):
        super().__init__(f"{limit} long jobs (propagations, scoring) are already running or queued on this server "
                         "(--conf max_long_jobs); try again when one has finished")


class JobIdInUse(Exception):
    def __init__(self, job_id: str):
        super().__init__(f"job {job_id!r} is still running; give each propagation its own job id")


class ScheduledPredictor:
    """A SamusPredictor whose model work goes through a job's slot, `batch_frames` frames at a time.

    `samus.propagate` calls only `encode_frames` and `predict_embedding`; everything else passes through.
    Cancellation takes effect at the next slot request (between two batches)."""

    def __init__(self, predictor, job: Job, batch_frames: int):
        self._predictor = predictor
        self._job = job
        self._batch = batch_frames

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def encode_frames(self, frames, keys, batch_size: int = 8):
        step = max(1, min(batch_size, self._batch))
        out = []
        for start in range(0, len(frames), step):
            with self._job.slot():
                out += self._predictor.encode_frames(frames[start:start + step], keys[start:start + step],
                                                     batch_size=step)
        return out

    def predict_embedding(self, *args, **kwargs):
        with self._job.slot():
            result = self._predictor.predict_embedding(*args, **kwargs)
        self._job.done += 1
        return result
