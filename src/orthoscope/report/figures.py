"""Plotly figures of a run; each function takes the run and returns one figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orthoscope.architectures.maps import sort_kinds
from orthoscope.evaluation.stats import interval_columns
from orthoscope.experiment.columns import GRID_OP, POST, score_columns
from orthoscope.experiment.plot import complete, figure_rows
from orthoscope.report.data import Run
from orthoscope.report.panels import title_layout

ROLE_COLOURS = {"post": "#222222", "claim": "#4c72b0", "control": "#8c8c8c"}
UNITS = {"ppl": "perplexity (log)", "attn_entropy": "attention entropy (nats)", "cka_vs_post": "linear CKA vs post"}
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
    grown = float(np.nanmedian(layered.a_geo)) if len(layered) else float("nan")
    return title_layout(fig, f"Singular-value scaling: the typical matrix's values grew by a factor {grown:.3g} "
                             "(median a_geo)<br><sup>a_geo = geometric mean of s_post,i / s_base,i per matrix; "
                             f"white = unchanged, red = grown; n = {len(layered)} matrices</sup>",
                        max(340, 24 * int(table.layer.max() + 1) + 220))


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
                      "incons = ||Q_U - Q_V||_F / (2 sqrt r) per layer (solid) and its Gaussian null (dotted)")


def symmetry(run: Run) -> go.Figure | None:
    """sym_frac per layer and kind against its null (0.5)."""
    if not has(run, "sym_frac"):
        return None
    if has(run, "sym_frac_pair_null"):
        return _per_layer(run, "sym_frac", "sym_frac_pair_null",
                          "sym_frac per layer (solid) and its pairing null (dotted)<br><sup>only sym_frac above "
                          "its dotted line is evidence of agreeing rotations</sup>")
    fig = _per_layer(run, "sym_frac", "sym_frac_null",
                     "sym_frac per layer (solid) and its Gaussian null (dotted; 0.5 dashed)")
    fig.add_hline(y=0.5, line_dash="dash", line_color="#c44e52", annotation_text="null 0.5")
    return fig


def asymmetry(run: Run) -> go.Figure | None:
    if not has(run, "asym"):
        return None
    return _per_layer(run, "asym", None, "asym = ||M - M^T||_F / (sqrt 2 ||M||_F), M = U_b^T W_p V_b, per layer")


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
    n = int(table.groupby(["post", "kind"]).size().max()) if len(table) else 0
    return title_layout(fig, f"{title} (n = {n} layers per kind)" if "<br>" not in title
                        else title.replace("<br>", f" (n = {n} layers per kind)<br>", 1), 440)


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
    fig.update_layout(barmode="group", yaxis_title="intruders (count)", xaxis_title="kind")
    return title_layout(fig, f"Intruder dimensions: {int(counts['sum'].sum())} in {int(counts['size'].sum())} "
                             "matrices<br><sup>top-10 post left singular vectors with max |cos| < 0.5 to every base "
                             "vector, summed over layers</sup>", 380)


LOG_SCORES = ("ppl",)
"""Scores drawn on a log axis: a broken model's perplexity reaches thousands and would flatten the rest."""


def sample_sizes(n: pd.Series) -> str:
    """'n = 40' (or 'n = 20/40') from an accuracy's n column (`evaluation.stats.interval_columns` names it).

    >>> sample_sizes(pd.Series([40, 40, None]))
    'n = 40'
    """
    return "n = " + "/".join(str(v) for v in sorted({int(v) for v in n.dropna()}))


