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

The CLI also holds Python's full garbage collections while a command imports its modules
(`hold_collection`, at entry) and settles them once it has (`settle_collection`): torch,
pandas and scipy leave ~300k long-lived objects, and each full collection traverses them all
(about 0.1 s each, several during the imports and more while the interpreter shuts down).

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

import gc
import os
import sys

ENV = "ORTHOSCOPE_TUNE"
_ENABLED: bool | None = None  # None: ORTHOSCOPE_TUNE decides
HELD_FULL = 1 << 30  # young collections between full ones while held: never, in practice
_held: tuple[int, int, int] | None = None  # the collector's thresholds before `hold_collection`


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


def hold_collection() -> None:
    """Hold Python's full garbage collections (young ones go on) until `settle_collection`: the CLI calls
    this at entry, before a command imports torch, pandas and scipy (tests/test_cli_startup.py)."""
    global _held
    if _held is None:
        _held = gc.get_threshold()
        gc.set_threshold(_held[0], _held[1], HELD_FULL)


def settle_collection() -> None:
    """Move every object that exists now (the modules a command imported, mostly) out of the collector's
    view for good (`gc.freeze`) and let full collections resume: called once a command has imported what it
    needs, and at exit (the interpreter's shutdown then does not traverse them). Later objects are collected
    as usual."""
    global _held
    gc.freeze()
    if _held is not None:
        gc.set_threshold(*_held)
        _held = None
