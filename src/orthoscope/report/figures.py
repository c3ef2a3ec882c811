"""Plotly figures of a run; each function takes the run and returns one figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orthoscope.architectures.maps import sort_kinds
from orthoscope.evaluation.stats import interval_columns
from orthoscope.experiment.columns import score_columns
from orthoscope.report.data import Run

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]


def _kinds(table: pd.DataFrame) -> list[str]:
    """The kinds present, in the one order of kinds (`architectures.maps.KINDS`)."""
    return sort_kinds(table.kind)


def _posts(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table.post))


def svsm(run: Run) -> go.Figure | None:
    """Singular Value Scaling Matrix: a_geo per (layer, kind), one panel per post, centred at 1."""
    if not has(run, "a_geo"):
        return None
    table, posts, kinds = run.table, _posts(run.table), _kinds(run.table)
    layered = table[table.layer >= 0]
    span = max(1e-3, float(np.nanmax(np.abs(np.log(layered.a_geo))))) if len(layered) else 0.1
    fig = make_subplots(rows=1, cols=len(posts), subplot_titles=posts, shared_yaxes=True, horizontal_spacing=0.04)
    for col, post in enumerate(posts, start=1):
        grid = layered[layered.post == post].pivot_table(index="layer", columns="kind", values="a_geo")
        grid = grid.reindex(columns=[k for k in kinds if k in grid.columns])
        fig.add_trace(go.Heatmap(
            z=np.log(grid.values), x=list(grid.columns), y=list(grid.index), customdata=grid.values,
            colorscale="RdBu_r", zmid=0, zmin=-span, zmax=span, showscale=col == len(posts),
            colorbar=dict(title="a_geo", tickvals=np.linspace(-span, span, 5).tolist(),
                          ticktext=[f"{v:.3f}" for v in np.exp(np.linspace(-span, span, 5))]),
            hovertemplate="layer %{y} %{x}<br>a_geo %{customdata:.4f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="kind", row=1, col=col)
    fig.update_yaxes(title_text="layer", autorange="reversed", row=1, col=1)
    fig.update_layout(title="SVSM: geometric-mean singular-value ratio a_geo (white = unchanged, red = grown)",
                      height=max(320, 22 * table.layer.max() + 200))
    return fig


def ratio_curves(run: Run, names: list[str]) -> go.Figure | str:
    """s_p,i / s_b,i against the relative index i/r for chosen matrices, per post.

    The y axis spans the 1-99 % quantiles of the plotted ratios (a few tail values near the
    numerical floor would otherwise squash every curve into a line)."""
    fig, values = go.Figure(), []
    for post, name, x, y in run.ratio_curves(names):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{post}: {_short(name)}"))
        values.append(y)
    if not values:
        return "No singular values were stored for these matrices (spectra/ is empty): no ratio curves."
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888")
    lo, hi = robust_range(np.concatenate(values), include=1.0)
    fig.update_layout(title="Singular-value ratio s_p,i / s_b,i by index (flat line = uniform scaling; "
                            "axis clipped to the 1-99 % quantiles)",
                      xaxis_title="relative index i / r (0 = largest singular value)", yaxis_title="s_p,i / s_b,i",
                      yaxis_range=[lo, hi], height=420)
    return fig


def robust_range(values: np.ndarray, include: float | None = None, pad: float = 0.05) -> tuple[float, float]:
    """The 1-99 % quantile span of the finite `values` (widened to hold `include`), padded.

    >>> robust_range(np.r_[np.linspace(0.9, 1.1, 1000), 50.0], include=1.0)
    (0.892192, 1.108008)
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = np.quantile(finite, [0.01, 0.99])
    if include is not None:
        lo, hi = min(lo, include), max(hi, include)
    span = max(hi - lo, 1e-9)
    return (round(float(lo - pad * span), 6), round(float(hi + pad * span), 6))


def _short(name: str) -> str:
    return name.replace("model.layers.", "L").replace(".weight", "").replace("self_attn.", "").replace("mlp.", "")


def has(run: Run, metric: str) -> bool:
    """Whether the run computed `metric` (a sign-free run leaves the rotation columns NaN)."""
    return metric in run.table and bool(run.table[metric].notna().any())


def consistency(run: Run) -> go.Figure | None:
    """incons per layer and kind, with the Gaussian null of the same update size as a band."""
    if not has(run, "incons"):
        return None
    return _per_layer(run, "incons", "incons_null",
                      "Rotation inconsistency incons = ||Q_U - Q_V||_F / (2 sqrt r): real (solid) vs Gaussian null (dotted)")


def symmetry(run: Run) -> go.Figure | None:
    """sym_frac per layer and kind against its null (0.5)."""
    if not has(run, "sym_frac"):
        return None
    if has(run, "sym_frac_pair_null"):
        return _per_layer(run, "sym_frac", "sym_frac_pair_null",
                          "Delta symmetry sym_frac (solid) against its pairing null (dotted: same update shape, "
                          "left/right agreement randomised); only sym_frac above the dotted line is evidence")
    fig = _per_layer(run, "sym_frac", "sym_frac_null",
                     "Delta symmetry sym_frac: above 0.5 = consistent rotations beyond what any small update gives")
    fig.add_hline(y=0.5, line_dash="dash", line_color="#c44e52", annotation_text="null 0.5")
    return fig


def asymmetry(run: Run) -> go.Figure | None:
    if not has(run, "asym"):
        return None
    return _per_layer(run, "asym", None, "One-SVD misfit asym = ||M - M^T||_F / (sqrt 2 ||M||_F), M = U_b^T W_p V_b")


