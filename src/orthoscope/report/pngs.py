"""Static PNG figures (matplotlib, offline) for papers, each titled: where the weights moved, z_pair, SVSM,
ratio bands, consistency, symmetry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orthoscope.pipeline.runfolder import RunFolder
from orthoscope.report import grids
from orthoscope.report.data import Run
from orthoscope.report.figures import _kinds, _posts, has, robust_range
from orthoscope.report.panels import control_title


def write_pngs(run: Run, store: RunFolder, control: str | None = None) -> list[Path]:
    """Every figure of the page that a paper would take, as a titled PNG in the run's figures/ (the same
    numbers as the page); `store` is held by `RunFolder.adding`."""
    import matplotlib

    matplotlib.use("Agg")
    posts = grids.posts_with_control_last(run.table, control)
    written = []
    if has(run, "rel_delta"):
        written.append(_save(store, "where_moved.png", _layer_kind(run, posts, control, "rel_delta")))
    if has(run, "z_pair") and "p_pair" in run.table:
        written.append(_save(store, "z_pair.png", _layer_kind(run, posts, control, "z_pair")))
    if has(run, "a_geo"):
        written.append(_save(store, "svsm.png", _svsm(run)))
    if has(run, "incons"):
        written.append(_save(store, "consistency.png", _per_layer(
            run, "incons", "incons_null", "Rotation inconsistency incons per layer (dotted: Gaussian null)")))
    if has(run, "sym_frac"):
        null = "sym_frac_pair_null" if has(run, "sym_frac_pair_null") else "sym_frac_null"
        written.append(_save(store, "sym_frac.png", _per_layer(
            run, "sym_frac", null, f"sym_frac per layer (dotted: {null.replace('_', ' ')}); above it = agreeing "
            "rotations", line=0.5)))
    bands = grids.ratio_bands(run)
    return written + ([_save(store, "ratio_curves.png", _ratios(bands, posts, control))] if bands else [])


def write_trajectory_png(run: Run, store: RunFolder) -> Path | None:
    """Per-kind medians against step for a checkpoint series (the HTML figure's metrics) as figures/trajectory.png,
    or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthoscope.report.series import TRAJECTORY, series_table

    table = series_table(run.table)
    metrics = [m for m in TRAJECTORY if m[0] in table and table[m[0]].notna().any()]
    if table.empty or not metrics:
        return None
    table = table.assign(step=table["step"].astype(float))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(7, 2.2 * len(metrics)), sharex=True, squeeze=False)
    for ax, (metric, null, label) in zip(axes[:, 0], metrics):
        for kind in _kinds(table):
            medians = table[table["kind"] == kind].groupby("step")[metric].median()
            ax.plot(medians.index, medians.values, "o-", ms=3, label=kind)
        if isinstance(null, tuple):
            ax.axhspan(null[0], null[1], color="#888", alpha=0.15, lw=0)
        ax.set_ylabel(label)
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0, 0].legend(fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("training step")
    fig.suptitle(f"Checkpoint series: per-kind medians against step ({table['step'].nunique()} checkpoints)",
                 fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return _save(store, "trajectory.png", fig, bbox=None)


def _save(store: RunFolder, name: str, fig, bbox: str | None = "tight") -> Path:
    """figures/`name` as a 130 dpi PNG, written atomically through the run folder; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        return store.write_figure(name, lambda tmp: fig.savefig(tmp, format="png", dpi=130, bbox_inches=bbox))
    finally:
        plt.close(fig)


LAYER_KIND = {
    "rel_delta": ("Blues", "rel_delta (%)",
                  "Where the weights moved: ||W_post - W_base|| / ||W_base|| per matrix, in %"),
    "z_pair": ("RdBu_r", "z_pair (sd above the pairing null)",
               "Rotations beyond the pairing null: z_pair per matrix (* = BH-significant, q = 0.05)"),
}
"""Per (layer, kind) PNGs: colour map, colour-bar label, title."""


def _layer_kind(run: Run, posts: list[str], control: str | None, metric: str):
    import matplotlib.pyplot as plt

    cmap, label, title = LAYER_KIND[metric]
    table = run.table.assign(_sig=grids.bh_significant(run.table).astype(float)) if metric == "z_pair" else run.table
    scale = 100.0 if metric == "rel_delta" else 1.0
    values = {p: grids.layer_kind_grid(table, p, metric) * scale for p in posts}
    if metric == "z_pair":
        span = max(3.0, float(np.nanquantile(np.abs(table.z_pair), 0.98)))
        limits = dict(vmin=-span, vmax=span)
    else:
        limits = dict(vmin=0, vmax=float(np.nanmax([np.nanmax(v.values) for v in values.values()])))
    layers = int(table.layer.max()) + 1
    fig, axes = plt.subplots(1, len(posts), figsize=(2.6 * len(posts) + 1.4, 0.32 * layers + 2.2), squeeze=False,
                             sharey=True)
    for ax, post in zip(axes[0], posts):
        grid = values[post]
        image = ax.imshow(grid.values, cmap=cmap, aspect="auto", **limits)
        ax.set_xticks(range(len(grid.columns)), grid.columns, fontsize=8)
        ax.set_yticks(range(len(grid.index)), grid.index, fontsize=8)
        ax.set_title(control_title(post, control), fontsize=9)
        ax.set_xlabel("kind", fontsize=8)
        if grid.size <= 120:  # small grids: each cell's value (z_pair: '*' = BH-significant)
            sig = grids.layer_kind_grid(table, post, "_sig").values if metric == "z_pair" else np.zeros(grid.shape)
            for (i, j), value in np.ndenumerate(grid.values):
                if np.isfinite(value):
                    ax.text(j, i, f"{round(value, 1) + 0.0:.1f}" + ("*" if sig[i, j] == 1 else ""), ha="center",
                            va="center", fontsize=6.5, color="white" if abs(value) > 0.6 * limits["vmax"] else "k")
    axes[0][0].set_ylabel("layer")
    bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.04)
    bar.set_label(label, fontsize=8)
    fig.suptitle(f"{title} (n = {len(table)} matrices)", fontsize=10, x=0.01, y=1.04, ha="left")
    return fig


def _svsm(run: Run):
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    table, posts, kinds = run.table[run.table.layer >= 0], _posts(run.table), _kinds(run.table)
    span = max(1e-3, float(np.nanmax(np.abs(np.log(table.a_geo))))) if len(table) else 0.1
    fig, axes = plt.subplots(1, len(posts), figsize=(3.2 * len(posts) + 1, 0.35 * table.layer.max() + 2.5),
                             squeeze=False)
    for ax, post in zip(axes[0], posts):
        grid = table[table.post == post].pivot_table(index="layer", columns="kind", values="a_geo")
        grid = grid.reindex(columns=[k for k in kinds if k in grid.columns])
        image = ax.imshow(np.log(grid.values), cmap="RdBu_r", norm=TwoSlopeNorm(0, -span, span), aspect="auto")
        ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=45, fontsize=8)
        ax.set_yticks(range(len(grid.index)), grid.index)
        ax.set_title(post)
        ax.set_xlabel("kind")
    axes[0][0].set_ylabel("layer")
    bar = fig.colorbar(image, ax=axes[0].tolist())
    ticks = np.linspace(-span, span, 5)
    bar.set_ticks(ticks, labels=[f"{np.exp(t):.3f}" for t in ticks])
    bar.set_label("a_geo (log scale, 1 = unchanged)")
    fig.suptitle(f"Singular-value scaling a_geo per layer and kind (1 = unchanged; n = {len(table)} matrices)",
                 y=1.03, fontsize=10)
    return fig


def _per_layer(run: Run, metric: str, null: str, title: str, line: float | None = None):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    table, posts, kinds = run.table[run.table.layer >= 0], _posts(run.table), _kinds(run.table)
    fig, axes = plt.subplots(1, len(posts), figsize=(3.6 * len(posts) + 1.2, 3.6), squeeze=False, sharey=True)
    for ax, post in zip(axes[0], posts):
        for i, kind in enumerate(kinds):
            rows = table[(table.post == post) & (table.kind == kind)].sort_values("layer")
            (handle,) = ax.plot(rows.layer, rows[metric], "o-", ms=3, label=kind)
            if null in rows:
                ax.plot(rows.layer, rows[null], ":", color=handle.get_color(), lw=1)
        if line is not None:
            ax.axhline(line, color="#c44e52", ls="--", lw=1)
        ax.set_title(post, fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel(metric)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False, title="kind")
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def _ratios(bands: list, posts: list[str], control: str | None):
    import matplotlib.pyplot as plt

    posts = [p for p in posts if any(b.post == p for b in bands)]
    kinds = list(dict.fromkeys(b.kind for b in bands))
    fig, axes = plt.subplots(1, len(posts), figsize=(3.6 * len(posts) + 1.2, 3.6), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, post in zip(axes[0], posts):
        for band in (b for b in bands if b.post == post):
            colour = colours[kinds.index(band.kind) % len(colours)]
            ax.fill_between(grids.RATIO_GRID, band.low, band.high, color=colour, alpha=0.2, lw=0)
            ax.plot(grids.RATIO_GRID, band.median, color=colour, lw=1.5, label=band.kind)
        ax.axhline(1.0, color="#888", ls=":")
        ax.set_title(control_title(post, control), fontsize=9)
        ax.set_xlabel("relative index i / r")
    values = np.concatenate([np.r_[b.low, b.high] for b in bands])
    axes[0][0].set_ylim(*robust_range(values, include=1.0))
    axes[0][0].set_ylabel("s_post,i / s_base,i")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False, title="kind")
    fig.suptitle(f"Singular-value ratios: median per kind (line), 25-75 % of matrices (band); flat = one factor "
                 f"(n = {max(b.n for b in bands)} per kind)", fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig
