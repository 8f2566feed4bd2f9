"""Run server calls on one worker thread; hand results back on the caller's thread.

Slicer's scene and Qt widgets may only be touched on the main thread, so the worker only
does network and numpy work, and the module calls `poll()` from a Qt timer: callbacks run
inside `poll()`, on the thread that calls it.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor


class TaskRunner:
    def __init__(self):
        # One thread: requests stay in order and the server sees one client call at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samus-client")
        self._finished: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list = []  # (label, start time) of tasks not yet handed back

    def submit(self, fn, on_done=None, on_error=None, label: str = "") -> Future:
        """Runs fn() on the worker; on_done(result) / on_error(exception) run later in poll()."""
        entry = (label, time.monotonic())
        with self._lock:
            self._pending.append(entry)
        future = self._executor.submit(fn)
        future.add_done_callback(lambda f: self._finished.put((f, on_done, on_error, entry)))
        return future

    def poll(self) -> int:
        """Runs the callbacks of finished tasks; returns how many were handled."""
        handled = 0
        while True:
            try:
                future, on_done, on_error, entry = self._finished.get_nowait()
            except queue.Empty:
                return handled
            with self._lock:
                self._pending.remove(entry)
            handled += 1
            error = future.exception()
            if error is None:
                if on_done is not None:
                    on_done(future.result())
            elif on_error is not None:
                on_error(error)
            else:
                raise error

    def wait(self, timeout: float = 60.0) -> None:
        """Polls until nothing is pending (for scripts and tests; the GUI uses a timer)."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() > deadline:
                raise TimeoutError(f"tasks still running after {timeout:g} s: {self.current()}")
            self.poll()
            time.sleep(0.01)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def current(self) -> str:
        """Label and elapsed seconds of the oldest pending task ('' when idle)."""
        with self._lock:
            if not self._pending:
                return ""
            label, start = self._pending[0]
        return f"{label} ({time.monotonic() - start:.0f} s)"

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
