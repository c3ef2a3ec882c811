"""Plotly figures of a run; each function takes the run and returns one figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orthoscope.report.data import Run

KIND_ORDER = ["q", "k", "v", "o", "gate", "up", "down", "embed", "lm_head"]
COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]


def _kinds(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table.kind))
    return [k for k in KIND_ORDER if k in present] + [k for k in present if k not in KIND_ORDER]


def _posts(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table.post))


def svsm(run: Run) -> go.Figure:
    """Singular Value Scaling Matrix: a_geo per (layer, kind), one panel per post, centred at 1."""
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


def ratio_curves(run: Run, names: list[str]) -> go.Figure:
    """s_p,i / s_b,i against the relative index i/r for chosen matrices, per post."""
    fig = go.Figure()
    for post, name, x, y in run.ratio_curves(names):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{post}: {_short(name)}"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888")
    fig.update_layout(title="Singular-value ratio s_p,i / s_b,i by index (flat line = uniform scaling)",
                      xaxis_title="relative index i / r (0 = largest singular value)", yaxis_title="s_p,i / s_b,i (log)",
                      yaxis_type="log", height=420)
    return fig


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
            if null:
                fig.add_trace(go.Scatter(x=rows.layer, y=rows[null], mode="lines", name=f"{kind} null",
                                         legendgroup=kind, showlegend=False,
                                         line=dict(color=colour, dash="dot", width=1)), row=1, col=col)
        fig.update_xaxes(title_text="layer", dtick=1, row=1, col=col)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(title=title, height=420)
    return fig


def overlap_images(run: Run) -> go.Figure | None:
    """Top-left blocks of Q_U and Q_V for the most and the least consistent matrices."""
    table = run.table.sort_values("incons")
    if table.empty or not has(run, "incons"):
        return None
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
    fig.update_layout(title="Overlaps U_b^T U_p and V_b^T V_p (top-left 32 x 32, signs fixed): a shared pattern = consistent",
                      height=900)
    return fig


def intruder_bars(run: Run) -> go.Figure | None:
    if not has(run, "intruders"):
        return None
    counts = run.table.groupby(["post", "kind"], sort=False).intruders.sum().reset_index()
    fig = go.Figure([go.Bar(x=rows.kind, y=rows.intruders, name=post) for post, rows in counts.groupby("post", sort=False)])
    fig.update_layout(title="Intruder dimensions: top-10 post left vectors with max |cos| < 0.5 to every base vector (sum over layers)",
                      barmode="group", yaxis_title="count", height=360)
    return fig


def experiment_figure(run: Run) -> go.Figure | None:
    table = run.experiment
    if table is None:
        return None
    scores = [c for c in table.columns if table[c].dtype.kind == "f" and c not in ("scale", "t", "seconds")]
    fig = make_subplots(rows=len(scores), cols=1, subplot_titles=scores, vertical_spacing=0.08)
    for r, score in enumerate(scores, start=1):
        fig.add_trace(go.Bar(x=table.condition, y=table[score], showlegend=False,
                             marker_color=["#444" if c == "post" else "#4c72b0" for c in table.condition]), row=r, col=1)
    fig.update_layout(title="Interventions: each model's scores (dark = the post model as is)", height=260 * len(scores))
    return fig
