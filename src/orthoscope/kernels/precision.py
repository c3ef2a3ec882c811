"""Which metrics may be computed from float32 factors (`--precision auto`).

A metric's registry record (`orthoscope.metrics.registry`) says f32_safe only if
tests/kernels/test_precision.py shows it agrees with float64 within 1e-4 on an
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
