"""Two thread counts in one process: every thread for the kernels, one for the work between them.

On CPU, the element-wise work between two kernels (conversions, differences, norms, the r x r
statistics of D) is memory-bound and short. Run on torch's full OpenMP team it gains
little, and it loses a lot whenever another thread pool is still busy-waiting on a core
(OpenBLAS's workers after scipy's Gram and eigensolve): a thread of the team that lands on
that core holds every barrier of the region for a scheduler slice. With OpenBLAS's wait
shortened (`kernels.svd.BLAS_SPIN_LOG2_CYCLES`) the policy stays as the guard for a pool
that still waits long (a user's OPENBLAS_THREAD_TIMEOUT, another BLAS); what it measured
to buy is in docs/benchmarks.md ("Process-wide tuning").

`light()` is entered once per job (`pipeline.work.analyse`) in a process that opted in to
process-wide tuning (`orthoscope.tuning`): torch runs one thread. Each
kernel runs under `full_threads()` (the decorator `kernel` says so), which gives torch back the
count it had when `light()` was entered. Outside `light()` both do nothing, so calling a
kernel directly behaves as before.

Jobs side by side (the local executor's lanes, `lanes()`): each lane is a thread of this process
whose torch runs one thread (`one_thread`, its pool's initializer), and scipy's and numpy's BLAS
are held at one thread for the whole run, so a kernel's per-call BLAS limit (`blas_limit`)
does nothing there and two lanes never set the process-wide pool size against each other.
`lanes()` may be entered by several threads at once (two runs in one process): the first entry
sets the counts, the last exit gives them back.

A job may be stopped between kernels (`cancellable`): every kernel's entry (`full_threads`) checks
its thread's cancel event and raises `Cancelled`; a kernel already running (an SVD) is never
interrupted, so a cancelled job stops within one kernel.

>>> import torch
>>> before = torch.get_num_threads()
>>> with light():
...     inside = torch.get_num_threads()
...     with full_threads():
...         kernel_threads = torch.get_num_threads()
>>> inside, kernel_threads == before, torch.get_num_threads() == before
(1, True, True)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from orthoscope.tuning import process_tuned

F = TypeVar("F", bound=Callable)

_FULL: contextvars.ContextVar[int | None] = contextvars.ContextVar("orthoscope_full_threads", default=None)
_BLAS_HELD = False  # True while `lanes()` holds the BLAS pools at one thread for the whole process
_LANES_LOCK = threading.Lock()  # guards the two below: `lanes()` entered by several threads at once
_lanes_depth = 0  # `lanes()` blocks open now, in any thread
_lanes_restore: contextlib.ExitStack | None = None  # gives back the counts the first entry found
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("orthoscope_cancel", default=None)


class Cancelled(BaseException):
    """A job stopped at a kernel's entry because its cancel event was set (`cancellable`). A BaseException, as
    KeyboardInterrupt is: no handler of a job's errors (skips, failed decompositions) may take it for a result;
    the executor that set the event swallows it."""


@contextlib.contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Kernels called in this block (in this thread) raise `Cancelled` at their entry once `event` is set.

    >>> stop = threading.Event()
    >>> with cancellable(stop):
    ...     check_cancelled()  # not set: nothing happens
    ...     stop.set()
    ...     try:
    ...         check_cancelled()
    ...     except Cancelled:
    ...         print("stopped")
    stopped
    """
    token = _CANCEL.set(event)
    try:
        yield
    finally:
        _CANCEL.reset(token)


