"""Assemble report.html (one file, plotly.js inline, no network) and figures/*.png."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from orthoscope._version import __version__
from orthoscope.pipeline.store import write_text
from orthoscope.report import figures
from orthoscope.report.data import Run, load_run
from orthoscope.report.pngs import write_pngs

CONTROL_SENTENCE = (
    "Any small update looks 'consistent' under incons (the shared part of the left and right rotations is "
    "amplified by small singular gaps), so the control is sym_frac: the symmetric share of the update in the base "
    "frame, which is 0.5 for noise of any size and 1 for a perfectly consistent rotation."
)


def ratio_matrices(run: Run) -> list[str]:
    """A few matrices for the ratio curves: q, o and down of the first and last layers."""
    table = run.table[run.table.layer >= 0]
    if table.empty:
        return list(run.table.name[:3])
    layers = sorted({table.layer.min(), table.layer.max()})
    picks = table[table.layer.isin(layers) & table.kind.isin(["q", "o", "down"])]
    return list(dict.fromkeys(picks.name))[:6] or list(table.name[:3])


def write_report(folder: str | Path) -> Path:
    """Write `folder/report.html` and `folder/figures/*.png` from a compare run folder."""
    run = load_run(folder)
    names = ratio_matrices(run)
    sections = [
        ("Singular-value scaling", "", figures.svsm(run)),
        ("Ratio curves", "", figures.ratio_curves(run, names)),
        ("Rotation consistency", "", figures.consistency(run)),
        ("The control: delta symmetry", CONTROL_SENTENCE, figures.symmetry(run)),
        ("One-SVD misfit", "", figures.asymmetry(run)),
        ("Singular-vector overlaps", "", figures.overlap_images(run)),
        ("Intruder dimensions", "", figures.intruder_bars(run)),
        ("Interventions", "", figures.experiment_figure(run)),
    ]
    body = [_header(run)] + [_section(title, text, fig) for title, text, fig in sections if fig is not None]
    body.append(_tables(run))
    write_text(run.folder / "report.html", _page("\n".join(body)))
    write_pngs(run, run.folder / "figures", names)
    return run.folder / "report.html"


def _page(body: str) -> str:
    from plotly.offline import get_plotlyjs

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>orthoscope report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}
h1{{margin-bottom:.2em}} h2{{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}}
.note{{color:#555;max-width:900px}} code{{background:#f4f4f4;padding:0 3px}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head>
<body>{body}</body></html>"""


def _section(title: str, text: str, fig) -> str:
    note = f'<p class="note">{html.escape(text)}</p>' if text else ""
    return f"<h2>{html.escape(title)}</h2>{note}{fig.to_html(full_html=False, include_plotlyjs=False)}"


def _header(run: Run) -> str:
    summary = run.summary
    base = summary.get("base", {})
    rows = [("base", base.get("spec"), base.get("model_type"), base.get("revision"), base.get("fingerprint"))]
    rows += [(label, p.get("spec"), p.get("model_type"), p.get("revision"), p.get("fingerprint"))
             for label, p in summary.get("posts", {}).items()]
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    settings = html.escape(json.dumps(summary.get("settings", {})))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    skipped = "".join(f"<li>{html.escape(s['post'])} {html.escape(s['name'])}: {html.escape(s['reason'])}</li>"
                      for s in summary.get("skipped", []))
    return (f"<h1>orthoscope report</h1><p class='note'>orthoscope {html.escape(str(summary.get('orthoscope_version', __version__)))}, "
            f"torch {html.escape(str(summary.get('torch_version', '')))}; {summary.get('matrices', '?')} matrices per post in "
            f"{summary.get('seconds', '?')} s; settings {settings}</p>"
            f"<table><tr><th>role</th><th>input</th><th>model_type</th><th>revision</th><th>fingerprint</th></tr>{cells}</table>"
            + (f"<p class='note'>Notes:</p><ul>{notes}</ul>" if notes else "")
            + (f"<p class='note'>Skipped:</p><ul>{skipped}</ul>" if skipped else ""))


def _tables(run: Run) -> str:
    medians = run.table.groupby(["post", "kind"], sort=False)[
        ["a_geo", "disp", "incons", "incons_null", "asym", "sym_frac", "sym_frac_null", "intruders"]].median()
    parts = ["<h2>Medians per kind</h2>", medians.to_html(float_format=lambda v: f"{v:.4g}")]
    if run.evaluation:
        parts += ["<h2>Evaluation</h2>", pd.DataFrame(run.evaluation).T.to_html(float_format=lambda v: f"{v:.4g}")]
    if run.experiment is not None:
        parts += ["<h2>Intervention table</h2>", run.experiment.to_html(index=False, float_format=lambda v: f"{v:.4g}")]
    return "\n".join(parts)
