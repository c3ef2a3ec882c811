"""Which metrics may be computed from float32 factors (`--precision auto`).

A metric's registry record (`orthoscope.metrics.registry`) says f32_safe only if
tests/kernels/test_precision.py shows it agrees with float64 within 1e-4 on an
LLM-like pair (power-law spectrum with a dense tail). rot and rel_incons = incons / rot
read individual diagonal entries of the sign-fixed U_b^T U_p in the dense tail, where
float32 vectors of nearly equal singular values are mixed arbitrarily; incons survives
because that mixing acts alike on the left and right vectors of a pair.
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
    torch.float64
    """
    if precision not in PRECISIONS:
        raise OrthoscopeError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
    if precision == "f32" or (precision == "auto" and set(metrics) <= F32_SAFE):
        return torch.float32
    return torch.float64