def check_cancelled() -> None:
    """Raise `Cancelled` if this thread's job was cancelled (`cancellable`); a cheap check, else nothing."""
    event = _CANCEL.get()
    if event is not None and event.is_set():
        raise Cancelled


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch at `count` intra-op threads, then restore the count it had."""
    before = torch.get_num_threads()
    if before == count:  # nothing to switch (a small job on one thread)
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def light(full: int | None = None) -> Iterator[None]:
    """Torch at one thread for the block; kernels inside (`full_threads`) get the count it had before
    (at most `full`: `light(1)` runs a small matrix's whole job on one thread, with no switch at all)."""
    before = torch.get_num_threads()
    token = _FULL.set(before if full is None else max(1, min(full, before)))
    try:
        with torch_threads(1):
            yield
    finally:
        _FULL.reset(token)


def full_count() -> int:
    """The thread count a kernel may use here: the one saved by `light()`, else torch's current one."""
    count = _FULL.get()
    return count if count is not None else torch.get_num_threads()


@contextlib.contextmanager
def full_threads() -> Iterator[None]:
    """Torch at the full count for the block (inside `light()`), then back to one thread. A kernel's entry:
    raises `Cancelled` first if this thread's job was cancelled (`cancellable`)."""
    check_cancelled()
    count = _FULL.get()
    with torch_threads(count) if count is not None else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def small_model_threads() -> Iterator[None]:
    """A context for a tiny model's whole job (the demo): torch and the BLAS pools (scipy's, numpy's) at one
    thread in a tuned process (`orthoscope.tuning`), where a second thread only waits on a shared core;
    elsewhere nothing changes. Both counts are restored afterwards."""
    if not process_tuned():
        yield
        return
    import scipy.linalg  # noqa: F401 (loads scipy's BLAS now, so that the limit reaches it)
    import threadpoolctl

    with torch_threads(1), threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def one_thread() -> None:
    """Torch at one thread in the calling thread (a lane's pool initializer: each thread keeps its own count;
    without it a new thread's OpenMP and MKL would start their default teams beside the other lanes)."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def lanes() -> Iterator[None]:
    """A block whose jobs run side by side on threads of this process, each at one thread (`one_thread`):
    scipy's and numpy's BLAS held at one thread throughout (`blas_limit` then does nothing), and torch's
    count, which every `one_thread` also sets process-wide, given back afterwards. Re-entrant, from any
    thread: blocks that overlap (two runs in one process) share one hold; the first entry sets the
    counts, the last exit gives back the ones the first found.

    >>> import scipy.linalg, threadpoolctl
    >>> before = torch.get_num_threads(), threadpoolctl.threadpool_info()
    >>> with lanes():
    ...     held = {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}
    >>> held <= {1}, (torch.get_num_threads(), threadpoolctl.threadpool_info()) == before
    (True, True)
    """
    _enter_lanes()
    try:
        yield
    finally:
        _exit_lanes()


def _enter_lanes() -> None:
    global _BLAS_HELD, _lanes_depth, _lanes_restore
    from orthoscope.kernels.svd import scipy_blas_controller  # loads scipy's BLAS now, so the limit reaches it

    with _LANES_LOCK:
        if _lanes_depth == 0:
            restore = contextlib.ExitStack()
            restore.callback(torch.set_num_threads, torch.get_num_threads())
            _release_blas_control()
            limiter = scipy_blas_controller().limit(limits=1, user_api="blas")  # sets the counts now, not entered
            _release_blas_control()
            restore.callback(_release_blas_control)
            restore.callback(limiter.restore_original_limits)
            restore.callback(_release_blas_control)
            _lanes_restore, _BLAS_HELD = restore, True
        _lanes_depth += 1


def _exit_lanes() -> None:
    global _BLAS_HELD, _lanes_depth, _lanes_restore
    with _LANES_LOCK:
        _lanes_depth -= 1
        if _lanes_depth == 0:
            restore, _lanes_restore, _BLAS_HELD = _lanes_restore, None, False
            restore.close()  # the BLAS pools' counts (control released around it), then torch's


def _release_blas_control() -> None:
    """Let any thread set OpenBLAS's pool size next. threadpoolctl lets only the thread that set it first change
    it (others silently do nothing) and frees it when that thread's count of entered limiters drops to zero; the
    `lanes()` hold is set and given back by a limiter never entered as a context (its first entry and last exit
    may run on different threads, whose counts would then never balance), so control is released by hand."""
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def blas_limit(controller, count: int):
    """`controller.limit(limits=count, user_api="blas")` for one kernel call; nothing while `lanes()` holds the
    pools at one thread (the per-call limit enters and exits process-wide settings)."""
    if _BLAS_HELD:
        return contextlib.nullcontext()
    return controller.limit(limits=count, user_api="blas")


def kernel(function: F) -> F:
    """Decorator: run `function` under `full_threads()`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with full_threads():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
