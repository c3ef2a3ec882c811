"""Assemble report.html (one file, plotly.js inline, no network) and figures/*.png.

Order: the verdicts (the answer), links to the data, inputs and settings, the most changed
matrices, then the figures (a checkpoint series as curves against step), then tables.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import plotly.graph_objects as go

from orthoscope._version import __version__
from orthoscope.pipeline.store import write_text
from orthoscope.report import figures, series, tables
from orthoscope.report.data import Run, load_run
from orthoscope.report.pngs import write_pngs, write_trajectory_png

CONTROL_SENTENCE = (
    "Any small update looks 'consistent' under incons (the shared part of the left and right rotations is "
    "amplified by small singular gaps), so the control is sym_frac: the symmetric share of the update in the base "
    "frame. Against its pairing null (the same update with left/right agreement randomised) it is evidence of "
    "consistent rotations; against the Gaussian null (0.5) it is not, since an update concentrated on the leading "
    "directions lifts it through the diagonal alone."
)


def ratio_matrices(run: Run) -> list[str]:
    """A few matrices for the ratio curves: q, o and down of the first and last layers."""
    table = run.table[run.table.layer >= 0]
    if table.empty:
        return list(run.table.name[:3])
    layers = sorted({table.layer.min(), table.layer.max()})
    picks = table[table.layer.isin(layers) & table.kind.isin(["q", "o", "down"])]
    return list(dict.fromkeys(picks.name))[:6] or list(table.name[:3])


def verdicts_of(run: Run) -> dict:
    """summary.json's verdicts, or computed from the table for runs written before verdicts existed."""
    from orthoscope.verdicts import compute_verdicts

    verdicts = run.summary.get("verdicts")
    if isinstance(verdicts, dict) and verdicts.get("posts") is not None:
        return verdicts
    return compute_verdicts(run.table)


def write_report(folder: str | Path) -> Path:
    """Write `folder/report.html` and `folder/figures/*.png` from a compare run folder."""
    from orthoscope.verdicts import verdict_html

    run = load_run(folder)
    names = ratio_matrices(run)
    in_series = series.series_table(run.table)
    # a checkpoint series is drawn against step; the per-post panels keep the posts outside it
    panels = dataclasses.replace(run, table=run.table.drop(in_series.index)) if len(in_series) else run
    sections = [("Checkpoint series", "", series.trajectories(run))]
    if len(panels.table):
        sections += [
            ("Singular-value scaling", "", figures.svsm(panels)),
            ("Ratio curves", "", figures.ratio_curves(panels, names)),
            ("Rotation consistency", "", figures.consistency(panels)),
            ("The control: delta symmetry", CONTROL_SENTENCE, figures.symmetry(panels)),
            ("One-SVD misfit", "", figures.asymmetry(panels)),
            ("Singular-vector overlaps", "", figures.overlap_images(panels)),
        ]
    sections += [
        ("Intruder dimensions", "", figures.intruder_bars(run)),
        ("Post against post", "", series.update_cos_heatmap(run)),
        ("Interventions", "", figures.experiment_figure(run)),
    ]
    body = [_header(run), verdict_html(verdicts_of(run)), tables.data_links(run), tables.settings_table(run),
            tables.most_changed(run)]
    body += [_section(title, text, fig) for title, text, fig in sections if fig is not None]
    body += [tables.medians_table(run), tables.evaluation_tables(run)]
    write_text(run.folder / "report.html", _page("\n".join(part for part in body if part)))
    if len(panels.table):
        write_pngs(panels, run.folder / "figures", names)
    write_trajectory_png(run, run.folder / "figures" / "trajectory.png")
    return run.folder / "report.html"


def _page(body: str) -> str:
    from plotly.offline import get_plotlyjs

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>orthoscope report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}
h1{{margin-bottom:.2em}} h2{{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}}
h3{{margin:1.2em 0 .3em}} .verdicts li{{margin:.3em 0;max-width:1000px}}
table{{border-collapse:collapse;font-size:13px;margin:.5em 0}} td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}} td.t{{text-align:left}}
th{{background:#f6f6f6}} td:first-child,.verdict-overview td,.verdict-overview th{{text-align:left}} details{{margin:.2em 0 1em}}
.note{{color:#555;max-width:900px}} code{{background:#f4f4f4;padding:0 3px}} .links a{{margin:0 .3em}} .wide{{overflow-x:auto}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head>
<body>{body}</body></html>"""


def _section(title: str, text: str, fig: go.Figure | str) -> str:
    note = f'<p class="note">{html.escape(text)}</p>' if text else ""
    if isinstance(fig, str):  # an empty figure is replaced by one sentence
        return f"<h2>{html.escape(title)}</h2>{note}<p class='empty'>{html.escape(fig)}</p>"
    div_id = "fig-" + "-".join(title.lower().replace(":", "").split())
    return (f"<h2>{html.escape(title)}</h2>{note}"
            f"{fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)}")


def _header(run: Run) -> str:
    summary = run.summary
    version = summary.get("orthoscope_version", __version__)
    posts = list(dict.fromkeys(run.table.post.astype(str)))
    return (f"<h1>orthoscope report</h1><p class='note'>{len(posts)} post model(s) against "
            f"{html.escape(str((summary.get('base') or {}).get('spec', 'the base')))}: "
            f"{summary.get('matrices', '?')} matrices per post; orthoscope {html.escape(str(version))}.</p>")
