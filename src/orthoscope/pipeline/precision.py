"""Which float the SVDs run in: `--precision` (auto, f32, f64), per matrix size, and which columns float32 may give.

A metric's registry record (`orthoscope.metrics.registry`) says f32_safe only if
tests/pipeline/test_precision.py shows it agrees with float64 within 1e-4 on an
LLM-like pair (power-law spectrum with a dense tail), on the planted pair and on the lab
family. Every column now is: the rotation columns do their r x r work in float64 with
one gauge tolerance in every precision (`metrics.rotations.GAUGE_RTOL`), and the
principal angles read top-k subspaces refined in float64 (`kernels.svd.top_subspaces`)
rather than the float32 vectors, whose top-k span moves where the spectrum is dense.
A metric added later starts float64-only until the test shows otherwise.
"""

from __future__ import annotations

import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.metrics.registry import f32_safe

F32_SAFE = f32_safe()

PRECISIONS = ("auto", "f32", "f64")
SMALL_RANK = 192  # short side up to which `--precision auto` decomposes in float64, on one thread


def resolve_precision(precision: str, metrics: frozenset[str] | set[str]) -> torch.dtype:
    """float32 or float64 for the SVDs: `auto` picks float32 only if every asked metric is safe.

    >>> resolve_precision("auto", {"a_geo", "sym_frac"})
    torch.float32
    >>> resolve_precision("auto", {"a_geo", "rot"})
    torch.float32
    >>> resolve_precision("f64", {"a_geo"})
    torch.float64
    """
    if precision not in PRECISIONS:
        raise OrthoscopeError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
    if precision == "f32" or (precision == "auto" and set(metrics) <= F32_SAFE):
        return torch.float32
    return torch.float64


def small(shape: tuple[int, ...] | torch.Size) -> bool:
    """Whether a matrix is small enough for the small-matrix route (short side at most SMALL_RANK).

    There one float64 SVD costs no more than a float32 SVD and its float64 refinement of the
    top subspaces (which for r <= TOP_K + 16 is a second SVD of the whole matrix), and a
    second thread costs more in wake-ups than it saves (docs/benchmarks.md, small-matrix route).

    >>> small((96, 288)), small((192, 576)), small((576, 1536))
    (True, True, False)
    """
    return min(shape) <= SMALL_RANK


def sized_dtype(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, auto: bool) -> torch.dtype:
    """The SVD dtype for one matrix: float64 for a small one under `--precision auto`, else `dtype`.

    Exact in float64 once: no refinement, no floor fallback, the numbers of `--precision f64`.

    >>> sized_dtype((96, 96), torch.float32, True), sized_dtype((896, 896), torch.float32, True)
    (torch.float64, torch.float32)
    >>> sized_dtype((96, 96), torch.float32, False)
    torch.float32
    """
    return torch.float64 if auto and small(shape) else dtype


def reportable(column: str, metrics: frozenset[str], dtype: torch.dtype) -> bool:
    """A column computed on the way is kept unless float32 is not accurate enough for it and nobody asked for it.

    >>> reportable("a_geo", frozenset({"incons"}), torch.float32)
    True
    """
    return column in metrics or dtype == torch.float64 or column in F32_SAFE