def _per_layer(run: Run, metric: str, null: str | None, title: str) -> go.Figure:
    table, posts, kinds = run.table[run.table.layer >= 0], _posts(run.table), _kinds(run.table)
    fig = make_subplots(rows=1, cols=len(posts), subplot_titles=posts, shared_yaxes=True, horizontal_spacing=0.04)
    for col, post in enumerate(posts, start=1):
        for i, kind in enumerate(kinds):
            rows = table[(table.post == post) & (table.kind == kind)].sort_values("layer")
            colour = COLOURS[i % len(COLOURS)]
            fig.add_trace(go.Scatter(x=rows.layer, y=rows[metric], mode="lines+markers", name=kind, legendgroup=kind,
                                     showlegend=col == 1, line=dict(color=colour)), row=1, col=col)
            if null and null in rows:
                fig.add_trace(go.Scatter(x=rows.layer, y=rows[null], mode="lines", name=f"{kind} null",
                                         legendgroup=kind, showlegend=False,
                                         line=dict(color=colour, dash="dot", width=1)), row=1, col=col)
        fig.update_xaxes(title_text="layer", dtick=1, row=1, col=col)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(title=title, height=420)
    return fig


def overlap_images(run: Run) -> go.Figure | str | None:
    """Top-left blocks of Q_U and Q_V for the most and the least consistent matrices (unchanged ones,
    whose incons is NaN, left out); a sentence when the run stored no blocks."""
    if not has(run, "incons"):
        return None
    table = run.table[run.table.incons.notna()].sort_values("incons")
    picks = [("most consistent", table.iloc[0]), ("least consistent", table.iloc[-1])]
    titles = [f"{label}: {_short(row['name'])} ({row.post}) {side}" for label, row in picks for side in ("Q_U", "Q_V")]
    fig = make_subplots(rows=len(picks), cols=2, subplot_titles=titles, vertical_spacing=0.12)
    for r, (_, row) in enumerate(picks, start=1):
        spectra = run.spectra(row.post, row["name"])
        if spectra is None or "Q_U_block" not in spectra:
            continue
        for c, key in enumerate(("Q_U_block", "Q_V_block"), start=1):
            fig.add_trace(go.Heatmap(z=spectra[key], colorscale="RdBu_r", zmid=0, zmin=-1, zmax=1,
                                     showscale=(r, c) == (1, 2), colorbar=dict(title="cos")), row=r, col=c)
            fig.update_yaxes(autorange="reversed", title_text="base index j", row=r, col=c)
            fig.update_xaxes(title_text="post index i", row=r, col=c)
    if not fig.data:
        return "No overlap blocks were stored for these matrices (spectra/ lacks Q_U_block): nothing to draw."
    fig.update_layout(title="Overlaps U_b^T U_p and V_b^T V_p (top-left 32 x 32, signs fixed): a shared pattern = consistent",
                      height=900)
    return fig


def intruder_bars(run: Run) -> go.Figure | str | None:
    """Intruder counts per post and kind; one sentence instead of an empty axis when all are zero."""
    if not has(run, "intruders"):
        return None
    counts = run.table.groupby(["post", "kind"], sort=False).intruders.agg(["sum", "size"]).reset_index()
    if counts["sum"].fillna(0).eq(0).all():
        return (f"No intruder dimensions: in all {int(counts['size'].sum())} matrices, each of the top-10 post left "
                f"singular vectors has |cos| >= 0.5 with some base vector.")
    fig = go.Figure([go.Bar(x=rows.kind, y=rows["sum"], name=post, customdata=rows["size"],
                            hovertemplate="%{x}: %{y} intruders in %{customdata} matrices<extra></extra>")
                     for post, rows in counts.groupby("post", sort=False)])
    fig.update_layout(title="Intruder dimensions: top-10 post left vectors with max |cos| < 0.5 to every base vector "
                            "(sum over layers; n matrices in the hover)",
                      barmode="group", yaxis_title="count", height=360)
    return fig


LOG_SCORES = ("ppl",)
"""Scores drawn on a log axis: a broken model's perplexity reaches thousands and would flatten the rest."""


def sample_sizes(n: pd.Series) -> str:
    """'n = 40' (or 'n = 20/40') from an accuracy's n column (`evaluation.stats.interval_columns` names it).

    >>> sample_sizes(pd.Series([40, 40, None]))
    'n = 40'
    """
    return "n = " + "/".join(str(v) for v in sorted({int(v) for v in n.dropna()}))


def experiment_figure(run: Run) -> go.Figure | None:
    table = run.experiment
    if table is None:
        return None
    scores = score_columns(table)
    if not scores:
        return None
    intervals = interval_columns(table.columns)
    titles = [f"{score} ({sample_sizes(table[intervals[score][0]])}, Wilson 95 %)" if score in intervals else score
              for score in scores]
    fig = make_subplots(rows=len(scores), cols=1, subplot_titles=titles, vertical_spacing=0.3 / len(scores))
    for r, score in enumerate(scores, start=1):
        error = None
        if score in intervals:
            _, lo, hi = intervals[score]
            error = dict(type="data", symmetric=False, array=table[hi] - table[score],
                         arrayminus=table[score] - table[lo])
        fig.add_trace(go.Bar(x=table.condition, y=table[score], showlegend=False, error_y=error,
                             marker_color=["#444" if c == "post" else "#4c72b0" for c in table.condition]), row=r, col=1)
        if score in LOG_SCORES:
            fig.update_yaxes(type="log", title_text=f"{score} (log)", row=r, col=1)
    fig.update_layout(title="Interventions: each model's scores (dark = the post model as is)", height=260 * len(scores))
    return fig
