"""The experiment's figure: each score per condition, and the swap-sigma scale grid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SCORES_SKIPPED = ("scale", "t", "seconds")


def plot_experiment(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [c for c in table.columns if table[c].dtype.kind == "f" and c not in SCORES_SKIPPED]
    if not scores:
        return
    fig, axes = plt.subplots(len(scores), 2, figsize=(13, 2.6 * len(scores)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    post = table[table.condition == "post"].iloc[0]
    grid = table[(table.op == "swap-sigma") & table.scale.notna()].sort_values("scale")
    for row, score in zip(axes, scores):
        bars, curve = row
        bars.bar(table.condition, table[score], color=["#444" if c == "post" else "#4c72b0" for c in table.condition])
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
    axes[0][0].set_title("each intervened model vs the post model as is")
    axes[0][1].set_title("honest test of the temperature claim")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
