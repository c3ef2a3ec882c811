"""Nulls of sym_frac: the pairing (sign-flip) null and the exact Gaussian null (SPEC: Pairing null, Gaussian null).

Pairing null. With O = D - diag(D), A = O o O^T (elementwise) and T = sum(A),
sym_frac(D) = 1/2 + (sum_i D_ii^2 + T) / (2 ||D||_F^2). Flipping the sign of a
left singular vector without its right partner sends D -> diag(e) D, which keeps
every |D_ij| and turns T into e^T A e: mean 0, variance 2 ||A||_F^2.

The p-value p_pair = P(e^T A e >= T) is a sequential Monte-Carlo estimate (`p_pair`):
no closed form or limit is close enough in the range that decides Benjamini-Hochberg
(about 1e-4 to 0.05). The normal limit gave 2.2e-3 where 200k draws give 3.2e-3 on a
real r = 576 matrix (issue 23), and a saddle point on the Gaussian quadratic form with
the same A, which matches the first three cumulants (0, 2 ||A||_F^2, 8 tr A^3), misses
the Rademacher fourth one, 48 tr(A^4) - 96 sum_i (sum_j A_ij^2)^2 + 32 sum_ij A_ij^4,
and was off by factors of 2 to 50 at p = 1e-3 on planted updates that sit on the leading
directions (r = 64-512).

Gaussian null. For an i.i.d. Gaussian update, D is i.i.d. Gaussian in the base
frame and sym_frac ~ Beta(r(r+1)/4, r(r-1)/4) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

# Sequential sign draws for p_pair: PAIR_DRAWS first, then up to 4x more per round, until one of
#   PAIR_HITS draws at or beyond T       (relative standard error sqrt((1 - p) / hits) <= 10 %),
#   p surely above PAIR_P_HIGH or below PAIR_P_LOW (Clopper-Pearson, PAIR_CONFIDENCE two-sided),
#   PAIR_MAX_DRAWS draws                  (reached only where p is near PAIR_P_LOW: about 100 hits).
PAIR_DRAWS = 1024
PAIR_HITS = 100
PAIR_P_HIGH = 0.05
PAIR_P_LOW = 1e-4
PAIR_CONFIDENCE = 0.99
PAIR_MAX_DRAWS = 2**20
PAIR_F32_ABOVE = 256  # r above this: the draws' products in float32 (ties have no mass there)
_CHUNK = 2**22  # draws x r entries per matrix product (16-32 MiB)


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


@dataclass(frozen=True)
class PairTail:
    """A Monte-Carlo estimate of p_pair: p = (1 + hits) / (1 + draws) and its standard error."""

    p: float
    hits: int
    draws: int

    @property
    def se(self) -> float:
        """sqrt(p (1 - p) / draws): the binomial standard error of p."""
        return math.sqrt(self.p * (1 - self.p) / self.draws) if self.draws else math.nan


def pair_tail(stats_: Pairing, rng: np.random.Generator, draws: int = PAIR_DRAWS) -> PairTail:
    """P(e^T A e >= T), e i.i.d. +-1, by sequential sign draws (the rule at PAIR_DRAWS above).

    Where the draws stop on PAIR_HITS the relative standard error is <= 10 %; p is
    then known to that accuracy over the whole range 1e-4 to 0.05 that decides BH.
    Outside it (p surely above 0.05 or below 1e-4) fewer draws suffice: those p-values
    are right in order of magnitude only. Cost: draws x r^2 multiply-adds; a matrix
    far from the tails stops after `draws` (1024: about 0.15 s at r = 896 on one busy core).

    >>> D = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)  # T = 2: e^T A e = 2 e_1 e_2 >= 2 half the time
    >>> tail = pair_tail(pairing(D), np.random.default_rng(0))
    >>> abs(tail.p - 0.5) < 3 * tail.se, tail.draws
    (True, 1024)
    >>> D = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)  # T = -2: every draw is >= T
    >>> pair_tail(pairing(D), np.random.default_rng(0)).p
    1.0
    """
    from scipy.stats import beta

    r = stats_.A.shape[0]
    dtype = np.float32 if r > PAIR_F32_ABOVE else np.float64
    A = stats_.A.cpu().numpy().astype(dtype)
    sd = math.sqrt(stats_.var)
    # ties at exactly T count as "as extreme"; the tolerance keeps rounding from deciding them
    tol = (1e-6 * float(np.abs(A).sum(dtype=np.float64)) if dtype is np.float32 else 1e-12 * sd)
    threshold = stats_.T - tol
    alpha = (1 - PAIR_CONFIDENCE) / 2
    below = math.ceil(math.log(alpha) / math.log1p(-PAIR_P_LOW))  # draws without a hit that show p < PAIR_P_LOW
    hits = done = 0
    target = draws
    while True:
        hits += _hits(A, threshold, target - done, rng)
        done = target
        low = beta.ppf(alpha, hits, done - hits + 1) if hits else 0.0
        high = beta.ppf(1 - alpha, hits + 1, done - hits)
        if hits >= PAIR_HITS or low > PAIR_P_HIGH or high < PAIR_P_LOW or done >= PAIR_MAX_DRAWS:
            return PairTail((1 + hits) / (1 + done), hits, done)
        need = math.ceil(1.1 * PAIR_HITS * done / hits) if hits else below  # the draws the rule will likely stop at
        target = min(PAIR_MAX_DRAWS, max(done + draws, min(4 * done, need)))


def _hits(A: np.ndarray, threshold: float, n: int, rng: np.random.Generator) -> int:
    """#{e^T A e >= threshold} over n draws of e (random bits unpacked to +-1, in chunks)."""
    r = A.shape[0]
    step = max(1, _CHUNK // r)
    hits = 0
    for start in range(0, n, step):
        rows = min(step, n - start)
        bits = np.unpackbits(rng.integers(0, 256, size=(rows, (r + 7) // 8), dtype=np.uint8), axis=1, count=r)
        e = bits.astype(A.dtype) * 2 - 1
        hits += int((np.einsum("ij,ij->i", e @ A, e) >= threshold).sum())
    return hits


def p_pair(stats_: Pairing, rng: np.random.Generator, draws: int = PAIR_DRAWS) -> float:
    """One-sided p-value of T under the pairing null, P(e^T A e >= T): `pair_tail(...).p`.

    Relative standard error <= 10 % wherever 1e-4 <= p <= 0.05 (see `pair_tail`);
    NaN when A = 0 (nothing off the diagonal).

    >>> D = torch.eye(3, dtype=torch.float64)   # nothing off the diagonal
    >>> math.isnan(p_pair(pairing(D), np.random.default_rng(0)))
    True
    """
    if not stats_.var > 0:
        return math.nan
    return pair_tail(stats_, rng, draws).p


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
