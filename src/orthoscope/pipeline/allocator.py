"""Keep freed matrix buffers in the process instead of handing them back to the OS (glibc only).

Every matrix pair allocates and frees buffers of the same sizes (the converted copies,
dW, the factors, blocks of the Gram matrix). By default glibc returns large freed blocks
to the OS (`munmap`, heap trimming), and the next matrix touches fresh pages again: one
minor page fault per 4 KiB (what keeping them buys: docs/benchmarks.md, "Process-wide tuning").
Applied only in a process that opted in (`orthoscope.tuning`; the CLI does).

The settings (`mallopt`): blocks up to 32 MiB (glibc's largest mmap threshold) come
from the heap, and up to 512 MiB of free heap is kept rather than trimmed. Peak memory
is unchanged; memory freed after the peak stays with the process until it exits. On
other C libraries (musl, macOS, Windows) this is a no-op.

>>> keep_freed_memory() in (True, False)
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 512 << 20
TOP_PAD = 64 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the settings once per process; True if glibc took them."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
