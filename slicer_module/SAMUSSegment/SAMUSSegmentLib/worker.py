"""Run server calls on one worker thread; hand results back on the caller's thread.

Slicer's scene and Qt widgets may only be touched on the main thread, so the worker only
does network and numpy work, and the module calls `poll()` from a Qt timer: callbacks run
inside `poll()`, on the thread that calls it.

Two facts about Slicer shape this:
- its main thread holds Python's lock while Qt is idle, so the worker only runs while the
  main thread is in Python and lets go of the lock. `poll(wait=...)` waits on the results
  queue while work is pending, which releases the lock for that long on every timer tick;
- Slicer must be able to exit while a request is still waiting for the server (timeouts are
  minutes long), so the worker is a daemon thread and `shutdown()` never waits for it.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future


class TaskRunner:
    def __init__(self, name: str = "samus-client"):
        # One thread: requests stay in order and the server sees one client call at a time.
        self._tasks: queue.Queue = queue.Queue()
        self._finished: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list = []  # (label, start time) of tasks not yet handed back
        self._stopped = False
        self.thread = threading.Thread(target=self._work, name=name, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled by shutdown()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to on_error in poll()
                future.set_exception(exc)

    def submit(self, fn, on_done=None, on_error=None, label: str = "") -> Future:
        """Runs fn() on the worker; on_done(result) / on_error(exception) run later in poll()."""
        entry = (label, time.monotonic())
        future: Future = Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError("the task runner was shut down")
            self._pending.append(entry)
        future.add_done_callback(lambda f: self._finished.put((f, on_done, on_error, entry)))
        self._tasks.put((future, fn))
        return future

    def poll(self, wait: float = 0.0) -> int:
        """Runs the callbacks of finished tasks; returns how many were handled.

        With `wait` > 0 and work pending, blocks up to that many seconds for the first result,
        giving the worker the interpreter lock meanwhile; returns as soon as a result arrives.
        """
        handled = 0
        block = wait > 0 and self.busy
        while True:
            try:
                item = self._finished.get(timeout=wait) if block else self._finished.get_nowait()
            except queue.Empty:
                return handled
            block = False
            future, on_done, on_error, entry = item
            with self._lock:
                if entry in self._pending:
                    self._pending.remove(entry)
                stopped = self._stopped
            if stopped or future.cancelled():
                continue  # after shutdown nobody is left to take results
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
            self.poll(wait=0.05)

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
        """Stops the worker: queued tasks are cancelled, a running one is abandoned (no callbacks).

        Returns at once; the daemon thread ends after its current task, or with the process.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._pending.clear()
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self._tasks.put(None)
