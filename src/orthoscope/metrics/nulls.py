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
from scipy import special

from orthoscope.errors import OrthoscopeError
from orthoscope.metrics.levels import MONITOR_PAIR_DRAWS, PAIR_DRAWS, PAIR_MAX_DRAWS, Q_BH  # noqa: F401 - re-exported

# Sequential sign draws for p_pair: PAIR_DRAWS first, then up to 4x more per round, until one of
#   PAIR_HITS draws at or beyond T       (relative standard error sqrt((1 - p) / hits) <= 10 %),
#   p surely above PAIR_P_HIGH or below PAIR_P_LOW (Clopper-Pearson, PAIR_CONFIDENCE two-sided),
#   PAIR_MAX_DRAWS draws                  (reached only where p is near PAIR_P_LOW: about 100 hits).
# (PAIR_DRAWS, PAIR_MAX_DRAWS and the Monitor's cap MONITOR_PAIR_DRAWS are in the leaf `metrics.levels`.)
PAIR_HITS = 100
PAIR_P_HIGH = 0.05
PAIR_P_LOW = 1e-4
PAIR_CONFIDENCE = 0.99
# `cap` (--pair-draws): the most draws the rule may take, PAIR_DRAWS to PAIR_MAX_DRAWS; None is the rule above
_CHUNK = 2**22  # draws x r random signs per call of the generator (the draws' stream depends on it)
_BLOCK = 2**19  # draws x r entries per float32 product (2 MiB)
_TRI_BLOCK = 128  # rows of A's upper triangle per float32 product of the draws


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
class SignDraws:
    """Where p_pair's sign draws come from (`rng`, seeded per matrix) and the most the rule may take (`cap`)."""

    rng: np.random.Generator
    cap: int | None = None


@dataclass(frozen=True)
class PairTail:
    """p_pair's estimate: p = (1 + hits) / (1 + draws) and its standard error, or (`bounded`) an analytic
    upper bound below PAIR_P_LOW that settled it after a first round of `draws` without a hit."""

    p: float
    hits: int
    draws: int
    bounded: bool = False

    @property
    def se(self) -> float:
        """sqrt(p (1 - p) / draws): the binomial standard error of p (NaN for a bound)."""
        return math.sqrt(self.p * (1 - self.p) / self.draws) if self.draws and not self.bounded else math.nan


def pair_bound(stats_: Pairing) -> float:
    """An upper bound on P(e^T A e >= T) from the eigenvalues a_k of A (no draws): the smaller of two
    Chernoff bounds, each exp(-t T) times a bound on E exp(t e^T A e) that holds for every e i.i.d. +-1.

    - Gaussian comparison: with g ~ N(0, I) written g_i = e_i |g_i| (|g| independent of e) and A_ii = 0,
      E[g^T A g | e] = (2/pi) e^T A e, so by Jensen E exp(t e^T A e) <= E exp((pi/2) t g^T A g)
      = prod_k (1 - pi t a_k)^(-1/2).
    - Positive part: e^T A e <= e^T A+ e (A+ = sum over a_k > 0 of a_k v_k v_k^T); writing
      exp(t x^T A+ x) = E_g exp(sqrt(2t) g^T A+^(1/2) x) and Hoeffding's E exp(b . e) <= exp(|b|^2 / 2)
      gives E exp(t e^T A+ e) <= prod_{a_k > 0} (1 - 2 t a_k)^(-1/2). Sharp when a few directions carry A.

    Each t is minimised numerically; any t gives a valid bound, and the a_k are raised by far more than
    eigvalsh's error (the bound grows with every a_k), so rounding cannot make it too small.

    >>> D = torch.zeros(6, 6, dtype=torch.float64); D[0, 1] = D[1, 0] = 1.0   # X = 2 e_1 e_2: P(X >= 2) = 1/2
    >>> 0.5 <= pair_bound(pairing(D)) <= 1
    True
    >>> D = torch.ones(40, 40, dtype=torch.float64)    # T = 1560, the largest e^T A e: P = 2^-39
    >>> pair_bound(pairing(D)) < 1e-6
    True
    """
    a = torch.linalg.eigvalsh(stats_.A.detach().to("cpu", torch.float64)).numpy()
    a = a + 1e-12 * len(a) * float(np.abs(a).max(initial=0.0))
    return math.exp(min(_chernoff_log(a, stats_.T, math.pi), _chernoff_log(a[a > 0], stats_.T, 2.0)))


def _chernoff_log(a: np.ndarray, T: float, c: float) -> float:
    """min over 0 <= t < 1 / (c max a) of -t T - 1/2 sum log(1 - c t a_k) (log of a Chernoff bound; <= 0).

    The function is convex in t; its slope -T + (c/2) sum a_k / (1 - c t a_k) is found by bisection."""
    if T <= 0 or not len(a) or a.max() <= 0:
        return 0.0 if T <= 0 or not len(a) else -math.inf

    def value(t: float) -> float:
        return -t * T - 0.5 * float(np.log1p(-c * t * a).sum())

    top = 1 / (c * a.max())
    lo, hi = 0.0, top
    for _ in range(100):
        mid = (lo + hi) / 2
        if -T + c / 2 * float((a / (1 - c * mid * a)).sum()) < 0:
            lo = mid
        else:
            hi = mid
    return min(0.0, value(lo))


