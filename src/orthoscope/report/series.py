"""Figures across posts: a checkpoint series against step, and post-against-post update_cos."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orthoscope.report.data import Run
from orthoscope.report.figures import COLOURS, _kinds

TRAJECTORY = (
    ("rel_delta", None, "||dW|| / ||W_b||"),
    ("a_geo", "a_geo_null", "a_geo"),
    ("disp", "disp_null", "disp"),
    ("sym_frac", "sym_frac_pair_null", "sym_frac"),
    ("z_pair", (-2.0, 2.0), "z_pair"),
    ("incons", "incons_null", "incons"),
)
"""(metric, its null: a column whose per-kind 25-75 % quantiles make the band, or a fixed (lo, hi) band,
y-axis label) for the trajectory figure, in order; metrics a run lacks are left out."""


def series_table(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of posts that carry a step, when at least two steps are present (else empty)."""
    if "step" not in table:
        return table.iloc[:0]
    steps = pd.to_numeric(table["step"], errors="coerce")
    rows = table[steps.notna()]
    return rows if steps.dropna().nunique() >= 2 else table.iloc[:0]


def trajectories(run: Run) -> go.Figure | None:
    """Each key metric's per-kind median against step, the null as a band (one panel per metric)."""
    table = series_table(run.table)
    if table.empty:
        return None
    table = table.assign(step=pd.to_numeric(table["step"]))
    if "changed" in table:  # unchanged matrices (NaN rotation metrics) would only thin the medians
        table = table[table["changed"].fillna(True).astype(bool)]
    metrics = [m for m in TRAJECTORY if m[0] in table and table[m[0]].notna().any()]
    if not metrics:
        return None
    kinds = _kinds(table)
    counts = table.groupby("step").size()
    fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, vertical_spacing=0.25 / len(metrics),
                        subplot_titles=[f"{label} (median per kind{_band_name(table, null)})"
                                        for _, null, label in metrics])
    for r, (metric, null, label) in enumerate(metrics, start=1):
        for i, kind in enumerate(kinds):
            rows = table[table["kind"] == kind]
            colour = COLOURS[i % len(COLOURS)]
            medians = rows.groupby("step")[metric].agg(["median", "size"]).reset_index()
            if isinstance(null, str) and null in rows and rows[null].notna().any():
                band = rows.groupby("step")[null].quantile([0.25, 0.75]).unstack()
                _band(fig, band.index, band[0.25], band[0.75], colour, r, kind)
            fig.add_trace(go.Scatter(x=medians["step"], y=medians["median"], mode="lines+markers", name=kind,
                                     legendgroup=kind, showlegend=r == 1, line=dict(color=colour),
                                     customdata=medians["size"],
                                     hovertemplate=f"{kind} step %{{x}}: {metric} %{{y:.4g}} (n = %{{customdata}})"
                                                   "<extra></extra>"), row=r, col=1)
        if isinstance(null, tuple):
            fig.add_hrect(y0=null[0], y1=null[1], fillcolor="#888", opacity=0.15, line_width=0, row=r, col=1)
        fig.update_yaxes(title_text=label, row=r, col=1)
    fig.update_xaxes(title_text=f"training step ({len(counts)} checkpoints, {int(counts.max())} matrices each)",
                     row=len(metrics), col=1)
    fig.update_layout(title="Checkpoint series: how each metric moves during training", height=230 * len(metrics) + 120)
    return fig


def _band_name(table: pd.DataFrame, null) -> str:
    if isinstance(null, tuple):
        return f"; band: |z| < {null[1]:g} under the pairing null"
    if isinstance(null, str) and null in table and table[null].notna().any():
        return f"; band: {null} 25-75 %"
    return ""


def _band(fig: go.Figure, x, lo, hi, colour: str, row: int, kind: str) -> None:
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(hi) + list(lo)[::-1], fill="toself", mode="lines",
                             line=dict(width=0), fillcolor=colour, opacity=0.15, hoverinfo="skip",
                             legendgroup=kind, showlegend=False, name=f"{kind} null"), row=row, col=1)


def update_cos_grid(run: Run) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """{kind: (posts, median update_cos matrix, n matrix)} from update_cos.parquet (or summary.json)."""
    if run.update_cos is not None and len(run.update_cos):
        frame = run.update_cos
        stats = frame.groupby(["kind", "post_a", "post_b"], sort=False)["update_cos"].agg(["median", "count"])
        records = [{"kind": k, "post_a": a, "post_b": b, "median": m, "n": n}
                   for (k, a, b), (m, n) in stats.iterrows()]
    else:
        records = [r for r in run.summary.get("update_cos") or [] if isinstance(r, dict)]
    grids = {}
    for kind in dict.fromkeys(str(r["kind"]) for r in records):
        mine = [r for r in records if str(r["kind"]) == kind]
        posts = list(dict.fromkeys([str(r["post_a"]) for r in mine] + [str(r["post_b"]) for r in mine]))
        value, count = np.eye(len(posts)), np.zeros((len(posts), len(posts)), dtype=int)
        for r in mine:
            i, j = posts.index(str(r["post_a"])), posts.index(str(r["post_b"]))
            m = np.nan if r["median"] is None else float(r["median"])
            value[i, j] = value[j, i] = m
            count[i, j] = count[j, i] = int(r["n"])
        grids[kind] = (posts, value, count)
    return grids


def update_cos_heatmap(run: Run) -> go.Figure | None:
    """Post x post median update_cos per kind: do two post-trainings move the weights the same way?"""
    grids = update_cos_grid(run)
    if not grids:
        return None
    order = [k for k in _kinds(pd.DataFrame({"kind": list(grids)}))]
    fig = make_subplots(rows=1, cols=len(order), subplot_titles=order, horizontal_spacing=0.03)
    for c, kind in enumerate(order, start=1):
        posts, value, count = grids[kind]
        text = [[("1" if i == j else f"{value[i, j]:.2f}<br>n={count[i, j]}") for j in range(len(posts))]
                for i in range(len(posts))]
        fig.add_trace(go.Heatmap(z=value, x=posts, y=posts, text=text, texttemplate="%{text}", zmin=-1, zmax=1,
                                 zmid=0, colorscale="RdBu_r", showscale=c == len(order),
                                 colorbar=dict(title="update_cos"),
                                 hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"), row=1, col=c)
        fig.update_yaxes(autorange="reversed", showticklabels=c == 1, row=1, col=c)
    fig.update_layout(title="Post against post: median cosine of the updates dW per kind (1 = same direction, "
                            "0 = unrelated; n = matrices)", height=380)
    return fig
