"""The report's HTML tables: data links, settings, inputs, most changed matrices, medians with n."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from orthoscope.report.data import Run

DATA_FILES = ("metrics.csv", "metrics.parquet", "summary.json", "update_cos.parquet", "eval.json")
MEDIAN_COLUMNS = ("a_geo", "disp", "fit_resid", "rel_delta", "incons", "incons_null", "asym", "sym_frac",
                  "sym_frac_pair_null", "sym_frac_null", "z_pair", "intruders")
"""Medians per kind shown in the report (those the run has)."""
CHANGED_COLUMNS = ("post", "name", "kind", "layer", "expert", "rel_delta", "a_fro", "a_geo", "disp", "sym_frac",
                   "z_pair", "p_pair")
TOP_CHANGED = 15


def _float(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _cell(value) -> str:
    """Numbers right-aligned, text left-aligned."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return f"<td{'' if numeric else ' class=t'}>{html.escape(_float(value))}</td>"


def html_table(frame: pd.DataFrame, cls: str = "") -> str:
    """A plain HTML table (strings escaped, floats to 4 significant digits, missing as blank)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<div class='wide'><table class='{cls}'><tr>{head}</tr>{rows}</table></div>"


def data_links(run: Run) -> str:
    """Relative links to the data files present in the run folder."""
    links = [f"<a href='{name}'>{name}</a>" for name in DATA_FILES if (run.folder / name).is_file()]
    return f"<p class='links'>Data: {' &middot; '.join(links)}</p>" if links else ""


def settings_table(run: Run) -> str:
    """Inputs (one row per model) and settings (one row per setting): no JSON."""
    summary = run.summary
    base = summary.get("base", {}) or {}
    inputs = [("base", base)] + list((summary.get("posts", {}) or {}).items())
    frame = pd.DataFrame([{"role": label, "input": p.get("spec"), "model_type": p.get("model_type"),
                           "revision": p.get("revision"), "fingerprint": p.get("fingerprint")}
                          for label, p in inputs if isinstance(p, dict)])
    settings = dict(summary.get("settings", {}) or {})
    settings.update({k: summary[k] for k in ("matrices", "seconds", "orthoscope_version", "torch_version")
                     if k in summary})
    rows = pd.DataFrame({"setting": list(settings), "value": [_setting(v) for v in settings.values()]})
    parts = ["<h2>Inputs and settings</h2>"]
    if len(frame):
        parts.append(html_table(frame, "inputs"))
    if len(rows):
        parts.append(html_table(rows, "settings"))
    notes = summary.get("notes") or []
    if notes:
        parts.append("<p class='note'>Notes:</p><ul>" + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
                     + "</ul>")
    skipped = summary.get("skipped") or []
    if skipped:
        parts.append("<p class='note'>Skipped:</p><ul>" + "".join(
            f"<li>{html.escape(str(s.get('post')))} {html.escape(str(s.get('name')))}: "
            f"{html.escape(str(s.get('reason')))}</li>" for s in skipped if isinstance(s, dict)) + "</ul>")
    return "\n".join(parts)


def _setting(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def change_score(table: pd.DataFrame) -> tuple[str, pd.Series] | None:
    """How much each matrix moved: rel_delta, else |a_fro - 1|, else 1 - coherence (the first the run has)."""
    for label, compute in (("rel_delta", lambda t: t["rel_delta"]),
                           ("|a_fro - 1|", lambda t: (t["a_fro"] - 1).abs()),
                           ("1 - coherence", lambda t: 1 - t["coherence"])):
        try:
            score = pd.to_numeric(compute(table), errors="coerce")
        except KeyError:
            continue
        if score.notna().any():
            return label, score
    return None


def most_changed(run: Run, top: int = TOP_CHANGED) -> str:
    scored = change_score(run.table)
    if scored is None:
        return ""
    label, score = scored
    order = score.sort_values(ascending=False, na_position="last").index[:top]
    columns = [c for c in CHANGED_COLUMNS if c in run.table]
    frame = run.table.loc[order, columns].copy()
    if label != "rel_delta":
        frame.insert(len(frame.columns), label, score.loc[order])
    return (f"<h2>Most changed matrices</h2><p class='note'>The {len(frame)} of {len(run.table)} rows with the "
            f"largest {html.escape(label)}.</p>" + html_table(frame, "changed"))


def medians_table(run: Run) -> str:
    columns = [c for c in MEDIAN_COLUMNS if c in run.table and run.table[c].notna().any()]
    if not columns:
        return ""
    grouped = run.table.groupby(["post", "kind"], sort=False)
    frame = grouped[columns].median(numeric_only=True).reset_index()
    frame.insert(2, "n", grouped.size().to_numpy())
    if "changed" in run.table:
        frame.insert(3, "n changed", grouped["changed"].sum().astype(int).to_numpy())
    return ("<h2>Medians per kind</h2><p class='note'>n: matrices in the group; rotation and symmetry medians "
            "are over the changed ones.</p>" + html_table(frame, "medians"))


def evaluation_tables(run: Run) -> str:
    parts = []
    if run.evaluation:
        frame = pd.DataFrame(run.evaluation).T.reset_index(names="model")
        parts += ["<h2>Evaluation</h2>", html_table(frame, "evaluation")]
    if run.experiment is not None:
        parts += ["<h2>Intervention table</h2>", html_table(run.experiment, "experiment")]
    return "\n".join(parts)
