"""Static PNG figures (matplotlib, offline) for papers: SVSM, consistency, symmetry, ratio curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orthoscope.report.data import Run
from orthoscope.report.figures import _kinds, _posts, _short, has, robust_range


def write_pngs(run: Run, folder: Path, ratio_names: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = [_svsm(run, folder / "svsm.png")] if has(run, "a_geo") else []
    if has(run, "incons"):
        written.append(_per_layer(run, "incons", "incons_null", folder / "consistency.png"))
    if has(run, "sym_frac"):
        null = "sym_frac_pair_null" if has(run, "sym_frac_pair_null") else "sym_frac_null"
        written.append(_per_layer(run, "sym_frac", null, folder / "sym_frac.png", line=0.5))
    return written + [_ratios(run, ratio_names, folder / "ratio_curves.png")]


def write_trajectory_png(run: Run, path: Path) -> Path | None:
    """Per-kind medians against step for a checkpoint series (the HTML figure's metrics), or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthoscope.report.series import TRAJECTORY, series_table

    table = series_table(run.table)
    metrics = [m for m in TRAJECTORY if m[0] in table and table[m[0]].notna().any()]
    if table.empty or not metrics:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
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
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _svsm(run: Run, path: Path) -> Path:
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
    fig.suptitle("SVSM: singular-value scaling a_geo per layer and kind", y=1.03)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def _per_layer(run: Run, metric: str, null: str, path: Path, line: float | None = None) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    table, posts, kinds = run.table[run.table.layer >= 0], _posts(run.table), _kinds(run.table)
    fig, axes = plt.subplots(1, len(posts), figsize=(4.5 * len(posts), 3.6), squeeze=False, sharey=True)
    for ax, post in zip(axes[0], posts):
        for i, kind in enumerate(kinds):
            rows = table[(table.post == post) & (table.kind == kind)].sort_values("layer")
            (handle,) = ax.plot(rows.layer, rows[metric], "o-", ms=3, label=kind)
            if null in rows:
                ax.plot(rows.layer, rows[null], ":", color=handle.get_color(), lw=1)
        if line is not None:
            ax.axhline(line, color="#c44e52", ls="--", lw=1)
        ax.set_title(post)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel(f"{metric} (dotted: {null})")
    axes[0][-1].legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _ratios(run: Run, names: list[str], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    values = []
    for post, name, x, y in run.ratio_curves(names):
        ax.plot(x, y, lw=1, label=f"{post}: {_short(name)}")
        values.append(y)
    if values:  # 1-99 % quantiles: tail values near the floor would squash the curves
        ax.set_ylim(*robust_range(np.concatenate(values), include=1.0))
        ax.legend(fontsize=6)
    ax.axhline(1.0, color="#888", ls=":")
    ax.set_xlabel("relative index i / r")
    ax.set_ylabel("s_p,i / s_b,i")
    return _save(fig, path)
