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

import os
import sys

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
