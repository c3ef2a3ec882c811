"""The report's headline figures (plotly): where the weights moved, ratio bands, the pairing-null excess,
overlap differences. Each is titled by what it shows; the numbers come from `report.grids`."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orthoscope.report import grids
from orthoscope.report.data import Run

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]
TEXT_CELLS = 400
"""Heatmaps with at most this many cells per panel print each cell's value."""


def title_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    """A conclusion title (and a <sup> line of units and n) left-aligned above the panels' titles."""
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=1, yanchor="top", pad=dict(t=18),
                                 font_size=15), height=height, margin=dict(t=90, l=70, r=30, b=60))
    fig.update_annotations(font_size=13)
    return fig


def control_title(post: str, control: str | None) -> str:
    """A panel's title: the post, marked when it is the control run (unless its name says so).

    >>> control_title("ctl", "ctl"), control_title("control", "control")
    ('ctl (control)', 'control')
    """
    return f"{post} (control)" if post == control and "control" not in post else post


def kind_medians(run: Run, post: str, column: str) -> dict[str, float]:
    rows = run.table[run.table.post.astype(str) == post]
    return rows.groupby("kind")[column].median().to_dict()


def moved_title(run: Run, posts: list[str], control: str | None) -> str:
    """'Where the weights moved: instruct most in o (median 1.2 %), ...; control 0.9 %' (rel_delta)."""
    parts = []
    for post in posts:
        medians = kind_medians(run, post, "rel_delta")
        top = max(medians, key=lambda k: medians[k])
        overall = float(run.table.loc[run.table.post.astype(str) == post, "rel_delta"].median())
        parts.append(f"{post} {100 * overall:.3g} %" + ("" if post == control else f" (most: {top})"))
    return "Where the weights moved: median relative update " + ", ".join(parts)


