"""The local executor: every job in this process, in plan order, the next jobs' bytes read ahead.

With one lane the jobs run one after the other in the calling thread. With more
(`executors.workers`), that many jobs run at once on threads of this process, each with
torch at one thread and scipy's and numpy's BLAS held at one thread for the run
(`kernels.threads.lanes`); their results are handed to `on_result` from the calling thread,
so the run folder, progress and cache counts are written by one thread only. Every job's
numbers depend on its matrix alone (seeds per matrix: `pipeline.seeds`), so the table is
the same however many lanes ran it (each lane's kernels on one thread: the same as one matrix
at a time on one thread).

Ctrl-C (or any error of the run) with lanes: the jobs already finished are stored first (a
rerun skips them), the jobs not started are dropped, and the running ones are cancelled
(`kernels.threads.cancellable`): each stops before its next post or at its next kernel's entry,
so the wait is about one kernel, the longest under way (an SVD is never interrupted midway);
those that finished meanwhile are stored too, then the interrupt is raised.
A job's own error instead lets the running jobs finish their matrix and stores them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import ClassVar

from orthoscope.kernels import resolve_device
from orthoscope.kernels.threads import cancellable, one_thread
from orthoscope.kernels.threads import lanes as lane_threads
from orthoscope.pipeline.executors.workers import check_workers, free_memory, lanes_and_note
from orthoscope.pipeline.work import PREFETCH_JOBS, Job, OnResult, Settings, analyse, make_cache, prefetch


@dataclass(frozen=True)
class LocalExecutor:
    """Runs the jobs here, `workers` at once (None: chosen per run, `executors.workers.choose_lanes`).

    `describe()` records the lanes the last run used; `notes()` says when a given `workers` was lowered.

    >>> LocalExecutor().describe()
    {'executor': 'local', 'workers': None, 'lanes': None}
    """

    workers: int | None = None
    name: ClassVar[str] = "local"
    _used: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_workers(self.workers)

    def device(self, requested: str) -> str:
        return str(resolve_device(requested))  # this process computes: the device must exist here

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "lanes": self._used.get("lanes")}

    def notes(self) -> list[str]:
        """The last run's note, if an explicit `workers` was lowered (a GPU, the memory guard)."""
        return [self._used["note"]] if self._used.get("note") else []

    def run(self, plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult) -> None:
        lanes, note = lanes_and_note(self.workers, jobs, settings.device, settings.tuned, free_memory())
        self._used.update(lanes=lanes, note=note)
        cache = make_cache(settings)
        if lanes == 1:
            _one_by_one(plan, jobs, settings, on_result, cache)
        else:
            _side_by_side(plan, jobs, settings, on_result, cache, lanes)


def _one_by_one(plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult, cache) -> None:
    for ahead in jobs[:PREFETCH_JOBS]:
        prefetch(plan.base, plan.posts, ahead)
    for k, job in enumerate(jobs):
        if k + PREFETCH_JOBS < len(jobs):  # the next jobs' bytes come in while this one computes
            prefetch(plan.base, plan.posts, jobs[k + PREFETCH_JOBS])
        on_result(job, analyse(plan.base, plan.posts, job, settings, cache))


def _side_by_side(plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult, cache, lanes: int) -> None:
    """`lanes` jobs at once; each result handed over here as it finishes. A job's error is the run's: the
    jobs not started are dropped, the ones running finish their matrix and are stored, then it is raised.
    Ctrl-C or an error here: the finished jobs are stored, the running ones cancelled, then it is raised."""
    running: dict[Future, Job] = {}
    cancel = threading.Event()
    fetched = 0

    def start(pool: ThreadPoolExecutor, k: int) -> None:
        nonlocal fetched
        while fetched < min(k + 1 + PREFETCH_JOBS, len(jobs)):  # bytes asked for ahead of the jobs in flight
            prefetch(plan.base, plan.posts, jobs[fetched])
            fetched += 1
        running[pool.submit(_lane_job, cancel, plan, jobs[k], settings, cache)] = jobs[k]

    pool = ThreadPoolExecutor(lanes, thread_name_prefix="orthoscope-lane", initializer=one_thread)
    with lane_threads():
        try:
            queued = iter(range(len(jobs)))
            for k in itertools.islice(queued, lanes):
                start(pool, k)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in [f for f in running if f in done]:  # in the order they were started
                    job = running[future]  # left in `running` until stored: Ctrl-C before that stores it below
                    if future.exception() is not None:
                        running.pop(future)
                        _finish_running(running, on_result)
                        future.result()  # raises the job's error
                    if (k := next(queued, None)) is not None:
                        start(pool, k)
                    on_result(job, future.result())
                    running.pop(future)
        except BaseException:  # Ctrl-C while waiting or storing, a failed write: keep what is done, stop the rest
            cancel.set()
            _store_finished(running, on_result)  # before waiting on anything: a second Ctrl-C loses nothing
            pool.shutdown(wait=True, cancel_futures=True)  # each running job stops at its next kernel
            _store_finished(running, on_result)  # jobs that finished meanwhile
            raise
        finally:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)


def _lane_job(cancel: threading.Event, plan, job: Job, settings: Settings, cache):
    """One job on a lane, stopped at its next kernel once `cancel` is set (`kernels.threads.Cancelled`, left
    in its future and never read)."""
    with cancellable(cancel):
        return analyse(plan.base, plan.posts, job, settings, cache)


def _store_finished(running: dict[Future, Job], on_result: OnResult) -> None:
    """Hand every job that finished with a result to `on_result`, in the order they were started, each taken off
    `running` once stored (one whose storing was interrupted is handed over again: the run folder's writes
    replace); a failure to store ends this (the run's error is already on its way)."""
    for future, job in list(running.items()):
        if future.done() and not future.cancelled() and future.exception() is None:
            try:
                on_result(job, future.result())
            except Exception:
                return
            running.pop(future)


def _finish_running(running: dict[Future, Job], on_result: OnResult) -> None:
    """After a job failed: drop the jobs not started, let the running ones finish and store what they found
    (a rerun resumes it)."""
    for future in running:
        future.cancel()
    wait(running)
    for future, job in list(running.items()):
        running.pop(future)
        if not future.cancelled() and future.exception() is None:
            on_result(job, future.result())