def pair_tail(stats_: Pairing, rng: np.random.Generator, draws: int = PAIR_DRAWS, cap: int | None = None) -> PairTail:
    """P(e^T A e >= T), e i.i.d. +-1, by sequential sign draws (the rule at PAIR_DRAWS above).

    Where the draws stop on PAIR_HITS the relative standard error is <= 10 %; p is
    then known to that accuracy over the whole range 1e-4 to 0.05 that decides BH.
    Outside it (p surely above 0.05 or below 1e-4) fewer draws suffice: those p-values
    are right in order of magnitude only. Cost: about draws x r^2 / 2 multiply-adds; a matrix
    far from the tails stops after `draws` (1024).

    `cap` (`check_cap`: None, or PAIR_DRAWS to PAIR_MAX_DRAWS) stops the rule at that many draws at most:
    the draws are then the first `cap` of the uncapped rule's (same `rng`), p = (1 + hits) / (1 + draws)
    is at least 1 / (1 + cap), and the analytic bound still settles p < PAIR_P_LOW after the first round.

    >>> D = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)  # T = 2: e^T A e = 2 e_1 e_2 >= 2 half the time
    >>> tail = pair_tail(pairing(D), np.random.default_rng(0))
    >>> abs(tail.p - 0.5) < 3 * tail.se, tail.draws
    (True, 1024)
    >>> D = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)  # T = -2: every draw is >= T
    >>> pair_tail(pairing(D), np.random.default_rng(0)).p
    1.0
    """
    A = stats_.A.detach().to("cpu", torch.float64)
    threshold = stats_.T - 1e-12 * math.sqrt(stats_.var)  # ties at exactly T count as "as extreme"
    alpha = (1 - PAIR_CONFIDENCE) / 2
    below = math.ceil(math.log(alpha) / math.log1p(-PAIR_P_LOW))  # draws without a hit that show p < PAIR_P_LOW
    most = PAIR_MAX_DRAWS if cap is None else min(cap, PAIR_MAX_DRAWS)
    hits = done = 0
    target = min(draws, most)
    products = _Draws(A, threshold)
    while True:
        hits += products.hits(target - done, rng)
        done = target
        if not hits and done == draws and (bound := pair_bound(stats_)) < PAIR_P_LOW:
            return PairTail(bound, 0, done, bounded=True)
        # Clopper-Pearson: the interval's low end is above P_HIGH iff the Beta(hits, done - hits + 1) cdf there
        # is below alpha; its high end is below P_LOW iff the Beta(hits + 1, done - hits) cdf there is above 1 - alpha
        surely_high = hits > 0 and special.betainc(hits, done - hits + 1, PAIR_P_HIGH) < alpha
        surely_low = special.betainc(hits + 1, done - hits, PAIR_P_LOW) > 1 - alpha
        if hits >= PAIR_HITS or surely_high or surely_low or done >= most:
            return PairTail((1 + hits) / (1 + done), hits, done)
        need = math.ceil(1.1 * PAIR_HITS * done / hits) if hits else below  # the draws the rule will likely stop at
        target = min(most, max(done + draws, min(4 * done, need)))


