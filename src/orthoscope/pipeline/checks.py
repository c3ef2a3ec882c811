"""Input checks of one matrix pair: a matrix that cannot be analysed raises `SkipMatrix` (the run goes on)."""

from __future__ import annotations

import math

import torch


class SkipMatrix(Exception):
    """This matrix cannot be analysed (the run goes on); the message is the reason."""


def check_floating(W: torch.Tensor, side: str) -> None:
    """Raise SkipMatrix for integer, boolean or complex tensors (quantised or not a weight matrix)."""
    if not W.is_floating_point():
        raise SkipMatrix(f"{side} matrix has dtype {str(W.dtype).replace('torch.', '')}, not a real floating-point "
                         "type (quantised or not a weight: not analysed)")


def nonfinite_count(W: torch.Tensor, total: float | None = None) -> int:
    """NaN/Inf entries of `W`; a finite `total` (W's sum, formed here if not given) clears it in one pass.

    NaN and Inf propagate into the sum, so only a sum that is not finite (NaN/Inf entries, or
    a finite matrix whose sum overflows) calls for the per-entry count.

    >>> nonfinite_count(torch.tensor([1.0, float("inf"), float("nan")])), nonfinite_count(torch.ones(3))
    (2, 0)
    """
    total = W.sum().item() if total is None else total
    return 0 if math.isfinite(total) else int((~torch.isfinite(W)).sum())


def check_finite(W: torch.Tensor, side: str, stored: torch.Tensor | None = None) -> None:
    """Raise SkipMatrix for NaN/Inf entries or an all-zero matrix (on `W` as converted: fast dtypes).

    A finite, nonzero sum (one vectorised pass, NaN and Inf propagate) clears the matrix;
    only then is each entry checked (an overflowing sum or a zero sum is not yet a verdict).

    >>> check_finite(torch.tensor([[1.0, -1.0]]), "post")  # sums to 0, yet not all zero
    >>> check_finite(torch.tensor([[1.0, float("nan")]]), "post")
    Traceback (most recent call last):
    ...
    orthoscope.pipeline.checks.SkipMatrix: 1 NaN/Inf entries in the post matrix

    `stored` (the tensor before conversion) tells finite values that overflowed the working
    dtype from NaN/Inf in the checkpoint:

    >>> stored = torch.tensor([[1.0, 1e300]], dtype=torch.float64)
    >>> check_finite(stored.float(), "post", stored)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    orthoscope.pipeline.checks.SkipMatrix: 1 finite entries of the post matrix overflow float32 ...: rerun with ...f64
    """
    total = W.sum().item()
    if math.isfinite(total) and total != 0:
        return
    bad = nonfinite_count(W, total)
    if bad:
        stored_bad = nonfinite_count(stored) if stored is not None and stored.dtype != W.dtype else bad
        if stored_bad < bad:
            largest = float(stored[torch.isfinite(stored)].abs().max())
            raise SkipMatrix(f"{bad - stored_bad} finite entries of the {side} matrix overflow "
                             f"{str(W.dtype).replace('torch.', '')} (largest |value| {largest:.3g}): "
                             f"rerun with --precision f64")
        raise SkipMatrix(f"{bad} NaN/Inf entries in the {side} matrix")
    if not W.any():
        raise SkipMatrix(f"all-zero {side} matrix (no singular subspace to compare)")
