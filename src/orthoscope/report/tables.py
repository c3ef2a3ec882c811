"""The report's HTML tables: data links, settings, inputs, most changed matrices, medians with n."""

from __future__ import annotations

import html
import inspect

import numpy as np
import pandas as pd

from orthoscope.evaluation.stats import interval_columns
from orthoscope.experiment.columns import POST
from orthoscope.report.data import Run


def experiment_ppl_block(key: dict) -> int:
    """Tokens per block of the experiment's perplexity: recorded in its key (`ppl_block`); an experiment
    from before that record used `perplexity`'s default block."""
    if isinstance(key.get("ppl_block"), int):
        return key["ppl_block"]
    from orthoscope.evaluation.perplexity import perplexity  # torch: only for an experiment without the record

    return inspect.signature(perplexity).parameters["block"].default

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
        parts += ["<h2>Evaluation</h2>", evaluation_table(run.evaluation), evaluated_twice(run)]
    if run.experiment is not None:
        parts += ["<h2>Intervention table</h2>", html_table(run.experiment, "experiment")]
    return "\n".join(p for p in parts if p)


def evaluation_table(evaluation: dict) -> str:
    """One row per model: each accuracy as 'value [Wilson 95 %]' with n in its header, ppl with its block."""
    rows = {m: r for m, r in evaluation.items() if isinstance(r, dict)}
    tasks = list(dict.fromkeys(t for r in rows.values() for t in r if ":" not in t))
    intervals = interval_columns([c for r in rows.values() for c in r])
    heads, cells = ["model"], {m: [m] for m in rows}
    for task in tasks:
        sizes = sorted({int(r[f"{task}:n"]) for r in rows.values() if r.get(f"{task}:n") is not None})
        blocks = sorted({int(r["ppl:block"]) for r in rows.values() if task == "ppl" and r.get("ppl:block")})
        heads.append(task + (f" (n = {'/'.join(map(str, sizes))}, Wilson 95 %)" if sizes else "")
                     + (f" (blocks of {'/'.join(map(str, blocks))} tokens)" if blocks else ""))
        for model, r in rows.items():
            value = r.get(task)
            text = "" if value is None else f"{value:.4g}"
            if task in intervals and r.get(f"{task}:lo") is not None:
                text += f" [{r[f'{task}:lo']:.2f}, {r[f'{task}:hi']:.2f}]"
            cells[model].append(text)
    frame = pd.DataFrame(list(cells.values()), columns=heads)
    note = "" if intervals or not any(t != "ppl" for t in tasks) else (
        "<p class='note'>This eval.json records no sample sizes: no intervals (an older orthoscope wrote it; "
        "rerun <code>orthoscope demo</code> or <code>orthoscope eval</code>).</p>")
    return html_table(frame, "evaluation") + note


def evaluated_twice(run: Run) -> str:
    """Where the experiment's post model also has a row in eval.json: the two numbers side by side, and why
    they differ (perplexity block length, text, number of problems) when they do. When the run cannot tell
    which row is that model (its identity is recorded differently), the two protocols are stated instead."""
    key, table = run.experiment_key, run.experiment
    if not key or table is None or not run.evaluation or POST not in set(table.condition):
        return ""
    ids = {key[k] for k in ("post", "post_fingerprint") if isinstance(key.get(k), str)}
    label = next((name for name, post in (run.summary.get("posts") or {}).items()
                  if isinstance(post, dict) and ids & {v for v in post.values() if isinstance(v, str)}), None)
    row = run.evaluation.get(label) if label else None
    post, there = table[table.condition == POST].iloc[0], experiment_ppl_block(key)
    if not isinstance(row, dict):
        return protocols(run.evaluation, post, key, there)
    same, why = [], []
    if "ppl" in row and "ppl" in post and pd.notna(post["ppl"]):
        block = row.get("ppl:block")
        (same if np.isclose(row["ppl"], post["ppl"], rtol=1e-6) else why).append(
            f"ppl {row['ppl']:.4g} here, {post['ppl']:.4g} in the intervention table's post row: "
            f"{_same_text(row, key)}, scored in blocks of {block or 'unrecorded'} tokens here and {there} tokens there"
            + (f" (the model was trained on {block}-token blocks, so beyond them it predicts with more context "
               f"than it ever saw)" if block and block < there else ""))
    for task in interval_columns(table.columns):
        if task in row and row.get(f"{task}:n") and int(row[f"{task}:n"]) != int(post[f"{task}:n"]):
            why.append(f"{task} {row[task]:.2f} on {int(row[f'{task}:n'])} problems here, {post[task]:.2f} on the "
                       f"first {int(post[f'{task}:n'])} there (the experiment's --limit)")
    if not why:
        agree = f"<p class='note'>{html.escape(label)} is evaluated twice in this run; the numbers agree.</p>"
        return agree if same else ""
    return (f"<p class='note'><b>{html.escape(label)} is evaluated twice in this run, with different protocols:</b> "
            + "; ".join(html.escape(w) for w in why) + ".</p>")


def _same_text(row: dict, key: dict) -> str:
    return "the same held-out text" if row.get("ppl:text") and row.get("ppl:text") == key.get("text") else \
        "possibly different texts"


def protocols(evaluation: dict, post: pd.Series, key: dict, there: int) -> str:
    """The Evaluation table's and the intervention table's protocols, where they differ (one sentence)."""
    rows = [r for r in evaluation.values() if isinstance(r, dict)]
    blocks = sorted({int(r["ppl:block"]) for r in rows if r.get("ppl:block")})
    sizes = sorted({int(v) for r in rows for k, v in r.items() if k.endswith(":n") and v})
    limit = key.get("limit")
    differ = []
    if "ppl" in post and pd.notna(post["ppl"]) and blocks and blocks != [there]:
        differ.append(f"perplexity in blocks of {'/'.join(map(str, blocks))} tokens here, {there} there "
                      f"({_same_text(rows[0], key)})")
    if sizes and limit and sizes != [int(limit)]:
        differ.append(f"accuracies on {'/'.join(map(str, sizes))} problems here, the first {limit} there")
    if not differ:
        return ""
    return ("<p class='note'><b>The intervention table's post row is scored with another protocol</b>, so the same "
            "model reads differently there: " + html.escape("; ".join(differ)) + ".</p>")
