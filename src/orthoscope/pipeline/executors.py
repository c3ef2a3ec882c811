"""Where the per-matrix work runs: in this process, or as Ray tasks on a cluster.

A job is one base matrix and the posts still missing it; `analyse` turns it
into one result per post. The local executor calls it in a loop; the Ray
executor sends only the job description to a worker, which opens the
checkpoints itself (a shared folder, or the hub cache of its own node) and
reads just that matrix, so no model travels through the object store. Either
way every result comes back to the caller's `on_result`, which stores it, so
both executors fill the same resumable run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from orthoscope.architectures import MatrixRef, read_matrix
from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.cache import SVDCache
from orthoscope.pipeline.measure import SkipMatrix, measure, prepare_base
from orthoscope.pipeline.pairing import Plan
from orthoscope.sources import Checkpoint, open_checkpoint

EXECUTORS = ("local", "ray")
RAY_BATCH = 64
Result = tuple[int, dict, "dict | None"]  # post index, record ({"metrics"} or {"skipped"}), spectra arrays
OnResult = Callable[["Job", list[Result], dict], None]


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs besides the matrix (picklable: shipped to Ray tasks)."""

    dtype: torch.dtype
    device: str
    seed: int
    metrics: frozenset[str]
    cache: bool = False  # use the base-SVD cache
    cache_dir: str | None = None  # None: each process's default folder (its own $HOME or env)
    cache_limit_gib: float | None = None
    started: float | None = None  # cache entries used since then belong to this run: never evicted
    threads: int | None = None  # torch threads inside a Ray worker


@dataclass(frozen=True)
class Job:
    """One base matrix and the indices of the posts that still need it."""

    ref: MatrixRef
    posts: tuple[int, ...]


def make_cache(settings: Settings) -> SVDCache | None:
    if not settings.cache:
        return None
    return SVDCache(settings.cache_dir, settings.cache_limit_gib, protect_since=settings.started)


def analyse(base: Checkpoint, posts: Sequence[Checkpoint], job: Job, settings: Settings,
            cache: SVDCache | None) -> list[Result]:
    """Decompose the base matrix once (or take it from the cache) and measure every post of `job`."""
    device = torch.device(settings.device)
    try:
        prepared = prepare_base(read_matrix(base, job.ref), settings.dtype, device, cache)
    except SkipMatrix as skip:
        return [(i, {"skipped": str(skip)}, None) for i in job.posts]
    results: list[Result] = []
    for i in job.posts:
        try:
            row, arrays = measure(prepared, read_matrix(posts[i], job.ref), job.ref.name, settings.seed,
                                  settings.metrics)
        except SkipMatrix as skip:
            results.append((i, {"skipped": str(skip)}, None))
            continue
        results.append((i, {"metrics": row}, arrays))
    return results


def analyse_counting(base: Checkpoint, posts: Sequence[Checkpoint], job: Job, settings: Settings,
                     cache: SVDCache | None) -> tuple[list[Result], dict]:
    """`analyse`, and what it did to the cache (hits, misses, not stored), for the run's totals."""
    before = cache.stats() if cache else {}
    results = analyse(base, posts, job, settings, cache)
    if cache is None:
        return results, {}
    after = cache.stats()
    return results, {k: after[k] - before[k] for k in ("hits", "misses", "not_stored")}


def run_local(plan: Plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult) -> None:
    """Every job in this process, in plan order."""
    cache = make_cache(settings)
    for job in jobs:
        on_result(job, *analyse_counting(plan.base, plan.posts, job, settings, cache))


# ------------------------------------------------------------------------ Ray

Where = tuple[str, str, "str | None", str]  # local path, hub id or "", revision, fingerprint
_OPENED: dict[Where, Checkpoint] = {}
_CACHES: dict[tuple, SVDCache | None] = {}


def locate(ckpt: Checkpoint) -> Where:
    """How a worker opens `ckpt`: its local path when the worker sees it, else the hub id at the
    exact snapshot (commit) the driver resolved, so every worker reads what the driver fingerprinted."""
    local = Path(ckpt.spec).expanduser()
    if local.exists():
        return str(local.resolve()), "", None, ckpt.fingerprint()
    return str(ckpt.path), ckpt.spec.partition("@")[0], ckpt.path.name, ckpt.fingerprint()


def _worker_checkpoint(where: Where) -> Checkpoint:
    # a worker serves many tasks: parse headers once per checkpoint (and fingerprint, so a
    # rewritten folder on a long-lived cluster is opened again)
    if where not in _OPENED:
        path, hub_id, revision, _ = where
        _OPENED[where] = open_checkpoint(path) if Path(path).exists() or not hub_id else open_checkpoint(
            hub_id, revision)
    return _OPENED[where]


def _worker_task(base: Where, posts: tuple[Where, ...], job: Job, settings: Settings) -> tuple[list[Result], dict]:
    if settings.threads:
        torch.set_num_threads(settings.threads)
    key = (settings.cache, settings.cache_dir, settings.cache_limit_gib, settings.started)
    if key not in _CACHES:
        _CACHES[key] = make_cache(settings)
    return analyse_counting(_worker_checkpoint(base), [_worker_checkpoint(p) for p in posts], job, settings,
                            _CACHES[key])


def run_ray(plan: Plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult,
            address: str | None = None, workers: int | None = None) -> None:
    """One Ray task per job; results are handed to `on_result` as they finish (any order).

    Joins the running Ray session if there is one, else connects to `address`
    (or $RAY_ADDRESS), else starts a local cluster with `workers` CPUs (default: all).
    If a task fails, the others are cancelled and the error is raised; finished
    results are already stored, so a rerun resumes.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        joining = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, num_cpus=None if joining else (workers or os.cpu_count()),
                 include_dashboard=False, log_to_driver=False)
    options = {"num_cpus": settings.threads or 1}
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
                results, stats = ray.get(ref)
                on_result(pending.pop(ref), results, stats)
    finally:
        for ref in pending:
            ray.cancel(ref)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise OrthoscopeError("--executor ray needs Ray: pip install 'orthoscope[ray]'") from None
    return ray
