"""The experiment's figure and its words: each condition's scores grouped by claim (controls set apart, Wilson
95 % intervals), the swap-sigma grid (the temperature claim), and one conclusion line per claim.

`figure_rows` and `conclusions` are shared with the report's interactive figure, so the PNG and the
page draw and say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orthoscope.evaluation.stats import interval_columns
from orthoscope.experiment.columns import GRID_OP, POST, score_columns
from orthoscope.interventions.ops import CONSISTENCY, CONTROL, FRAMEWORK, SCALING

EXPECTS = {SCALING: "keeps", FRAMEWORK: "keeps", CONSISTENCY: "breaks"}
"""What each claim predicts for its conditions: the post's score kept, or the model broken (and more than
by its size-matched controls). Claims not named here (the path) are described, not judged."""
ALPHA = 0.05
GRID_TITLE = ("Temperature claim, tested honestly: the post's singular vectors with the base's values times c "
              "(U_p c S_b V_p^T). If the fitted factor only 'restores' scores because it was fitted, nearby c do "
              "as well; a flat curve around c = 1 means the values act like a softmax temperature the model "
              "tolerates.")
COLOURS = {"post": "#222222", "claim": "#4c72b0", "control": "#8c8c8c"}


@dataclass(frozen=True)
class Row:
    """One line of the condition axis: a group header (condition None) or a condition with its role."""

    label: str
    condition: str | None
    role: str  # "post", "claim", "control" or "header"


def complete(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the columns the figure reads (a minimal or older table lacks some): claim and control
    empty, op = the condition, scale NaN."""
    defaults = {"claim": "", "control": "", "op": table["condition"], "scale": np.nan}
    missing = {c: v for c, v in defaults.items() if c not in table}
    return table.assign(**missing) if missing else table


def short_claim(claim: str) -> str:
    """'rotations: breaking ...' -> 'rotations'."""
    return str(claim).split(":")[0].strip() or "other"


def is_grid(table: pd.DataFrame) -> pd.Series:
    """The swap-sigma grid points (c given, c != 1): drawn in the grid panel, not among the bars."""
    return (table.op == GRID_OP) & table.scale.notna() & (table.scale != 1.0)


def figure_rows(table: pd.DataFrame) -> list[Row]:
    """Top to bottom: the post, then each claim's conditions under its header, then the controls.

    >>> t = pd.DataFrame({"condition": ["post", "break-left", "noise"], "op": ["post", "break-left", "noise"],
    ...                   "claim": ["", CONSISTENCY, CONTROL], "scale": np.nan})
    >>> [(r.label, r.role) for r in figure_rows(t)]  # doctest: +NORMALIZE_WHITESPACE
    [('post as is', 'post'), ('rotations', 'header'), ('break-left', 'claim'), ('controls', 'header'),
     ('noise', 'control')]
    """
    table = complete(table)
    shown = table[~is_grid(table)]
    rows = [Row("post as is", POST, "post")] if (shown.condition == POST).any() else []
    claims = shown[(shown.condition != POST) & (shown.claim.fillna("") != CONTROL)]
    for claim, group in claims.groupby(claims.claim.fillna(""), sort=False):
        rows.append(Row(short_claim(claim), None, "header"))
        rows += [Row(c, c, "claim") for c in group.condition]
    controls = shown[shown.claim.fillna("") == CONTROL]
    if len(controls):
        rows.append(Row("controls", None, "header"))
        rows += [Row(c, c, "control") for c in controls.condition]
    return rows


def primary_score(table: pd.DataFrame) -> str | None:
    """The score the conclusions are judged on: the first accuracy the post gets above 0, else None."""
    intervals = interval_columns(table.columns)
    post = table[table.condition == POST]
    for score in score_columns(table):
        if score in intervals and len(post) and post[score].iloc[0] > 0:
            return score
    return None