def experiment_figure(run: Run) -> go.Figure | None:
    """Per score (columns): each condition as a dot with its Wilson 95 % interval, grouped by claim, controls
    grey at the bottom, the post as a red dashed line; below, the swap-sigma grid (the temperature claim)."""
    table = run.experiment
    if table is None or not score_columns(table):
        return None
    table = complete(table)
    scores, rows = score_columns(table), figure_rows(table)
    intervals, by = interval_columns(table.columns), table.set_index("condition")
    grid = table[(table.op == GRID_OP) & table.scale.notna()].sort_values("scale")
    titles = [f"{s} ({sample_sizes(table[intervals[s][0]])})" if s in intervals else s for s in scores]
    titles += [f"{s} against c" for s in scores]
    top = 22 * len(rows) + 60
    fig = make_subplots(rows=2, cols=len(scores), subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=110 / (top + 330), row_heights=[top, 220])
    y, shapes = list(range(len(rows)))[::-1], []  # lines go in at once: plotly's add_hline costs ~30 ms each
    for col, score in enumerate(scores, start=1):
        for role in ("post", "claim", "control"):
            mine = [(yi, r) for yi, r in zip(y, rows) if r.role == role]
            if not mine:
                continue
            values = [float(by.loc[r.condition, score]) for _, r in mine]
            error = None
            if score in intervals:
                _, lo, hi = intervals[score]
                error = dict(type="data", symmetric=False, thickness=1.2, width=3,
                             array=[max(0.0, by.loc[r.condition, hi] - v) for (_, r), v in zip(mine, values)],
                             arrayminus=[max(0.0, v - by.loc[r.condition, lo]) for (_, r), v in zip(mine, values)])
            fig.add_trace(go.Scatter(x=values, y=[yi for yi, _ in mine], mode="markers", error_x=error,
                                     marker=dict(color=ROLE_COLOURS[role], size=7), showlegend=False,
                                     text=[r.condition for _, r in mine],
                                     hovertemplate="%{text}: %{x:.4g}<extra></extra>"), row=1, col=col)
        if POST in by.index:
            shapes.append(_line(fig, 1, col, x=float(by.loc[POST, score]), dash="dash", color="#c44e52", width=1))
        shapes += [_line(fig, 1, col, y=yi, color="#ddd", width=1) for yi, r in zip(y, rows) if r.role == "header"]
        log = "log" if score in LOG_SCORES else None
        fig.update_xaxes(type=log, title_text=UNITS.get(score, "accuracy" if score in intervals else score),
                         row=1, col=col)
        fig.update_yaxes(tickvals=y, ticktext=[f"<b>{r.label}</b>" if r.role in ("header", "post") else r.label
                                               for r in rows], showticklabels=col == 1, range=[-0.7, len(rows) - 0.3],
                         row=1, col=col)
        if len(grid):
            fig.add_trace(go.Scatter(x=grid.scale, y=grid[score], mode="lines+markers", showlegend=False,
                                     line=dict(color=ROLE_COLOURS["claim"]),
                                     hovertemplate="c %{x}: %{y:.4g}<extra></extra>"), row=2, col=col)
        if POST in by.index:
            shapes.append(_line(fig, 2, col, y=float(by.loc[POST, score]), dash="dash", color="#c44e52", width=1))
        fig.update_xaxes(title_text="c (base values times c)", row=2, col=col)
        fig.update_yaxes(type=log, row=2, col=col)
    fig.update_layout(title=dict(text="Interventions: dot = the intervened model's score (Wilson 95 % for accuracies), "
                                      "red dashed = the post model as is, grey = size-matched controls"
                                      "<br><sup>bottom row: the post's singular vectors with the base's values times c "
                                      "(the temperature claim's honest test)</sup>", x=0, xanchor="left", font_size=14),
                      height=top + 330 + 120, margin=dict(t=100, l=130, r=20, b=50), shapes=shapes)
    fig.update_annotations(font_size=12)
    return fig


def _line(fig: go.Figure, row: int, col: int, x: float | None = None, y: float | None = None, **line) -> dict:
    """The shape `add_vline(x)` / `add_hline(y)` would add to subplot (row, col): across its whole height / width."""
    subplot = fig.get_subplot(row, col)
    xref, yref = (axis.plotly_name.replace("axis", "") for axis in (subplot.xaxis, subplot.yaxis))
    if y is not None:
        return dict(type="line", x0=0, x1=1, xref=f"{xref} domain", y0=y, y1=y, yref=yref, line=line)
    return dict(type="line", x0=x, x1=x, xref=xref, y0=0, y1=1, yref=f"{yref} domain", line=line)
