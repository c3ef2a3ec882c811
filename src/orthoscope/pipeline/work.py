"""The per-matrix work every executor runs: read one matrix of the base and of every post, measure.

A job is one base matrix and every post; `analyse` reads them, hashes the bytes
as read (128-bit XXH3, 0.3 ms for a 4864x896 bfloat16 matrix), and measures only the posts whose
stored result was made from other bytes (`Job.known`). With two posts or more it
also computes `update_cos` for every pair (SPEC: <dW_1, dW_2>_F / (||dW_1|| ||dW_2||),
dW = W_p - W_b), again only where the stored value was made from other bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from orthoscope.architectures import MatrixRef, prefetch_matrix, read_matrix
from orthoscope.kernels.threads import check_cancelled, light
from orthoscope.metrics.registry import runs_svd
from orthoscope.pipeline.allocator import keep_freed_memory
from orthoscope.pipeline.cache import SVDCache, tensor_digest
from orthoscope.pipeline.checks import SkipMatrix
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from orthoscope.pipeline.precision import sized_dtype, small
from orthoscope.sources import Checkpoint
from orthoscope.tuning import process_tuned

ROW_BLOCK = 1 << 22  # elements per block when forming the pairs' inner products in float64


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
    threads: int | None = None  # torch threads inside a worker process
    floor_fallback: bool = False  # --precision auto: a float32 update below its noise floor is redone in float64
    tuned: bool = False  # the driver opted in to process-wide tuning (`orthoscope.tuning`): workers follow
    pair_draws: int | None = None  # the most sign draws p_pair may take (None: the stated-error rule)


@dataclass(frozen=True)
class Job:
    """One base matrix, the posts to read, and the hashes their stored results were made from.

    `known[i]` is the (base hash, post hash) of post i's stored result; `pairs` the
    post pairs (i < j) whose update_cos is wanted, `known_pairs[(i, j)]` the hashes
    (base, post i, post j) of the stored value.
    """

    ref: MatrixRef
    posts: tuple[int, ...]
    known: dict = field(default_factory=dict)
    pairs: tuple[tuple[int, int], ...] = ()
    known_pairs: dict = field(default_factory=dict)


@dataclass
class JobResult:
    """What a job gives back: new records per post (None: the stored one still holds), per pair, cache use."""

    posts: list[tuple[int, dict | None, dict | None]]  # (post index, record, spectra arrays)
    pairs: list[tuple[int, int, dict]] = field(default_factory=list)  # (i, j, {"update_cos", "hashes"})
    cache: dict = field(default_factory=dict)


OnResult = Callable[[Job, JobResult], None]


def content_hash(W: torch.Tensor) -> str:
    """128-bit XXH3 of the dtype, shape and exact bytes of `W` (hex): the cache's `tensor_digest`, so the
    base is hashed once for both. (XXH3 reads about 28 GB/s here, SHA-256 1.5 GB/s: it guards
    against changed or damaged bytes, not against crafted collisions.)

    >>> content_hash(torch.ones(2, 3)) == content_hash(torch.ones(2, 3))
    True
    >>> content_hash(torch.ones(2, 3)) == content_hash(torch.ones(3, 2))
    False
    """
    return tensor_digest(W)


def make_cache(settings: Settings) -> SVDCache | None:
    if not settings.cache:
        return None
    return SVDCache(settings.cache_dir, settings.cache_limit_gib, protect_since=settings.started)


PREFETCH_JOBS = 2  # jobs whose bytes are asked for ahead of the one being analysed


def prefetch(base: Checkpoint, posts: Sequence[Checkpoint], job: Job) -> None:
    """Ask the OS to start reading what `analyse` will read for `job` (returns at once; a hint only).

    Reading then overlaps the kernels of the jobs before it: from a cold page cache, a
    job's reads otherwise come in page faults, a few pages at a time.
    """
    prefetch_matrix(base, job.ref)
    for i in job.posts:
        prefetch_matrix(posts[i], job.ref)


def analyse(base: Checkpoint, posts: Sequence[Checkpoint], job: Job, settings: Settings,
            cache: SVDCache | None) -> JobResult:
    """Measure every post of `job` whose stored result is missing or was made from other bytes.

    The base is decomposed at most once (or its factors taken from `cache`), and only if
    some post needs it. In a block `kernels.threads.cancellable` it stops with `Cancelled` at its next post or
    kernel once cancelled (the local executor's lanes at Ctrl-C). Only in a process tuned for it
    (`orthoscope.tuning`, or a driver that was: `settings.tuned`) does a job change the allocator or torch's
    thread count.
    """
    with _thread_policy(job, settings):
        return _analyse(base, posts, job, settings, cache)


def _thread_policy(job: Job, settings: Settings):
    """In a tuned process: a small matrix's job on one thread; else torch at one thread between the
    kernels (kernels.threads) where scipy's eigensolver and SVDs run (the `quick` set has neither,
    and its element-wise work is faster on every thread). Untuned: torch as the caller set it."""
    if not (settings.tuned or process_tuned()):
        return contextlib.nullcontext()
    keep_freed_memory()  # once per process (Ray workers too): no page faults on every matrix's buffers
    if small(job.ref.shape):
        return light(1)
    return light() if runs_svd(settings.metrics) else contextlib.nullcontext()


def _analyse(base: Checkpoint, posts: Sequence[Checkpoint], job: Job, settings: Settings,
             cache: SVDCache | None) -> JobResult:
    before = cache.thread_counts() if cache is not None else None  # this thread's: other lanes' jobs count apart
    W_b = read_matrix(base, job.ref)
    h_b = content_hash(W_b)
    paired = {i for pair in job.pairs for i in pair}
    held: dict[int, torch.Tensor] = {}
    hashes: dict[int, str] = {}
    prepared, base_skip = None, None
    out: list[tuple[int, dict | None, dict | None]] = []
    for i in job.posts:
        check_cancelled()  # a cancelled lane stops before reading the next post (and at every kernel's entry)
        W_p = read_matrix(posts[i], job.ref)
        hashes[i] = h_p = content_hash(W_p)
        if i in paired:
            held[i] = W_p
        if job.known.get(i) == (h_b, h_p):
            out.append((i, None, None))
            continue
        stamp = {"hashes": {"base": h_b, "post": h_p}}
        if prepared is None and base_skip is None:
            if cache is not None:
                cache.remember(W_b, h_b)
            try:
                dtype = sized_dtype(W_b.shape, settings.dtype, settings.floor_fallback)
                prepared = prepare_base(W_b, dtype, torch.device(settings.device), cache)
            except SkipMatrix as skip:
                base_skip = str(skip)
            except torch.linalg.LinAlgError as error:
                base_skip = f"the decomposition of the base failed ({str(error).splitlines()[0]})"
        if base_skip is not None:
            out.append((i, {"skipped": base_skip, **stamp}, None))
            continue
        try:
            row, arrays = measure(prepared, W_p, job.ref.name, settings.seed, settings.metrics,
                                  floor_fallback=settings.floor_fallback, pair_draws=settings.pair_draws)
        except SkipMatrix as skip:
            out.append((i, {"skipped": str(skip), **stamp}, None))
            continue
        except torch.linalg.LinAlgError as error:  # finite entries whose squares overflow (|w| near 1e300)
            out.append((i, {"skipped": f"the decomposition failed ({str(error).splitlines()[0]})", **stamp}, None))
            continue
        out.append((i, {"metrics": row, **stamp}, arrays))
    check_cancelled()
    pairs = _pairs(job, W_b, h_b, held, hashes)
    stats = {}
    if cache is not None:
        after = cache.thread_counts()
        stats = {k: after[k] - before[k] for k in after}
    return JobResult(out, pairs, stats)


def _pairs(job: Job, W_b: torch.Tensor, h_b: str, held: dict[int, torch.Tensor],
           hashes: dict[int, str]) -> list[tuple[int, int, dict]]:
    todo = [(i, j) for i, j in job.pairs if job.known_pairs.get((i, j)) != (h_b, hashes[i], hashes[j])]
    if not todo:
        return []
    involved = sorted({i for pair in todo for i in pair})
    gram = update_gram(W_b, [held[i] for i in involved])
    where = {i: k for k, i in enumerate(involved)}
    results = []
    for i, j in todo:
        a, b = where[i], where[j]
        results.append((i, j, {"update_cos": _cosine(gram, a, b),
                               "hashes": {"base": h_b, "post_a": hashes[i], "post_b": hashes[j]}}))
    return results


def update_gram(W_b: torch.Tensor, posts: Sequence[torch.Tensor]) -> torch.Tensor:
    """G[i, j] = <W_i - W_b, W_j - W_b>_F in float64, formed a block of rows at a time.

    >>> W_b = torch.zeros(2, 2)
    >>> update_gram(W_b, [torch.eye(2), 2 * torch.eye(2)]).tolist()
    [[2.0, 4.0], [4.0, 8.0]]
    """
    rows, cols = W_b.shape
    step = max(1, ROW_BLOCK // max(cols, 1))
    gram = torch.zeros(len(posts), len(posts), dtype=torch.float64)
    for start in range(0, rows, step):
        base = W_b[start:start + step].to(torch.float64)
        D = torch.stack([(W[start:start + step].to(torch.float64) - base).reshape(-1) for W in posts])
        gram += D @ D.T
    return gram


def update_cos(gram: torch.Tensor, a: int, b: int) -> float:
    """<dW_a, dW_b> / (||dW_a|| ||dW_b||) from `update_gram`; NaN when either update is zero or not finite.

    >>> update_cos(torch.tensor([[4.0, -2.0], [-2.0, 1.0]], dtype=torch.float64), 0, 1)
    -1.0
    """
    norm = math.sqrt(float(gram[a, a]) * float(gram[b, b]))
    if not norm > 0 or not math.isfinite(norm):
        return math.nan
    return max(-1.0, min(1.0, float(gram[a, b]) / norm))


def _cosine(gram: torch.Tensor, a: int, b: int) -> float | None:
    value = update_cos(gram, a, b)
    return None if math.isnan(value) else value  # JSON has no NaN