def where_moved(run: Run, control: str | None) -> go.Figure | None:
    """rel_delta = ||dW|| / ||W_b|| per (layer, kind) in %, one panel per post, the control last (beside)."""
    if "rel_delta" not in run.table or run.table.rel_delta.notna().sum() == 0:
        return None
    posts = grids.posts_with_control_last(run.table, control)
    grids_ = {p: grids.layer_kind_grid(run.table, p, "rel_delta") * 100 for p in posts}
    top = float(np.nanmax([np.nanmax(g.values) for g in grids_.values()]))
    titles = [control_title(p, control) for p in posts]
    fig = make_subplots(rows=1, cols=len(posts), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.03)
    for col, post in enumerate(posts, start=1):
        grid = grids_[post]
        text = grid.map(lambda v: "" if np.isnan(v) else f"{v:.2g}").values if grid.size <= TEXT_CELLS else None
        fig.add_trace(go.Heatmap(z=grid.values, x=list(grid.columns), y=list(grid.index), zmin=0, zmax=top,
                                 colorscale="Blues", showscale=col == len(posts), text=text,
                                 texttemplate="%{text}" if text is not None else None,
                                 colorbar=dict(title="rel_delta (%)"),
                                 hovertemplate=f"{post} layer %{{y}} %{{x}}: %{{z:.3g}} %<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="kind", row=1, col=col)
    fig.update_yaxes(title_text="layer", autorange="reversed", dtick=1 if run.table.layer.max() < 16 else None,
                     row=1, col=1)
    return title_layout(fig, moved_title(run, posts, control) + "<br><sup>||W_post - W_base||_F / ||W_base||_F in %, "
                   f"one cell per matrix (n = {len(run.table)} matrices)</sup>",
                   max(340, 24 * int(run.table.layer.max() + 1) + 220))


def ratio_bands(run: Run, control: str | None) -> go.Figure | str:
    """Per post: the median ratio curve s_p,i / s_b,i of each kind and its 25-75 % band over matrices."""
    bands = grids.ratio_bands(run)
    if not bands:
        return "No singular values were stored for these matrices (spectra/ is empty): no ratio curves."
    posts = [p for p in grids.posts_with_control_last(run.table, control) if any(b.post == p for b in bands)]
    kinds = list(dict.fromkeys(b.kind for b in bands))
    fig = make_subplots(rows=1, cols=len(posts), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[control_title(p, control) for p in posts])
    step = float(grids.RATIO_GRID[1] - grids.RATIO_GRID[0])  # x as x0 + k dx: only the y values are stored
    start = float(grids.RATIO_GRID[0])
    for col, post in enumerate(posts, start=1):
        for band in (b for b in bands if b.post == post):
            colour = COLOURS[kinds.index(band.kind) % len(COLOURS)]
            common = dict(x0=start, dx=step, mode="lines", legendgroup=band.kind, hoverinfo="skip", showlegend=False)
            fig.add_trace(go.Scatter(y=band.low.astype(np.float32), line=dict(width=0, color=colour), **common),
                          row=1, col=col)
            fig.add_trace(go.Scatter(y=band.high.astype(np.float32), line=dict(width=0, color=colour), fill="tonexty",
                                     fillcolor=_transparent(colour), **common), row=1, col=col)
            fig.add_trace(go.Scatter(y=band.median.astype(np.float32), x0=start, dx=step, mode="lines", name=band.kind,
                                     legendgroup=band.kind, showlegend=col == 1, line=dict(color=colour, width=2),
                                     hovertemplate=f"{band.kind}: median %{{y:.3f}} at i/r %{{x}} "
                                                   f"(n = {band.n})<extra></extra>"), row=1, col=col)
        fig.add_hline(y=1.0, line_dash="dot", line_color="#888", row=1, col=col)
        fig.update_xaxes(title_text="i / r (0 = largest)", range=[0, 1], row=1, col=col)
    values = np.concatenate([np.r_[b.low, b.high] for b in bands])
    fig.update_yaxes(title_text="s_post,i / s_base,i", range=list(_span(values)), row=1, col=1)
    n = max(b.n for b in bands)
    return title_layout(fig, "Singular-value ratios per kind: a flat line = one scaling factor for the whole matrix"
                        f"<br><sup>each matrix's ratios: median per 1/{grids.RATIO_BINS} of the index range; then the "
                        f"median over matrices (line) and their 25-75 % (band); up to n = {n} matrices per kind</sup>",
                        440)


def _transparent(colour: str, alpha: float = 0.2) -> str:
    """'#4c72b0' -> 'rgba(76,114,176,0.2)'."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _span(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.9, 1.1)
    lo, hi = min(float(np.quantile(finite, 0.02)), 1.0), max(float(np.quantile(finite, 0.98)), 1.0)
    pad = 0.08 * max(hi - lo, 1e-6)
    return (round(lo - pad, 6), round(hi + pad, 6))


def zpair_title(run: Run, posts: list[str], significant) -> str:
    parts = []
    for post in posts:
        mine = run.table.post.astype(str) == post
        parts.append(f"{post} {int(significant[mine].sum())} of {int(run.table.loc[mine, 'p_pair'].notna().sum())}")
    return "Rotations beyond the pairing null (BH-significant matrices): " + ", ".join(parts)


def zpair_map(run: Run, control: str | None) -> go.Figure | None:
    """z_pair per (layer, kind), diverging at 0; cells BH-significant under the pairing null marked '*'."""
    if "z_pair" not in run.table or run.table.z_pair.notna().sum() == 0 or "p_pair" not in run.table:
        return None
    table = run.table.assign(_sig=grids.bh_significant(run.table).astype(float))
    posts = grids.posts_with_control_last(table, control)
    span = max(3.0, float(np.nanquantile(np.abs(table.z_pair), 0.98)))
    fig = make_subplots(rows=1, cols=len(posts), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[control_title(p, control) for p in posts])
    for col, post in enumerate(posts, start=1):
        z, sig = grids.layer_kind_grid(table, post, "z_pair"), grids.layer_kind_grid(table, post, "_sig")
        text = [[("" if np.isnan(v) else f"{round(v, 1) + 0.0:.1f}") + ("*" if s == 1 else "") for v, s in zip(zr, sr)]
                for zr, sr in zip(z.values, sig.values)] if z.size <= TEXT_CELLS else None
        fig.add_trace(go.Heatmap(z=z.values, x=list(z.columns), y=list(z.index), zmid=0, zmin=-span, zmax=span,
                                 colorscale="RdBu_r", showscale=col == len(posts), text=text,
                                 texttemplate="%{text}" if text is not None else None,
                                 colorbar=dict(title="z_pair (sd)"),
                                 hovertemplate=f"{post} layer %{{y}} %{{x}}: z_pair %{{z:.2f}}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="kind", row=1, col=col)
    fig.update_yaxes(title_text="layer", autorange="reversed", dtick=1 if table.layer.max() < 16 else None,
                     row=1, col=1)
    return title_layout(fig, zpair_title(run, posts, table._sig == 1) + "<br><sup>z_pair: sd of sym_frac above the "
                   "pairing null per matrix (red = rotations agree); * = BH-significant at q = 0.05 within the "
                   "post</sup>",
                   max(340, 24 * int(table.layer.max() + 1) + 220))


def overlap_differences(run: Run) -> go.Figure | str | None:
    """For the most and the least consistent matrices: Q_U, Q_V and their difference Q_U - Q_V (top-left block)."""
    picks = grids.overlap_picks(run.table)
    if not picks:
        return None
    blocks = [(label, row, run.spectra(row.post, row["name"])) for label, row in picks]
    blocks = [(label, row, s) for label, row, s in blocks if s is not None and "Q_U_block" in s]
    if not blocks:
        return "No overlap blocks were stored for these matrices (spectra/ lacks Q_U_block): nothing to draw."
    titles = []
    for label, row, s in blocks:
        diff = float(np.linalg.norm(s["Q_U_block"] - s["Q_V_block"]) / (2 * np.sqrt(len(s["Q_U_block"]))))
        titles += ["Q_U", "Q_V", f"Q_U - Q_V (block incons {diff:.3f}; matrix {row.incons:.3f})"]
    fig = make_subplots(rows=len(blocks), cols=3, subplot_titles=titles, vertical_spacing=0.14,
                        horizontal_spacing=0.05)
    differences = [s["Q_U_block"] - s["Q_V_block"] for _, _, s in blocks]
    reach = max(1e-6, max(float(np.abs(d).max()) for d in differences))  # the differences on their own scale
    for r, ((label, row, s), difference) in enumerate(zip(blocks, differences), start=1):
        for c, z in enumerate((s["Q_U_block"], s["Q_V_block"], difference), start=1):
            scale = dict(zmin=-1, zmax=1, showscale=(r, c) == (1, 1),
                         colorbar=dict(title="cos", x=1.02, y=0.78, len=0.42))
            if c == 3:
                scale = dict(zmin=-reach, zmax=reach, showscale=r == 1,
                             colorbar=dict(title="Q_U - Q_V", x=1.02, y=0.22, len=0.42))
            fig.add_trace(go.Heatmap(z=z.astype(np.float32), colorscale="RdBu_r", zmid=0, **scale,
                                     hovertemplate="base %{y}, post %{x}: %{z:.3f}<extra></extra>"), row=r, col=c)
            named = f"<b>{label}</b>: {row.post} {_short(row['name'])}<br>base index j"
            fig.update_yaxes(autorange="reversed", title_text=named if c == 1 else None, row=r, col=c)
            fig.update_xaxes(title_text="post index i", row=r, col=c)
    size = len(blocks[0][2]["Q_U_block"])
    return title_layout(fig, "Consistent rotations show as Q_U - Q_V near zero (white); inconsistent ones as colour"
                        f"<br><sup>overlaps U_b^T U_p and V_b^T V_p, top-left {size} x {size} after sign fixing; "
                        "incons = ||Q_U - Q_V||_F / (2 sqrt r)</sup>", 380 * len(blocks) + 140)


def _short(name: str) -> str:
    return name.replace("model.layers.", "L").replace(".weight", "").replace("self_attn.", "").replace("mlp.", "")
