"""The Ray executor: one task per matrix on a Ray cluster.

Only the job description travels to a worker, which opens the checkpoints itself
(a shared folder, or the hub cache of its own node) and reads just that matrix, so
no model travels through the object store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.cache import SVDCache
from orthoscope.pipeline.executors.workers import check_workers
from orthoscope.pipeline.work import Job, JobResult, OnResult, Settings, analyse, make_cache
from orthoscope.sources import Checkpoint, open_checkpoint
from orthoscope.tuning import tune_process

RAY_BATCH = 64
_OPENED: dict = {}
_CACHES: dict[tuple, SVDCache | None] = {}


@dataclass(frozen=True)
class RayExecutor:
    """Ray tasks: joins the running Ray session, else `address` (or $RAY_ADDRESS), else starts
    a local cluster with `workers` CPUs (default: all).

    >>> RayExecutor(workers=2).describe()
    {'executor': 'ray', 'address': None, 'workers': 2}
    """

    address: str | None = None
    workers: int | None = None
    name: ClassVar[str] = "ray"

    def __post_init__(self) -> None:
        check_workers(self.workers)

    def device(self, requested: str) -> str:
        return str(torch.device(requested))  # the driver need not have the GPU its workers use

    def describe(self) -> dict:
        return {"executor": self.name, "address": self.address, "workers": self.workers}

    def run(self, plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult) -> None:
        """One Ray task per job; results are handed to `on_result` as they finish (any order).

        If a task fails, the others are cancelled and the error is raised; finished
        results are already stored, so a rerun resumes.
        """
        ray = _import_ray()
        if not ray.is_initialized():
            joining = self.address or os.environ.get("RAY_ADDRESS")
            ray.init(address=self.address, num_cpus=None if joining else (self.workers or os.cpu_count()),
                     include_dashboard=False, log_to_driver=False)
        settings = replace(settings, threads=settings.threads or 1)
        options = {"num_cpus": settings.threads}
        if settings.device.startswith("cuda"):
            options["num_gpus"] = 1
            settings = replace(settings, device="cuda")  # a worker sees only its own GPU, as cuda:0
        task = ray.remote(**options)(_worker_task)
        base, posts = locate(plan.base), tuple(locate(p) for p in plan.posts)
        pending = {task.remote(base, posts, job, settings): job for job in jobs}
        try:
            while pending:
                # batches keep each wait O(pending) rather than one wait per result
                done, _ = ray.wait(list(pending), num_returns=min(len(pending), RAY_BATCH), timeout=1.0)
                for ref in done:
                    on_result(pending.pop(ref), ray.get(ref))
        finally:
            for ref in pending:
                ray.cancel(ref)


def locate(ckpt: Checkpoint):
    """How a worker reopens `ckpt`: a picklable `ModelRef` (its local path when the worker sees it,
    else the hub id at the exact commit the driver resolved, so every worker reads what the driver
    fingerprinted). A model held in memory cannot be reopened elsewhere: one clear error."""
    return ckpt.reference()


def _worker_checkpoint(where, base: Checkpoint | None = None) -> Checkpoint:
    # a worker serves many tasks: parse headers once per checkpoint
    key = (repr(where), None if base is None else id(base))
    if key not in _OPENED:
        _OPENED[key] = open_checkpoint(where, base=base)
    return _OPENED[key]


def _worker_task(base, posts: tuple, job: Job, settings: Settings) -> JobResult:
    if settings.tuned:  # the driver opted in (the CLI does): its workers tune their own processes
        tune_process()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    key = (settings.cache, settings.cache_dir, settings.cache_limit_gib, settings.started)
    if key not in _CACHES:
        _CACHES[key] = make_cache(settings)
    opened = _worker_checkpoint(base)
    return analyse(opened, [_worker_checkpoint(p, opened) for p in posts], job, settings, _CACHES[key])


def _import_ray():
    try:
        import ray
    except ImportError:
        raise OrthoscopeError("--executor ray needs Ray: pip install 'orthoscope[ray]'") from None
    return ray