def fisher_p(a: pd.Series, b: pd.Series, score: str) -> float:
    """Two-sided Fisher exact p of two accuracies (hits = round(accuracy * n)): the probability, given both
    totals, of a split at most as likely as the one seen (scipy.stats.fisher_exact's, in exact integers)."""
    (hits_a, n_a), (hits_b, n_b) = ((int(round(float(row[score]) * int(row[f"{score}:n"]))), int(row[f"{score}:n"]))
                                    for row in (a, b))
    hits, misses = hits_a + hits_b, n_a + n_b - hits_a - hits_b

    def weight(x: int) -> int:  # ways to draw x of the hits into a's n_a problems
        return math.comb(hits, x) * math.comb(misses, n_a - x)

    seen = weight(hits_a)
    tail = sum(w for x in range(max(0, n_a - misses), min(hits, n_a) + 1) if (w := weight(x)) <= seen)
    return min(1.0, tail / math.comb(n_a + n_b, n_a))


def conclusions(table: pd.DataFrame) -> list[str]:
    """One plain line per claim: its conditions against the post and their size-matched controls.

    Judged on `primary_score` with Fisher's exact test at p < 0.05 (n problems per condition); where
    no accuracy separates anything (the post scores 0 everywhere) the line says so.
    """
    table, score = complete(table), primary_score(table)
    if score is None:
        return ["No accuracy of the post model is above 0: the intervention scores cannot separate the claims "
                "(evaluate more problems or a stronger model)."]
    by = table.set_index("condition")
    post = by.loc[POST]
    n = int(post[f"{score}:n"])
    lines = []
    shown = table[~is_grid(table) & (table.condition != POST) & (table.claim.fillna("") != CONTROL)]
    for claim, group in shown[shown.claim.fillna("") != ""].groupby("claim", sort=False):
        expect = EXPECTS.get(claim)
        values = ", ".join(f"{c} {by.loc[c, score]:.2f}" for c in group.condition)
        controls = sorted({c for cs in group.control.fillna("") for c in str(cs).split(",") if c in by.index})
        versus = "; controls " + ", ".join(f"{c} {by.loc[c, score]:.2f}" for c in controls) if controls else ""
        head = f"{short_claim(claim)} ({score}, n = {n} each; post {post[score]:.2f}): {values}{versus}"
        if expect is None:
            lines.append(f"{head}. Described, not judged.")
            continue
        kept = [c for c in group.condition if fisher_p(by.loc[c], post, score) >= ALPHA]
        apart = [c for c in group.condition if controls and all(fisher_p(by.loc[c], by.loc[k], score) < ALPHA
                                                                  for k in controls)]
        lines.append(f"{head}. {_judge(expect, kept, apart, list(group.condition), bool(controls))}")
    return lines


def _judge(expect: str, kept: list[str], apart: list[str], conditions: list[str], has_control: bool) -> str:
    def share(found: list[str]) -> str:
        return f"{len(found)} of {len(conditions)}"

    if expect == "keeps":
        verdict = f"As the post (no difference detected, Fisher p >= {ALPHA}): {share(kept)}"
        if has_control:
            verdict += f"; apart from every control (p < {ALPHA}): {share(apart)}"
        return verdict + "."
    broken = [c for c in conditions if c not in kept]
    verdict = f"Below the post (Fisher p < {ALPHA}): {share(broken)}"
    if has_control:
        verdict += (f"; apart from every control: {share([c for c in broken if c in apart])}"
                    + ("; the controls break it as much, so it is not specific" if broken and not apart else ""))
    return verdict + "."


