"""The experiment table's columns: which are scores, and each claim's condition paired with its control."""

from __future__ import annotations

import math

import pandas as pd

from orthoscope.evaluation.stats import interval_columns
from orthoscope.interventions.registry import diagnostic_names

POST = "post"  # the condition of the post model as is
GRID_OP = "swap-sigma"  # the op whose scale c the grid sweeps (the honest test of the temperature claim)
NOT_SCORES = ("scale", "t", "seconds", *diagnostic_names())


def claims_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each claim's condition next to each of its controls, one row per score (long form).

    Columns: claim, condition, control, score, value, n, lo, hi, control_value,
    control_n, control_lo, control_hi (n, lo, hi: for accuracies; NaN otherwise).

    >>> t = pd.DataFrame({"condition": ["break-left", "noise"], "claim": ["rotations", "control"],
    ...                   "control": ["noise", ""], "ppl": [40.0, 9.0]})
    >>> claims_table(t)[["condition", "control", "value", "control_value"]].values.tolist()
    [['break-left', 'noise', 40.0, 9.0]]
    """
    scores = score_columns(table)
    intervals = interval_columns(table.columns)
    by = table.set_index("condition")
    rows = []
    for _, row in table.iterrows():
        for control in [c for c in str(row.get("control") or "").split(",") if c in by.index]:
            for score in scores:
                n, lo, hi = intervals.get(score, (None, None, None))
                entry = {"claim": row["claim"], "condition": row["condition"], "control": control, "score": score}
                for prefix, source in (("", row), ("control_", by.loc[control])):
                    entry[f"{prefix}value"] = source[score]
                    entry[f"{prefix}n"] = source[n] if n else math.nan
                    entry[f"{prefix}lo"] = source[lo] if lo else math.nan
                    entry[f"{prefix}hi"] = source[hi] if hi else math.nan
                rows.append(entry)
    columns = ["claim", "condition", "control", "score", "value", "n", "lo", "hi",
               "control_value", "control_n", "control_lo", "control_hi"]
    return pd.DataFrame(rows, columns=columns)


def score_columns(table: pd.DataFrame) -> list[str]:
    """The evaluated scores (accuracies, ppl, attn_entropy, cka_vs_post): numeric, not settings or n/intervals."""
    return [c for c in table.columns if ":" not in c and c not in NOT_SCORES
            and pd.api.types.is_numeric_dtype(table[c]) and table[c].dtype.kind == "f"]
