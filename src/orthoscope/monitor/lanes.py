"""A step's matrices analysed on several threads at once, when the worker drains its queue at close.

While the caller trains, the worker process analyses one matrix after another on one thread (it
runs on the CPU the training leaves idle). Once the caller waits in `close()` nothing of it runs,
so the matrices still to analyse (the rest of the current step, then every queued step) go to
one thread per core (`drain_lanes`), each with torch at one thread (set in that thread: a thread
started without it may get torch's default team) and scipy's and numpy's BLAS held at one thread for the
whole drain (`kernels.threads.lanes`: no kernel call then sets the process-wide pool size, which two lanes
would otherwise set against each other, and the count the process had is given back afterwards).
`Lanes.results` gives the results in the jobs' order whatever the order they finish in, so the step's
rows, summary and writes are those of one lane; each job reads the base's held factors through its
lane's view of the cache (`_LaneCache`: the shared cache under one lock, hits and misses counted per
lane), so the counts a step reports are its own.

>>> import torch
>>> lanes = Lanes(lambda: 2)
>>> squares = lanes.results([1, 2, 3], lambda job, cache: (job * job, torch.get_num_threads()), None)
>>> [(job, result) for job, result in squares], lanes.used
([(1, (1, 1)), (2, (4, 1)), (3, (9, 1))], 2)
>>> lanes.close()
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any, TypeVar

import torch

from orthoscope.kernels.threads import lanes as lane_threads
from orthoscope.kernels.threads import one_thread

Job = TypeVar("Job")
Work = Callable[[Any, Any], Any]


LANES_ENV = "ORTHOSCOPE_MONITOR_LANES"
"""How many threads a drain uses, if set (1: none beside the worker's own; default: the cores)."""


def drain_lanes() -> int:
    """How many threads a drain uses: $ORTHOSCOPE_MONITOR_LANES if it is a positive integer, else the cores this
    process may run on.

    >>> drain_lanes() >= 1
    True
    """
    wanted = os.environ.get(LANES_ENV, "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Lanes:
    """Runs jobs on one thread, or on `wanted()` threads when that is over 1 (asked before each job)."""

    def __init__(self, wanted: Callable[[], int]):
        self.wanted = wanted
        self.pool: ThreadPoolExecutor | None = None
        self.size = 0
        self.used = 1  # the most lanes the last `results` used

    def results(self, jobs: Iterable[Job], work: Work, cache: Any) -> Iterator[tuple[Job, Any]]:
        """(job, work(job, cache)) for each job, in order. While `wanted()` is 1 each runs here, on this
        thread; from the first job it is more, that job and every later one run on that many lanes."""
        jobs = list(jobs)
        self.used = 1
        for index, job in enumerate(jobs):
            count = min(self.wanted(), len(jobs) - index)
            if count > 1:
                yield from self._parallel(jobs[index:], work, cache, count)
                return
            yield job, work(job, cache)

    def _parallel(self, jobs: list, work: Work, cache: Any, count: int) -> Iterator[tuple[Any, Any]]:
        self.used = count
        pool = self._pool(count)
        shared = _Shared(cache)
        with lane_threads():
            futures = [pool.submit(_in_lane, work, job, shared) for job in jobs]
            try:
                for job, future in zip(jobs, futures):
                    yield job, future.result()
            finally:  # a failed job (or a caller that stops): no lane goes on working on this step
                for future in futures:
                    future.cancel()
                wait_for(futures)

    def _pool(self, count: int) -> ThreadPoolExecutor:
        if self.pool is None or self.size < count:
            self.close()
            self.pool, self.size = ThreadPoolExecutor(count, "orthoscope-monitor-lane", one_thread), count
        return self.pool

    def close(self) -> None:
        """End the lanes' threads (a later drain starts them again)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool, self.size = None, 0


_LOCAL = threading.local()


class _Shared:
    """A cache that the lanes share: each lane gets its own view (`lane()`), all of them behind one lock."""

    def __init__(self, cache: Any):
        self.cache, self.lock = cache, threading.Lock()

    def lane(self) -> Any:
        view = getattr(_LOCAL, "view", None)
        if view is None or view.shared is not self:
            view = _LOCAL.view = _LaneCache(self) if self.cache is not None else None
        return view


def _in_lane(work: Work, job: Any, shared: _Shared) -> Any:
    return work(job, shared.lane())


class _LaneCache:
    """One lane's view of the shared cache: its calls under the shared lock, its own hits, misses and entries
    not stored (`stats`), and its own hash remembered for the next `key` (`SVDCache.remember`)."""

    COUNTS = ("hits", "misses", "not_stored")

    def __init__(self, shared: _Shared):
        self.shared = shared
        self.counts = dict.fromkeys(self.COUNTS, 0)
        self.known: tuple | None = None

    def remember(self, W: torch.Tensor, digest: str) -> None:
        self.known = (W, digest)

    def key(self, W: torch.Tensor, dtype: torch.dtype) -> str:
        known, self.known = self.known, None
        with self.shared.lock:
            if known is not None:
                self.shared.cache.remember(*known)
            return self.shared.cache.key(W, dtype)

    def get(self, key: str, device: Any = "cpu") -> Any:
        return self._counted(self.shared.cache.get, key, device)

    def put(self, key: str, factors: Any) -> bool:
        return self._counted(self.shared.cache.put, key, factors)

    def stats(self) -> dict:
        with self.shared.lock:
            stats = self.shared.cache.stats()
        return {**stats, **self.counts}

    def _counted(self, call: Callable, *args: Any) -> Any:
        cache = self.shared.cache
        with self.shared.lock:
            before = {name: getattr(cache, name) for name in self.COUNTS}
            out = call(*args)
            for name in self.COUNTS:
                self.counts[name] += getattr(cache, name) - before[name]
        return out

    def __getattr__(self, name: str) -> Any:  # anything else (settings, folder) is the shared cache's
        return getattr(self.shared.cache, name)
