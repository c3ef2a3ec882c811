"""The three statistics behind the verdicts: BH counts, a bootstrap interval, a permutation test.

>>> import numpy as np
>>> bh_count(np.array([0.001, 0.002, 0.3, 0.9]), 0.05)
2
>>> holm(np.array([0.01, 0.04, 0.03])).round(3).tolist()
[0.03, 0.06, 0.06]
>>> lo, hi = bootstrap_median_ci(np.arange(11.0), np.random.default_rng(0), 2000)
>>> bool(lo < 5 < hi)
True
>>> round(permutation_p(np.ones(8) * 3, np.zeros(8), paired=True, rng=np.random.default_rng(0), permutations=2000), 3)
0.007
"""

from __future__ import annotations

import numpy as np

CHUNK = 2_000_000  # values per vectorised block: bounds memory on 45k-matrix models


def bh_count(p: np.ndarray, q: float) -> int:
    """How many of the finite p-values Benjamini-Hochberg rejects at false discovery rate `q`."""
    p = np.asarray(p, dtype=float)
    return int(bh_reject(p[np.isfinite(p)], q).sum())


def bh_reject(p: np.ndarray, q: float) -> np.ndarray:
    """Which of the (finite) p-values Benjamini-Hochberg rejects at false discovery rate `q`: those whose
    adjusted p-value min_{j >= i} p_(j) m / j is <= q (scipy.stats.false_discovery_control's arithmetic, without
    importing scipy.stats, which costs a CLI run about half a second).

    >>> bh_reject(np.array([0.01, 0.001, 0.03, 0.5]), 0.05).tolist()  # 0.03 <= 3 x 0.05 / 4
    [True, True, True, False]
    """
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p)
    adjusted = p[order] * (p.size / np.arange(1, p.size + 1, dtype=float))
    np.minimum.accumulate(adjusted[::-1], out=adjusted[::-1])
    reject = np.empty(p.size, dtype=bool)
    reject[order] = np.clip(adjusted, 0.0, 1.0) <= q
    return reject


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over the given tests), same order."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps)) if p.size else steps
    return adjusted


def bootstrap_median_ci(x: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    """Percentile 95 % interval of the median of `x`, resampling its entries with replacement."""
    x = np.asarray(x, dtype=float)
    medians = np.empty(resamples)
    step = max(1, CHUNK // max(1, x.size))
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        medians[start:start + count] = np.median(x[rng.integers(0, x.size, (count, x.size))], axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)


def permutation_p(a: np.ndarray, b: np.ndarray, *, paired: bool, rng: np.random.Generator,
                  permutations: int) -> float:
    """Two-sided permutation p-value for a shift between `a` and `b` (rank statistics: robust to a few
    huge values, which `z_pair` of large matrices has).

    Paired (a[i] and b[i] are the same matrix in two posts): the signed-rank sum of the differences
    a[i] - b[i], each pair's labels swapped (the difference's sign flipped) with probability 1/2.
    Unpaired: the difference of mean ranks in the pooled sample, the labels shuffled.
    p = (1 + #{|T*| >= |T|}) / (1 + N), never 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        d = a - b
        d = d[d != 0]
        if d.size == 0:
            return 1.0
        signed = np.sign(d) * rankdata(np.abs(d))

        def draws(count):
            return (np.where(rng.random((count, d.size)) < 0.5, -1.0, 1.0) * np.abs(signed)).sum(axis=1)
        observed, width = abs(signed.sum()), d.size
    else:
        ranks = rankdata(np.concatenate([a, b]))
        observed, width = abs(ranks[:a.size].mean() - ranks[a.size:].mean()), ranks.size

        def draws(count):
            shuffled = rng.permuted(np.broadcast_to(ranks, (count, ranks.size)), axis=1)
            return shuffled[:, :a.size].mean(axis=1) - shuffled[:, a.size:].mean(axis=1)
    hits, step = 0, max(1, CHUNK // max(1, width))
    for start in range(0, permutations, step):
        hits += int((np.abs(draws(min(step, permutations - start))) >= observed - 1e-9).sum())
    return (1 + hits) / (1 + permutations)


def rankdata(x) -> np.ndarray:
    """Ranks 1..n, ties given their average rank: scipy.stats.rankdata's default, without importing
    scipy.stats (about a second of a CLI run).

    >>> rankdata([10.0, 30.0, 20.0, 20.0]).tolist()
    [1.0, 4.0, 2.5, 2.5]
    """
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    first = np.r_[True, x[order][1:] != x[order][:-1]]  # where each run of equal values starts
    group = np.cumsum(first) - 1
    starts = np.r_[np.flatnonzero(first), x.size]  # 0-based start of each run, then the end
    ranks = np.empty(x.size)
    ranks[order] = (starts[group] + starts[group + 1] + 1) / 2
    return ranks
