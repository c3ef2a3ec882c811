"""The experiment's figure: each score per condition (with Wilson 95 % intervals), and the swap-sigma grid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orthoscope.evaluation.stats import interval_columns
from orthoscope.experiment.columns import GRID_OP, POST, score_columns


def plot_experiment(table: pd.DataFrame, path: Path) -> None:
    """Write `path` (PNG): bars per condition (error bars: Wilson 95 % for accuracies) and the c-grid curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = score_columns(table)
    if not scores:
        return
    intervals = interval_columns(table.columns)
    fig, axes = plt.subplots(len(scores), 2, figsize=(14, 2.6 * len(scores)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    post = table[table.condition == POST].iloc[0]
    grid = table[(table.op == GRID_OP) & table.scale.notna()].sort_values("scale")
    colours = ["#444" if c == POST else "#999" if claim.startswith("control") else "#4c72b0"
               for c, claim in zip(table.condition, table.claim.fillna(""))]
    for row, score in zip(axes, scores):
        bars, curve = row
        errors = None
        if score in intervals:
            _, lo, hi = intervals[score]
            errors = [(table[score] - table[lo]).clip(lower=0), (table[hi] - table[score]).clip(lower=0)]
        bars.bar(table.condition, table[score], color=colours, yerr=errors, capsize=2)
        bars.axhline(post[score], color="#c44e52", lw=1, ls="--", label="post as is")
        bars.set_ylabel(score)
        bars.tick_params(axis="x", labelrotation=60, labelsize=8)
        curve.plot(grid.scale, grid[score], "o-", color="#4c72b0")
        curve.axhline(post[score], color="#c44e52", lw=1, ls="--")
        curve.set_xlabel("swap-sigma scale c (U_p c S_b V_p^T)")
        if score == "ppl":  # broken models reach thousands: a log axis keeps the others readable
            bars.set_yscale("log")
            curve.set_yscale("log")
    axes[0][0].legend(loc="best", fontsize=8)
    axes[0][0].set_title("each intervened model vs the post model as is (grey: size-matched controls)")
    axes[0][1].set_title("honest test of the temperature claim")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
