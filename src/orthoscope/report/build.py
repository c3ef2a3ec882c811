"""Assemble report.html (one file, a trimmed plotly.js inline once, no network) and figures/*.png.

Order: the bottom line (the paper's claims per post), the figures that carry it (where the weights
moved, rotations against the pairing null, scaling, ratio curves, interventions), the verdicts in
detail, data and settings, the tables, then the rotation metrics' raw ingredients.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from orthoscope._version import __version__
from orthoscope.experiment.columns import GRID_OP, score_columns
from orthoscope.experiment.plot import GRID_TITLE, conclusions
from orthoscope.pipeline.runfolder import RunFolder
from orthoscope.report import figures, panels, series, tables
from orthoscope.report.bottom import STYLE as BOTTOM_STYLE
from orthoscope.report.bottom import bottom_line_html
from orthoscope.report.data import Run, load_run
from orthoscope.report.pngs import write_pngs, write_trajectory_png
from orthoscope.verdicts.bottom import bottom_line

CONTROL_SENTENCE = (
    "Any small update looks 'consistent' under incons (the shared part of the left and right rotations is "
    "amplified by small singular gaps), so the control is sym_frac: the symmetric share of the update in the base "
    "frame. Against its pairing null (the same update with left/right agreement randomised) it is evidence of "
    "consistent rotations; against the Gaussian null (0.5) it is not, since an update concentrated on the leading "
    "directions lifts it through the diagonal alone."
)


PAIRING_SENTENCE = (
    "Each cell is one matrix: how far its rotation symmetry sym_frac lies above what the same update gives with "
    "left and right rotations made independent (the pairing null), in standard deviations. The paper's consistent "
    "rotations predict red cells marked * throughout; the control run shows what an unrelated post-training gives.")


def write_report(folder: str | Path) -> Path:
    """Write `folder/report.html` and `folder/figures/*.png` from a compare run folder, under the run's lock."""
    with RunFolder(folder).adding() as store:
        run = load_run(store.path)
        panels_run, page = _page_of(run)
        path = store.write_page(page)
        if len(panels_run.table):
            write_pngs(panels_run, store, run.summary["verdicts"].get("control"))
        write_trajectory_png(run, store)
    return path


def figures_of(run: Run) -> dict[str, go.Figure]:
    """The page's plotly figures by the id of the div that draws them (`fig-<title>`): what the page embeds,
    as figure objects to read back.

    >>> from orthoscope.report.data import load_run
    >>> sorted(figures_of(load_run("runs/demo")))[:2]   # doctest: +SKIP
    ['fig-checkpoint-series', 'fig-interventions']
    """
    _, first, later = _sections(run)
    return {_div_id(title): fig for title, _, fig in first + later if isinstance(fig, go.Figure)}


def _sections(run: Run) -> tuple[Run, list[tuple], list[tuple]]:
    """(the run without its checkpoint series, the first figures' sections, the later ones): (title, note, figure
    or the sentence that replaces an empty one, or None where there is nothing to show)."""
    control = run.summary["verdicts"].get("control")
    in_series = series.series_table(run.table)
    # a checkpoint series is drawn against step; the per-post panels keep the posts outside it
    panels_run = dataclasses.replace(run, table=run.table.drop(in_series.index)) if len(in_series) else run
    first = [("Checkpoint series", "", series.trajectories(run))]
    rotations: list = []
    if len(panels_run.table):
        first += [
            ("Where the weights moved", "", panels.where_moved(panels_run, control)),
            ("Rotations against the pairing null", PAIRING_SENTENCE, panels.zpair_map(panels_run, control)),
            ("Singular-value scaling", "", figures.svsm(panels_run)),
            ("Ratio curves", "", panels.ratio_bands(panels_run, control)),
        ]
        rotations = [
            ("Rotation consistency", "", figures.consistency(panels_run)),
            ("The control: delta symmetry", CONTROL_SENTENCE, figures.symmetry(panels_run)),
            ("One-SVD misfit", "", figures.asymmetry(panels_run)),
            ("Singular-vector overlaps", "", panels.overlap_differences(panels_run)),
        ]
    first.append(("Interventions", _conclusions(run), figures.experiment_figure(run)))
    later = rotations + [
        ("Intruder dimensions", "", figures.intruder_bars(run)),
        ("Post against post", "", series.update_cos_heatmap(run)),
    ]
    return panels_run, first, later


