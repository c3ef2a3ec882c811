"""Nulls of sym_frac: the pairing (sign-flip) null and the exact Gaussian null (SPEC: Pairing null, Gaussian null).

Pairing null. With O = D - diag(D), A = O o O^T (elementwise) and T = sum(A),
sym_frac(D) = 1/2 + (sum_i D_ii^2 + T) / (2 ||D||_F^2). Flipping the sign of a
left singular vector without its right partner sends D -> diag(e) D, which keeps
every |D_ij| and turns T into e^T A e: mean 0, variance 2 ||A||_F^2.

Gaussian null. For an i.i.d. Gaussian update, D is i.i.d. Gaussian in the base
frame and sym_frac ~ Beta(r(r+1)/4, r(r-1)/4) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

PAIR_DRAWS = 4096
PAIR_NORMAL_ABOVE = 256  # r above this: the normal limit instead of draws


@dataclass(frozen=True)
class Pairing:
    """The pairing statistics of one D: T, Var[T] under sign flips, ||D||_F^2 and sum_i D_ii^2."""

    T: float
    var: float
    norm2: float  # ||D||_F^2
    diag2: float  # sum_i D_ii^2
    A: torch.Tensor

    @property
    def diag_share(self) -> float:
        """sum_i D_ii^2 / ||D||_F^2 (NaN for D = 0)."""
        return self.diag2 / self.norm2 if self.norm2 > 0 else math.nan

    @property
    def z(self) -> float:
        """z_pair = T / sqrt(2 ||A||_F^2) (NaN when A = 0: nothing off the diagonal)."""
        return self.T / math.sqrt(self.var) if self.var > 0 else math.nan

    @property
    def null_mean(self) -> float:
        """sym_frac_pair_null = 1/2 + sum_i D_ii^2 / (2 ||D||_F^2)."""
        return 0.5 + self.diag_share / 2


def pairing(D: torch.Tensor) -> Pairing:
    """Pairing statistics of D (float64 arithmetic).

    >>> D = torch.tensor([[1.0, 2.0], [2.0, 0.0]], dtype=torch.float64)
    >>> p = pairing(D)
    >>> p.T, p.var, p.z, round(p.null_mean, 6)
    (8.0, 64.0, 1.0, 0.555556)
    """
    D = D.double()
    diag = torch.diagonal(D)
    O = D - torch.diag(diag)
    A = O * O.T
    return Pairing(T=A.sum().item(), var=2 * (A * A).sum().item(), norm2=(D * D).sum().item(),
                   diag2=(diag * diag).sum().item(), A=A)


def pairing_and_sym_frac(D: torch.Tensor) -> tuple[Pairing, float]:
    """`pairing(D)` and `symmetry.sym_frac(D)` from one elementwise product D o D^T (the pipeline's path).

    sum(D o D^T) = T + sum_i D_ii^2, so sym_frac = 1/2 + (T + sum_i D_ii^2) / (2 ||D||_F^2);
    A is D o D^T with its diagonal zeroed. Same values as the two functions, a third of the passes.

    >>> D = torch.tensor([[1.0, 2.0], [2.0, 0.0]], dtype=torch.float64)
    >>> p, value = pairing_and_sym_frac(D)
    >>> (p.T, p.var, round(p.null_mean, 6)), value
    ((8.0, 64.0, 0.555556), 1.0)
    """
    D = D.double()
    flat = D.reshape(-1)
    total = torch.dot(flat, flat).item()
    diag = torch.diagonal(D)
    diag2 = torch.dot(diag, diag).item()
    A = D * D.T
    A.diagonal().zero_()
    flat_a = A.reshape(-1)
    T = flat_a.sum().item()
    pair = Pairing(T=T, var=2 * torch.dot(flat_a, flat_a).item(), norm2=total, diag2=diag2, A=A)
    return pair, (0.5 + (T + diag2) / (2 * total) if total > 0 else 0.5)


def p_pair(stats_: Pairing, rng: np.random.Generator, draws: int = PAIR_DRAWS) -> float:
    """One-sided p-value of T under the pairing null: P(e^T A e >= T).

    For r <= 256: (1 + #{draws with e^T A e >= T}) / (1 + draws), e i.i.d. +-1
    (never 0); above, the normal limit sf(z_pair).

    >>> D = torch.eye(3, dtype=torch.float64)   # nothing off the diagonal
    >>> math.isnan(p_pair(pairing(D), np.random.default_rng(0)))
    True
    """
    if not stats_.var > 0:
        return math.nan
    r = stats_.A.shape[0]
    if r > PAIR_NORMAL_ABOVE:
        return float(stats.norm.sf(stats_.z))
    A = stats_.A.cpu().numpy()
    e = rng.integers(0, 2, size=(draws, r), dtype=np.int8).astype(np.float64) * 2 - 1
    null = np.einsum("ij,ij->i", e @ A, e)
    # ties at exactly T count as "as extreme"; a small tolerance keeps rounding from deciding them
    hits = int((null >= stats_.T - 1e-12 * math.sqrt(stats_.var)).sum())
    return (1 + hits) / (1 + draws)


def gauss_params(r: int) -> tuple[float, float]:
    """Beta parameters (r(r+1)/4, r(r-1)/4) of sym_frac under a Gaussian update of an r x r D."""
    return r * (r + 1) / 4, r * (r - 1) / 4


def gauss_mean(r: int) -> float:
    """Mean of sym_frac under the Gaussian null, (r+1)/(2r).

    >>> gauss_mean(4)
    0.625
    """
    return (r + 1) / (2 * r) if r >= 1 else math.nan


def gauss_tail(value: float, r: int) -> tuple[float, float]:
    """(z_gauss, p_gauss) of an observed sym_frac for an r x r D; NaN for r < 2.

    >>> z, p = gauss_tail(gauss_mean(64), 64)
    >>> abs(z) < 1e-12, 0.4 < p < 0.6
    (True, True)
    """
    if r < 2 or not math.isfinite(value):
        return math.nan, math.nan
    a, b = gauss_params(r)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return (value - a / (a + b)) / sd, float(stats.beta.sf(value, a, b))
