"""One background thread that runs the monitor's steps in order, holding at most `pending` of them.

`Worker.reserve()` takes a slot (it waits while `pending` steps are queued or running: that is
the bound on the snapshots held in memory), `submit(job)` queues the job and gives its
`concurrent.futures.Future`, and the slot is given back when the job is done. `wait()` returns
once every queued job is done; `close()` also ends the thread (a later `submit` starts another).
In a process tuned for speed (`orthoscope.tuning`) the thread runs torch at one thread, so that it
takes an idle core rather than competing with the training's threads.

The worker's Python (the step's summary, the writes) holds the GIL, which the training thread
takes back after every torch call; at the interpreter's default switch interval (5 ms) it waits
that long each time, so a small model's training, all short calls, would crawl. While a job
runs the switch interval is `SWITCH_INTERVAL` (restored when the queue is empty).

>>> worker = Worker(pending=1)
>>> worker.reserve()
>>> future = worker.submit(lambda: 6 * 7)
>>> worker.close(); future.result()
42
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from orthoscope.kernels.threads import torch_threads
from orthoscope.pipeline.filters import positive_int
from orthoscope.tuning import process_tuned

SWITCH_INTERVAL = 1e-4
"""Seconds a thread holds the GIL while another waits for it, while the worker has a job."""


class Worker:
    """A queue of jobs run one after the other by one daemon thread (see the module's docstring)."""

    def __init__(self, pending: int = 2, name: str = "orthoscope-monitor"):
        if not positive_int(pending):
            raise ValueError(f"pending must be a positive integer, not {pending!r}")
        self.slots = threading.BoundedSemaphore(pending)
        self.jobs: queue.Queue = queue.Queue()
        self.name = name
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        atexit.register(self.close)  # a monitor left open still writes its last steps at exit

    def reserve(self) -> None:
        """Take a slot for the next job; waits while `pending` jobs are queued or running."""
        self.slots.acquire()

    def release(self) -> None:
        """Give back a slot taken by `reserve` for a job that will not be submitted."""
        self.slots.release()

    def submit(self, job: Callable[[], Any]) -> Future:
        """Queue `job` (after `reserve`); its Future holds what it returns, or what it raised."""
        future: Future = Future()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
            self.jobs.put((future, job))
        return future

    def wait(self) -> None:
        """Return once every submitted job is done."""
        self.jobs.join()

    def close(self) -> None:
        """Wait for every submitted job, then end the thread."""
        with self.lock:
            thread, self.thread = self.thread, None
            if thread is None:
                return
            self.jobs.put(None)
        thread.join()

    def _run(self) -> None:
        with torch_threads(1) if process_tuned() else contextlib.nullcontext():
            while True:
                item = self.jobs.get()
                if item is None:
                    self.jobs.task_done()
                    return
                future, job = item
                before = sys.getswitchinterval()
                sys.setswitchinterval(min(before, SWITCH_INTERVAL))
                try:
                    if future.set_running_or_notify_cancel():
                        future.set_result(job())
                except BaseException as error:  # noqa: BLE001 - the Future carries it to whoever asks
                    future.set_exception(error)
                finally:
                    sys.setswitchinterval(before)
                    del item, job
                    self.slots.release()
                    self.jobs.task_done()
