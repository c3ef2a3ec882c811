"""Aggregates of the metrics table: per kind and per layer, for each post model."""

from __future__ import annotations

import math

import pandas as pd

from orthoscope.pipeline.measure import METRIC_COLUMNS

ID_COLUMNS = ("post", "step", "name", "layer", "kind", "expert", "rows", "cols")


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=list(ID_COLUMNS + METRIC_COLUMNS))


def aggregate(table: pd.DataFrame, by: str) -> dict:
    """{post: {group: {metric: median}}}, medians being robust to a few odd matrices."""
    out: dict = {}
    if table.empty:
        return out
    for (post, group), frame in table.groupby(["post", by], sort=True):
        medians = frame[list(METRIC_COLUMNS)].astype(float).median()
        entry = {k: _finite(v) for k, v in medians.items()}
        entry["matrices"] = int(len(frame))
        out.setdefault(str(post), {})[str(group)] = entry
    return out


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