def plot_experiment(table: pd.DataFrame, path: Path) -> None:
    """Write `path` (PNG): per score, each condition as a dot with its Wilson 95 % interval, grouped by claim,
    controls in grey at the bottom; under it the swap-sigma grid; the conclusions as the figure's last lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = score_columns(table)
    if not scores:
        return
    table = complete(table)
    rows, lines = figure_rows(table), conclusions(table)
    grid = table[(table.op == GRID_OP) & table.scale.notna()].sort_values("scale")
    footer = "\n".join("- " + _wrap(line, 160).replace("\n", "\n  ") for line in lines)
    top_h, grid_h, foot_h = 0.22 * len(rows) + 0.4, 2.0, 0.16 * (footer.count("\n") + 1) + 0.7
    width, height = max(11.0, 2.4 * len(scores) + 1.6), 0.9 + top_h + 1.25 + grid_h + foot_h
    fig, axes = plt.subplots(2, len(scores), figsize=(width, height), squeeze=False,
                             gridspec_kw={"height_ratios": [top_h, grid_h]})
    fig.subplots_adjust(left=1.5 / width, right=1 - 0.2 / width, top=1 - 0.9 / height, bottom=foot_h / height,
                        hspace=1.25 / ((top_h + grid_h) / 2), wspace=0.35)
    for col, score in enumerate(scores):
        _dots(axes[0][col], table, rows, score, first=col == 0)
        _grid(axes[1][col], table, grid, score)
    fig.suptitle("Interventions on the post model: which changes to its singular values and vectors keep its scores",
                 x=0.01, y=1 - 0.12 / height, ha="left", va="top", fontsize=12, fontweight="bold")
    fig.text(0.01, 1 - 0.45 / height, "dot: score of the intervened model (Wilson 95 % interval for accuracies); "
             "red dashed line: the post model as is; grey: size-matched controls", fontsize=8.5, ha="left", va="top")
    grid_top = axes[1][0].get_position().y1
    fig.text(0.01, grid_top + 0.45 / height, _wrap(GRID_TITLE, 170), fontsize=8.5, ha="left", va="bottom")
    fig.text(0.01, 0.1 / height, footer, fontsize=8.5, ha="left", va="bottom")
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def _dots(ax, table: pd.DataFrame, rows: list[Row], score: str, first: bool) -> None:
    by = table.set_index("condition")
    intervals = interval_columns(table.columns)
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows):
        if row.condition is None:
            ax.axhline(yi, color="#ddd", lw=0.8)
    for role, colour in COLOURS.items():  # one artist per colour (rows never overlap): a fifth of the drawing
        at = [(yi, row.condition) for yi, row in zip(y, rows) if row.condition is not None and row.role == role]
        if not at:
            continue
        ys, names = [a for a, _ in at], [name for _, name in at]
        values = by.loc[names, score].astype(float).to_numpy()
        if score in intervals:
            _, lo, hi = intervals[score]
            xerr = [np.fmax(0.0, values - by.loc[names, lo].to_numpy(float)),  # no interval: zero-width caps
                    np.fmax(0.0, by.loc[names, hi].to_numpy(float) - values)]
            ax.errorbar(values, ys, xerr=xerr, fmt="o", color=colour, ms=4, capsize=2, lw=1)
        else:
            ax.plot(values, ys, "o", color=colour, ms=4)
    if POST in by.index:
        ax.axvline(float(by.loc[POST, score]), color="#c44e52", ls="--", lw=1)
    ax.set_yticks(y, [r.label for r in rows] if first else [""] * len(rows), fontsize=8)
    if first:
        for tick, row in zip(ax.get_yticklabels(), rows):
            tick.set_fontweight("bold" if row.role in ("header", "post") else "normal")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    n = _n_text(table, score)
    ax.set_title(f"{score}{n}", fontsize=9)
    ax.set_xlabel(_unit(score), fontsize=8)
    if score == "ppl":  # a broken model reaches thousands: a log axis keeps the others readable
        ax.set_xscale("log")
    ax.tick_params(axis="x", labelsize=7)


def _grid(ax, table: pd.DataFrame, grid: pd.DataFrame, score: str) -> None:
    post = table[table.condition == POST]
    if len(grid):
        ax.plot(grid.scale, grid[score], "o-", color=COLOURS["claim"], ms=4)
    if len(post):
        ax.axhline(float(post[score].iloc[0]), color="#c44e52", lw=1, ls="--")
    ax.set_xlabel("c (base values times c)", fontsize=8)
    ax.set_ylabel(_unit(score), fontsize=8)
    ax.tick_params(labelsize=7)
    if score == "ppl":
        ax.set_yscale("log")


def _n_text(table: pd.DataFrame, score: str) -> str:
    column = f"{score}:n"
    if column not in table or table[column].isna().all():
        return ""
    sizes = sorted({int(v) for v in table[column].dropna()})
    return " (n = " + "/".join(map(str, sizes)) + ")"


def _unit(score: str) -> str:
    """The axis label of a score."""
    return {"ppl": "perplexity (log)", "attn_entropy": "attention entropy (nats)",
            "cka_vs_post": "linear CKA vs post"}.get(score, f"{score} (accuracy)")
