"""Accuracy with its sample size and Wilson 95 % interval: the same numbers in `eval` and `experiment`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Accuracy:
    """`hits` correct out of `n` problems.

    >>> acc = Accuracy(7, 10)
    >>> acc.value, [round(x, 4) for x in acc.interval()]
    (0.7, [0.3968, 0.8922])
    >>> acc.fields("lab-arith")["lab-arith:n"]
    10
    """

    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else math.nan

    def interval(self) -> tuple[float, float]:
        """Wilson score interval (95 %): scipy.stats.binomtest(...).proportion_ci(method="wilson")'s arithmetic
        (Newcombe 1998), without importing scipy.stats (about a second of a CLI run)."""
        if not self.n:
            return math.nan, math.nan
        n, p = self.n, self.hits / self.n
        z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
        denominator = 2 * (n + z**2)
        centre, half = (2 * n * p + z**2) / denominator, z / denominator * math.sqrt(4 * n * p * (1 - p) + z**2)
        return (0.0 if self.hits == 0 else centre - half), (1.0 if self.hits == n else centre + half)

    def fields(self, task: str) -> dict[str, float | int]:
        """The flat columns of one task: `task` (accuracy), `task:n`, `task:lo`, `task:hi`."""
        low, high = self.interval()
        return {task: self.value, f"{task}:n": self.n, f"{task}:lo": low, f"{task}:hi": high}


def interval_columns(columns) -> dict[str, tuple[str, str, str]]:
    """{score: (n column, low column, high column)} for every accuracy among `columns`.

    >>> interval_columns(["ppl", "lab-arith", "lab-arith:n", "lab-arith:lo", "lab-arith:hi"])
    {'lab-arith': ('lab-arith:n', 'lab-arith:lo', 'lab-arith:hi')}
    """
    names = set(columns)
    return {c: (f"{c}:n", f"{c}:lo", f"{c}:hi") for c in columns
            if ":" not in c and {f"{c}:n", f"{c}:lo", f"{c}:hi"} <= names}
