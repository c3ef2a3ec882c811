"""A step's matrices analysed on several threads at once: a monitor in line, or its worker's drain at close.

In line (`Monitor(background=False)`, or "auto" where the training takes every core) the training waits for
the step anyway, so its matrices run on one thread per core, as below.

While the caller trains, the worker process analyses one matrix after another on one thread (it
runs on the CPU the training leaves idle). Once the caller waits in `close()` nothing of it runs,
so the matrices still to analyse (the rest of the current step, then every queued step) go to
one thread per core (`drain_lanes`: on a CPU, and no more than the compare executor's memory guard
allows), each with torch at one thread (set in that thread: a thread started without it may get torch's
default team) and scipy's and numpy's BLAS held at one thread for the whole drain (`kernels.threads.lanes`:
no kernel call then sets the process-wide pool size, which two lanes would otherwise set against each
other, and the count the process had is given back afterwards). `Lanes.results` gives the results in the
jobs' order whatever the order they finish in, so the step's rows, summary and writes are those of one
lane. The lanes share the series' cache, which is thread-safe and counts each thread's hits and misses
apart (`SVDCache.thread_counts`: what a job reports), so the counts a step reports are its own.

>>> import torch
>>> lanes = Lanes(lambda jobs: 2)
>>> squares = lanes.results([1, 2, 3], lambda job, cache: (job * job, torch.get_num_threads()), None)
>>> [(job, result) for job, result in squares], lanes.used
([(1, (1, 1)), (2, (4, 1)), (3, (9, 1))], 2)
>>> lanes.close()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any, TypeVar

from orthoscope.kernels.threads import lanes as lane_threads
from orthoscope.kernels.threads import one_thread
from orthoscope.pipeline.executors.workers import free_memory, job_bytes, memory_lanes, usable_cores

Job = TypeVar("Job")
Work = Callable[[Any, Any], Any]

log = logging.getLogger("orthoscope.monitor")

LANES_ENV = "ORTHOSCOPE_MONITOR_LANES"
"""How many threads an in-line step or a drain uses at most, if set (1: one after another; default: the cores)."""

_WARNED: set[str] = set()  # the values of LANES_ENV already warned about (once each, in the worker's log)


def drain_lanes(device: str, jobs: Sequence) -> int:
    """How many threads a drain of `jobs` uses: one on a GPU (the training's model is still on it); on a CPU
    $ORTHOSCOPE_MONITOR_LANES (a positive integer) or the cores this process may run on, at most the jobs, and
    at most as many working sets of the largest job (`job_bytes`) as fit in the compare executor's share of
    the free memory (`memory_lanes`, `free_memory`).

    >>> from types import SimpleNamespace as Job
    >>> jobs = [Job(ref=Job(shape=(64, 64)), posts=(0,))] * 3
    >>> drain_lanes("cpu", jobs) >= 1, drain_lanes("cuda:0", jobs)
    (True, 1)
    """
    if not str(device).startswith("cpu"):
        return 1
    lanes = min(_wanted(), len(jobs))
    if lanes <= 1:
        return 1
    return memory_lanes(lanes, max(job_bytes(job, len(job.posts)) for job in jobs), free_memory())


def _wanted() -> int:
    """$ORTHOSCOPE_MONITOR_LANES if set to a positive integer (anything else: a warning, once, and the default),
    else the cores this process may run on (at most its CPU quota)."""
    wanted = os.environ.get(LANES_ENV, "").strip()
    if wanted:
        try:
            if int(wanted) > 0:
                return int(wanted)
        except ValueError:
            pass
        if wanted not in _WARNED:
            _WARNED.add(wanted)
            log.warning("orthoscope: %s=%r is not a positive integer: the monitor uses the default "
                        "(a thread per core)", LANES_ENV, wanted)
    return usable_cores()


class Lanes:
    """Runs jobs on one thread, or on `wanted(jobs left)` threads when that is over 1 (asked before each job)."""

    def __init__(self, wanted: Callable[[list], int]):
        self.wanted = wanted
        self.pool: ThreadPoolExecutor | None = None
        self.size = 0
        self.used = 1  # the most lanes the last `results` used

    def results(self, jobs: Iterable[Job], work: Work, cache: Any) -> Iterator[tuple[Job, Any]]:
        """(job, work(job, cache)) for each job, in order. While `wanted(jobs left)` is 1 each runs here, on this
        thread; from the first job it is more, that job and every later one run on that many lanes."""
        jobs = list(jobs)
        self.used = 1
        for index, job in enumerate(jobs):
            count = min(self.wanted(jobs[index:]), len(jobs) - index)
            if count > 1:
                yield from self._parallel(jobs[index:], work, cache, count)
                return
            yield job, work(job, cache)

    def _parallel(self, jobs: list, work: Work, cache: Any, count: int) -> Iterator[tuple[Any, Any]]:
        self.used = count
        pool = self._pool(count)
        with lane_threads():
            futures = [pool.submit(work, job, cache) for job in jobs]
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