def _page_of(run: Run) -> tuple[Run, str]:
    """(the run without its checkpoint series, the page)."""
    from orthoscope.verdicts import verdict_html

    verdicts = run.summary["verdicts"]
    panels_run, first, later = _sections(run)
    body = [_header(run), bottom_line_html(bottom_line(verdicts), verdicts.get("control"), verdicts.get("notes", []))]
    body += [_section(title, text, fig) for title, text, fig in first if fig is not None]
    body += [verdict_html(verdicts), tables.data_links(run),
             tables.settings_table(run), tables.most_changed(run), tables.evaluation_tables(run)]
    if any(fig is not None for _, _, fig in later):
        body.append("<h2>More figures</h2><p class='note'>incons (rotation inconsistency) reads 'consistent' for any "
                    "small update: the pairing-null figure above is the test; these are its raw ingredients.</p>")
    body += [_section(title, text, fig) for title, text, fig in later if fig is not None]
    body.append(tables.medians_table(run))
    return panels_run, _page("\n".join(part for part in body if part))


def _conclusions(run: Run) -> str:
    """The experiment's one line per claim (as the note under the section's title)."""
    if run.experiment is None or not score_columns(run.experiment):
        return ""
    grid = run.experiment.get("op", pd.Series(dtype=str)).eq(GRID_OP).any()
    return "\n".join(conclusions(run.experiment) + ([GRID_TITLE] if grid else []))


PLOTLY_JS = Path(__file__).parent / "assets" / "plotly-orthoscope.min.js"
"""plotly.js with only the traces the report draws (scatter, bar, heatmap): 1.26 MB instead of 4.8 MB.
How it is built: assets/build.js."""
STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{margin:.1em 0;font-size:1.5em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{margin:1.2em 0 .3em} .verdicts li{margin:.3em 0;max-width:1000px}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap} td.t{text-align:left}
th{background:#f6f6f6;white-space:normal} td:first-child,.verdict-overview td,.verdict-overview th{text-align:left}
.verdict-overview td,.verdict-table td:last-child,td.t{white-space:normal;min-width:8em}
.verdict-table td,.verdict-table th{white-space:normal;padding:3px 5px}
details{margin:.2em 0 1em} .note{color:#555;max-width:1000px} ul.note{padding-left:1.2em}
code{background:#f4f4f4;padding:0 3px} .links a{margin:0 .3em} .wide{overflow-x:auto}"""


def _page(body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>orthoscope report</title>
<style>{STYLE}{BOTTOM_STYLE}</style>
<script type="text/javascript">{PLOTLY_JS.read_text()}</script></head>
<body>{body}</body></html>"""


CONFIG = {"displayModeBar": False, "responsive": True}
"""No mode bar (it covered the titles); zoom by dragging, double-click to reset."""


def compact_template() -> go.layout.Template:
    """plotly's default look (its layout part) without the per-trace defaults the report never relies on:
    7 KB less per figure, since every figure carries its template."""
    import plotly.io as pio

    layout = pio.templates["plotly"].layout.to_plotly_json()
    keep = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor", "plot_bgcolor",
            "xaxis", "yaxis", "shapedefaults", "annotationdefaults", "title")
    return go.layout.Template(layout={k: layout[k] for k in keep if k in layout})


def _section(title: str, text: str, fig: go.Figure | str) -> str:
    lines = text.split("\n") if text else []
    note = ("<ul class='note'>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"
            if len(lines) > 1 else f'<p class="note">{html.escape(text)}</p>' if text else "")
    if isinstance(fig, str):  # an empty figure is replaced by one sentence
        return f"<h2>{html.escape(title)}</h2>{note}<p class='empty'>{html.escape(fig)}</p>"
    fig.update_layout(template=compact_template())
    return (f"<h2>{html.escape(title)}</h2>{note}"
            f"{fig.to_html(full_html=False, include_plotlyjs=False, div_id=_div_id(title), config=CONFIG)}")


def _div_id(title: str) -> str:
    """The id of the div that draws a section's figure.

    >>> _div_id("Rotations against the pairing null")
    'fig-rotations-against-the-pairing-null'
    """
    return "fig-" + "-".join(title.lower().replace(":", "").split())


def _header(run: Run) -> str:
    summary = run.summary
    version = summary.get("orthoscope_version", __version__)
    posts = list(dict.fromkeys(run.table.post.astype(str)))
    return (f"<h1>orthoscope report</h1><p class='note' style='margin:0'>{len(posts)} post model(s) against "
            f"{html.escape(str((summary.get('base') or {}).get('spec', 'the base')))}: "
            f"{summary.get('matrices', '?')} matrices per post; orthoscope {html.escape(str(version))}.</p>")
