"""The numbers the figures draw, computed once for the HTML (plotly) and the PNGs (matplotlib).

>>> import pandas as pd
>>> t = pd.DataFrame({"post": "p", "layer": [0, 0, 1], "kind": ["q", "o", "q"], "rel_delta": [0.1, 0.2, 0.3]})
>>> layer_kind_grid(t, "p", "rel_delta").values.tolist()
[[0.1, 0.2], [0.3, nan]]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orthoscope.architectures.maps import sort_kinds
from orthoscope.verdicts.stats import bh_reject
from orthoscope.verdicts.thresholds import Q_BH

RATIO_BINS = 40
RATIO_GRID = (np.arange(RATIO_BINS) + 0.5) / RATIO_BINS
"""Bin centres of the relative index i / r: each matrix's ratio curve is first reduced to its median per bin
(one index's ratio is noisy), then the bins' values are summarised over the matrices of a kind."""


def posts_with_control_last(table: pd.DataFrame, control: str | None) -> list[str]:
    """The run's posts in order, the control (if any) moved to the end so it sits beside the others."""
    posts = list(dict.fromkeys(table.post.astype(str)))
    return [p for p in posts if p != control] + ([control] if control in posts else [])


def layer_kind_grid(table: pd.DataFrame, post: str, column: str) -> pd.DataFrame:
    """`column` as a layer x kind grid for one post (kinds in the one order of kinds; NaN where absent)."""
    rows = table[(table.post.astype(str) == post) & (table.layer >= 0)]
    grid = rows.pivot_table(index="layer", columns="kind", values=column, aggfunc="median", dropna=False)
    return grid.reindex(columns=[k for k in sort_kinds(table.kind) if k in grid.columns])


def bh_significant(table: pd.DataFrame, p_column: str = "p_pair", q: float = Q_BH) -> pd.Series:
    """Per row: Benjamini-Hochberg rejects `p_column` at rate `q` among its post's usable matrices.

    Usable as in the verdicts: changed and not at the noise floor (all rows when those columns are absent).

    >>> t = pd.DataFrame({"post": "a", "p_pair": [1e-6, 0.5, 0.04, np.nan]})
    >>> bh_significant(t).tolist()
    [True, False, False, False]
    """
    usable = table[p_column].notna()
    if "changed" in table:
        usable &= table["changed"].fillna(True).astype(bool)
    if "at_noise_floor" in table:
        usable &= ~table["at_noise_floor"].fillna(False).astype(bool)
    out = pd.Series(False, index=table.index)
    for _, rows in table[usable].groupby(table.post.astype(str)):
        out.loc[rows.index] = bh_reject(rows[p_column].to_numpy(dtype=float), q)
    return out


@dataclass(frozen=True)
class Band:
    """The ratio curves s_p,i / s_b,i of one post and kind, read on `RATIO_GRID`: median and 25-75 %."""

    post: str
    kind: str
    n: int
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray


def ratio_bands(run, names: list[str] | None = None) -> list[Band]:
    """A Band per (post, kind) over the matrices that stored spectra (all when `names` is None)."""
    curves: dict[tuple[str, str], list[np.ndarray]] = {}
    kind_of = dict(zip(run.table["name"], run.table["kind"]))
    names = list(dict.fromkeys(run.table["name"])) if names is None else names
    for post, name, x, y in run.ratio_curves(names):
        if len(x) >= 2:
            curves.setdefault((str(post), kind_of[name]), []).append(binned_median(x, y))
    bands = []
    for (post, kind), ys in curves.items():
        stack = np.vstack(ys)
        with warnings.catch_warnings():  # indices no matrix reaches stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            low, median, high = np.nanquantile(stack, [0.25, 0.5, 0.75], axis=0)
        bands.append(Band(post, kind, len(ys), median, low, high))
    order = sort_kinds(pd.Series([b.kind for b in bands]))
    return sorted(bands, key=lambda b: order.index(b.kind))


def binned_median(x: np.ndarray, y: np.ndarray, bins: int = RATIO_BINS) -> np.ndarray:
    """Median of `y` within each of `bins` equal bins of `x` in [0, 1) (NaN where a bin is empty).

    >>> binned_median(np.array([0.1, 0.2, 0.6, 0.7, 0.8]), np.array([1.0, 3.0, 5.0, 6.0, 9.0]), bins=2).tolist()
    [2.0, 6.0]
    """
    index = np.minimum((np.asarray(x) * bins).astype(int), bins - 1)
    out = np.full(bins, np.nan)
    for b in np.unique(index):
        out[b] = np.median(y[index == b])
    return out


def overlap_picks(table: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The matrices with the smallest and the largest incons (unchanged ones, incons NaN, left out)."""
    if "incons" not in table or table.incons.notna().sum() == 0:
        return []
    rows = table[table.incons.notna()].sort_values("incons")
    return [("most consistent", rows.iloc[0]), ("least consistent", rows.iloc[-1])]
