"""Process-wide tuning, opt-in: what a whole process may change for speed, and only when asked.

Three settings change the process rather than one call, so the library applies them only
when the process opts in (the `orthoscope` command does at its entry; Ray workers follow
the driver; a notebook may call `tune_process()` or set ORTHOSCOPE_TUNE=1):

- glibc's allocator keeps freed buffers (`pipeline.allocator.keep_freed_memory`), so the
  next matrix's buffers come without page faults;
- OpenBLAS's worker threads (scipy's, numpy's) spin briefly after a call
  (`kernels.svd.BLAS_SPIN_LOG2_CYCLES`), so they leave the cores to the torch work after
  an eigensolve; the pool is restarted once to take the setting;
- torch's thread count switches per job (`kernels.threads.light`): one thread between the
  kernels, every thread inside them, one thread for a small matrix's whole job.

A fourth acts on Python's garbage collector, and the CLI applies it itself: no collection while
a command imports its modules (`importing`), whose objects are then frozen, and everything frozen
as the command returns (`freeze_for_exit`): torch, pandas and scipy leave hundreds of thousands
of long-lived objects, which every full collection during the imports and the interpreter's
shutdown would traverse (docs/benchmarks.md, the tiny pair's whole CLI process).

Without the opt-in, `orthoscope.compare(...)` leaves torch's thread count, the BLAS
settings and the allocator as it found them. This module imports nothing heavy (the
CLI's help stays torch-free).

>>> import os
>>> was = _ENABLED
>>> tune_process(False); process_tuned()
False
>>> tune_process(None)  # back to the environment's word
>>> process_tuned() == (os.environ.get(ENV, "") not in ("", "0"))
True
>>> tune_process(was)
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator

ENV = "ORTHOSCOPE_TUNE"
_ENABLED: bool | None = None  # None: ORTHOSCOPE_TUNE decides


def tune_process(enabled: bool | None = True) -> None:
    """Opt this process in (or out with False; None defers to $ORTHOSCOPE_TUNE) to the tuning above.

    The settings themselves are applied where they act: the allocator and thread policy when
    the pipeline runs, OpenBLAS's wait when scipy's LAPACK is first used (or now, if it is loaded).
    """
    global _ENABLED
    _ENABLED = enabled
    svd = sys.modules.get("orthoscope.kernels.svd")
    if process_tuned() and svd is not None:
        svd.apply_blas_tuning()


def process_tuned() -> bool:
    """Whether this process opted in: `tune_process()` was called, else ORTHOSCOPE_TUNE is set and not 0."""
    if _ENABLED is not None:
        return _ENABLED
    return os.environ.get(ENV, "") not in ("", "0")


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """In a tuned process that has not loaded torch yet: no garbage collection while the block imports (a
    command's torch, pandas, scipy), then every object that exists is moved out of the collector's view for
    good (`gc.freeze`: module-level objects live until exit anyway) and collection resumes as it was.
    Untuned, or torch loaded already (a test session, a notebook: little left to import, and garbage of theirs
    would be frozen with it), nothing changes.

    >>> with importing():
    ...     import json
    >>> gc.isenabled()
    True
    """
    if not process_tuned() or "torch" in sys.modules:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def freeze_for_exit() -> None:
    """In a tuned process: move every object out of the collector's view (`gc.freeze`), so the interpreter's
    shutdown does not traverse them (the CLI, as a command returns)."""
    if process_tuned():
        gc.freeze()