class _Draws:
    """e^T A e over blocks of sign draws e, each compared with `threshold` as float64 arithmetic compares it.

    A is symmetric with a zero diagonal, so e^T A e = 2 sum_(i<j) e_i A_ij e_j: the products run on A's
    upper triangle, in row blocks of _TRI_BLOCK (about half the multiply-adds of e A e^T), in float32 on A
    scaled by a power of two (exact), so that max |A_ij| < 1. Their error is at most (2r + 4) u sum |A_ij|
    (u = 2^-24: A rounded, then a sum of at most r terms in each product and one of r terms, in blocks,
    along each draw; doubling is exact) plus r^2 2^-148 for entries float32 holds as subnormals; a draw that
    close to the threshold is recomputed in float64 on the whole A. Only the values within that band cost
    float64 work; ties at the threshold keep their float64 answer. Prepared once per matrix, for every round.
    """

    def __init__(self, A: torch.Tensor, threshold: float):
        r = self.r = A.shape[0]
        low, high = torch.aminmax(A) if A.numel() else (A.new_zeros(()), A.new_zeros(()))
        scale = 2.0 ** -math.frexp(max(-low.item(), high.item()))[1]
        self.A64 = A * scale
        self.threshold = threshold * scale
        self.band = 1.01 * ((2 * r + 4) * 2.0**-24 * self.A64.abs().sum().item() + r * r * 2.0**-148)
        upper = self.A64.float().triu_(1)
        # block k: rows start..start+s of the upper triangle, transposed, over columns start.. (zeros left of it)
        self.blocks = [(start, upper[start:start + _TRI_BLOCK, start:].T.contiguous())
                       for start in range(0, r, _TRI_BLOCK)]

    def values(self, e: torch.Tensor) -> torch.Tensor:
        """e^T A e (scaled) for each row of e (float32 +-1), float32 products on the upper triangle."""
        total = None
        for start, block in self.blocks:
            part = (e[:, start:] @ block).mul_(e[:, start:start + block.shape[1]]).sum(1)
            total = part if total is None else total.add_(part)
        return total.mul_(2)

    def hits(self, n: int, rng: np.random.Generator) -> int:
        """#{e^T A e >= threshold} over n draws of e (random bits unpacked to +-1, in chunks of _CHUNK bits)."""
        r, threshold, band = self.r, self.threshold, self.band
        step = max(1, _CHUNK // r)
        hits = 0
        for start in range(0, n, step):
            rows = min(step, n - start)
            bits = np.unpackbits(rng.integers(0, 256, size=(rows, (r + 7) // 8), dtype=np.uint8), axis=1, count=r)
            for block in torch.from_numpy(bits).split(max(1, _BLOCK // r)):  # the products of a block stay in cache
                e = block.to(torch.float32).mul_(2).sub_(1)
                gap = self.values(e).double().sub_(threshold)
                hits += int((gap > band).sum())
                close = torch.nonzero(gap.abs() <= band)[:, 0]
                if len(close):
                    e_close = e[close].double()
                    hits += int(((e_close @ self.A64).mul_(e_close).sum(1) >= threshold).sum())
        return hits


def _hits(A: torch.Tensor, threshold: float, n: int, rng: np.random.Generator) -> int:
    """#{e^T A e >= threshold} over n draws of e, each comparison the one float64 arithmetic makes (`_Draws`)."""
    return _Draws(A, threshold).hits(n, rng)


def p_pair(stats_: Pairing, rng: np.random.Generator, draws: int = PAIR_DRAWS, cap: int | None = None) -> float:
    """One-sided p-value of T under the pairing null, P(e^T A e >= T): `pair_tail(...).p`.

    Relative standard error <= 10 % wherever 1e-4 <= p <= 0.05 (see `pair_tail`), or, with a `cap`, wherever
    the rule stops before it; NaN when A = 0 (nothing off the diagonal).

    >>> D = torch.eye(3, dtype=torch.float64)   # nothing off the diagonal
    >>> math.isnan(p_pair(pairing(D), np.random.default_rng(0)))
    True
    """
    if not stats_.var > 0:
        return math.nan
    return pair_tail(stats_, rng, draws, cap).p


def check_cap(cap: object) -> int | None:
    """`cap` (--pair-draws) if None or a whole number from PAIR_DRAWS to PAIR_MAX_DRAWS, else one line.

    >>> check_cap(4096), check_cap(None)
    (4096, None)
    >>> check_cap(100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: --pair-draws must be a whole number of sign draws from 1024 (the first ...
    """
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or not PAIR_DRAWS <= cap <= PAIR_MAX_DRAWS:
        raise OrthoscopeError(f"--pair-draws must be a whole number of sign draws from {PAIR_DRAWS} (the first round) "
                              f"to {PAIR_MAX_DRAWS}, not {cap!r}")
    return int(cap)


def cap_note(cap: int | None, changed: dict[str, int] | None = None) -> list[str]:
    """The run's notes on a capped p_pair ([] without a cap): its floor, and what BH (q = Q_BH) can still find.

    `changed`: {post: its number m of changed matrices (those with a p_pair, BH's family)}. p_pair >= 1/(N + 1)
    under a cap N, so BH flags k of m matrices only if 1/(N + 1) <= k q / m: a post with m > q (N + 1) gets
    a line saying that it needs ceil(m / (q (N + 1))) matrices flagged at once.

    >>> print("\\n".join(cap_note(4096, {"dpo": 100, "sft": 560})))  # doctest: +NORMALIZE_WHITESPACE
    p_pair capped at 4096 sign draws per matrix (--pair-draws): p_pair >= 1/4097 = 2.4e-04, so BH (q = 0.05)
    flags k matrices of a post only if it has at most 204 k changed ones
    sft: p_pair capped at 4096 draws: with 560 changed matrices BH can flag this post's matrices only 3 or more
    at a time
    """
    if cap is None:
        return []
    floor = 1 / (1 + cap)
    notes = [f"p_pair capped at {cap} sign draws per matrix (--pair-draws): p_pair >= 1/{cap + 1} = {floor:.1e}, "
             f"so BH (q = {Q_BH:g}) flags k matrices of a post only if it has at most {math.floor(Q_BH / floor)} k "
             "changed ones"]
    for post, m in (changed or {}).items():
        if m > Q_BH * (cap + 1):
            notes.append(f"{post}: p_pair capped at {cap} draws: with {m} changed matrices BH can flag this post's "
                         f"matrices only {math.ceil(m / (Q_BH * (cap + 1)))} or more at a time")
    return notes


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
    tail = 1.0 if value <= 0 else 0.0 if value >= 1 else float(special.betaincc(a, b, value))  # Beta(a, b).sf
    return (value - a / (a + b)) / sd, tail
