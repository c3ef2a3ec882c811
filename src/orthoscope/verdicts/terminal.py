"""The verdicts and the metrics table for a terminal: tables that fit its width, no number cut.

`compact_tables(verdicts)`: per post, the few columns that carry the answer (about 60 characters);
`metric_tables(table, columns, width)`: medians per kind of any metric columns, split into as many
tables as the width needs (the kind repeated in each) instead of squeezing numbers into `0.…`;
`note_lines(notes, width)`: a run's notes, each wrapped under its `note: `;
`series_table(verdicts)`: a series (posts with steps) as one row per step, thinned to `SERIES_ROWS` rows,
and `last_step(verdicts)`: the verdicts cut to the series' last step (and any post outside the series).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from rich.table import Table

from orthoscope.verdicts.render import COMPACT_HEAD, compact_rows, fixed
from orthoscope.verdicts.text import pct

CAPTION = ("n: matrices used (changed, above the noise floor); rel_delta: update size; "
           "BH: beyond the pairing null (q = 0.05)")
BORDER = 3
"""Characters a rich table spends per column on padding and the rule (plus one for the edge)."""


def compact_tables(verdicts: dict, width: int = 80) -> list[Table]:
    """One table per post: kinds and 'all', the numbers the bottom line rests on; a table one or two
    characters too wide for `width` (long kind names) drops the padding at its edges instead of cutting a number.

    >>> compact_tables({"posts": {}})
    []
    """
    tables = []
    posts = (verdicts or {}).get("posts", {})
    for i, (post, entry) in enumerate(posts.items()):
        last = i == len(posts) - 1
        rows = compact_rows(entry)
        view = Table(title=f"{post}: medians per kind", title_justify="left",
                     caption=CAPTION if last else None, caption_justify="left",
                     pad_edge=_natural_width(COMPACT_HEAD, rows) <= width)
        for column in COMPACT_HEAD:
            view.add_column(column, justify="left" if column == "kind" else "right", no_wrap=True)
        for row in rows:
            view.add_row(*row, style="bold" if row[0] == "all" else None)
        tables.append(view)
    return tables


SERIES_ROWS = 20
"""The most steps `series_table` shows; the rest are left out evenly, the first and last step always kept."""
SERIES_HEAD = ("step", "rel_delta", "a_geo", "z_pair [95 %]", "BH", "rotations")
STEP_WORDS = {"consistent": "consistent", "weak": "weak", "partial": "minority", "shape-only": "shape only",
              "none": "none", "insufficient": "too few", "unavailable": "no null", "unchanged": "unchanged"}
"""The rotation verdicts in a word or two (a series' rows; `text.LABELS` has them in full)."""
SERIES_CAPTION = ("medians over the changed matrices; BH: beyond the pairing null (q = 0.05), of those tested; "
                  "rotations: the verdict (minority: consistent in a few matrices; shape only: beyond the "
                  "Gaussian null only)")


def series_steps(verdicts: dict) -> list[str]:
    """The posts that carry a step, in step order, when they make a series (two steps or more); else [].

    >>> series_steps({"posts": {"b": {"step": 20}, "a": {"step": 10}, "control": {"step": None}}})
    ['a', 'b']
    >>> series_steps({"posts": {"a": {"step": 10}, "control": {}}})
    []
    """
    posts = (verdicts or {}).get("posts", {})
    stepped = [post for post, entry in posts.items() if entry.get("step") is not None]
    if len({posts[post]["step"] for post in stepped}) < 2:
        return []
    return sorted(stepped, key=lambda post: posts[post]["step"])


def last_step(verdicts: dict) -> dict:
    """`verdicts` with only the series' last step and the posts outside the series (a control); unchanged
    when the run is no series.

    >>> list(last_step({"posts": {"a": {"step": 1}, "b": {"step": 2}, "control": {}}})["posts"])
    ['b', 'control']
    """
    steps = series_steps(verdicts)
    if not steps:
        return verdicts
    left_out = set(steps[:-1])
    return {**verdicts, "posts": {post: entry for post, entry in verdicts["posts"].items() if post not in left_out}}


def thinned(n: int, most: int = SERIES_ROWS) -> list[int]:
    """At most `most` (at least 2) of the positions 0..n-1, evenly spaced, the first and the last always in.

    >>> thinned(5), thinned(60, 4)
    ([0, 1, 2, 3, 4], [0, 20, 39, 59])
    """
    if n <= most:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, max(2, most)).round()})


def series_rows(verdicts: dict) -> list[tuple[str, ...]]:
    """One row per step of the series (`SERIES_HEAD`): the medians and the rotation verdict in a word or two.

    >>> r = {"verdict": "none", "z_pair": 0.4661, "z_pair_ci": [-0.12, 0.816], "bh_pair": 1, "n_p_pair": 14}
    >>> e = {"overall": {"scaling": {"rel_delta": 0.0123, "a_geo": 1.00687}, "rotation": r}}
    >>> series_rows({"posts": {"s1": {**e, "step": 1}, "s2": {**e, "step": 2}}})[1]
    ('2', '1.2 %', '1.0069', '0.47 [-0.12, 0.82]', '1/14', 'none')
    """
    rows = []
    for post in series_steps(verdicts):
        entry = verdicts["posts"][post]
        s, r = entry["overall"]["scaling"], entry["overall"]["rotation"]
        verdict = r.get("verdict")
        if verdict == "unchanged":
            rows.append((str(entry["step"]), "", "", "", "", STEP_WORDS[verdict]))
            continue
        ci = r.get("z_pair_ci") or ()
        interval = f" [{fixed(ci[0], 2)}, {fixed(ci[1], 2)}]" if len(ci) == 2 else ""
        bh = "n/a" if r.get("bh_pair") is None else f"{r['bh_pair']}/{r['n_p_pair']}"
        rows.append((str(entry["step"]), pct(s.get("rel_delta")), fixed(s.get("a_geo"), 4),
                     fixed(r.get("z_pair"), 2) + interval, bh, STEP_WORDS.get(verdict, str(verdict))))
    return rows


def series_table(verdicts: dict, most: int = SERIES_ROWS) -> tuple[Table | None, str | None]:
    """The series as one table, a row per step, at most `most` rows (`thinned`), and a line saying how many
    steps it leaves out (None when none); (None, None) when the run is no series.

    >>> e = {"overall": {"scaling": {}, "rotation": {"verdict": "unchanged"}}}
    >>> view, left = series_table({"posts": {f"s{i}": {**e, "step": i} for i in range(30)}})
    >>> view.row_count, left
    (20, '10 of 30 steps left out (evenly; first and last kept); --wide shows every step')
    """
    rows = series_rows(verdicts)
    if not rows:
        return None, None
    kept = thinned(len(rows), most)
    view = Table(title=f"the series: {len(rows)} steps", title_justify="left", caption=SERIES_CAPTION,
                 caption_justify="left")
    for column in SERIES_HEAD:
        view.add_column(column, justify="left" if column == "rotations" else "right", no_wrap=True)
    for i in kept:
        view.add_row(*rows[i], style="bold" if i == len(rows) - 1 else None)
    left = len(rows) - len(kept)
    return view, (f"{left} of {len(rows)} steps left out (evenly; first and last kept); --wide shows every step"
                  if left else None)


def _natural_width(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> int:
    """The characters a table of `rows` under `head` takes unsqueezed (edges padded)."""
    return 1 + sum(_width((name, [row[i] for row in rows] or [""])) for i, name in enumerate(head))


def note_lines(notes: list[str], width: int = 80, lead: str = "note: ") -> list[str]:
    """Lines no wider than `width` (at least 40): each note after `lead`, its next lines indented under its
    text; a word longer than a line (a path) stays whole.

    >>> note_lines(["--workers 8 lowered to 2: 4 working sets of 1.2 GiB fit in 2.6 GiB"], 40)
    ['note: --workers 8 lowered to 2: 4', '      working sets of 1.2 GiB fit in 2.6', '      GiB']
    """
    lines = []
    for note in notes:
        lines += textwrap.wrap(str(note), max(40, int(width)), initial_indent=lead, subsequent_indent=" " * len(lead),
                               break_long_words=False, break_on_hyphens=False)
    return lines


def metric_tables(table: pd.DataFrame, columns: list[str], width: int) -> list[Table]:
    """Medians per kind of `columns` for each post, split so that every table fits `width` characters.

    >>> t = pd.DataFrame({"post": "p", "kind": ["q", "q", "k"], "a_geo": [1.0, 1.2, 1.5], "disp": 0.01})
    >>> [[c.header for c in v.columns] for v in metric_tables(t, ["a_geo", "disp"], 80)]
    [['kind', 'n', 'a_geo', 'disp']]
    >>> [[c.header for c in v.columns] for v in metric_tables(t, ["a_geo", "disp"], 22)]
    [['kind', 'n', 'a_geo'], ['kind', 'n', 'disp']]
    """
    tables = []
    for post, frame in table.groupby("post", sort=False):
        medians = frame.groupby("kind", sort=False)[columns].median(numeric_only=False)
        counts = frame.groupby("kind", sort=False).size()
        cells = {c: [_cell(v) for v in medians[c]] for c in columns}
        kinds = [str(k) for k in medians.index]
        fixed = [("kind", kinds), ("n", [str(counts[k]) for k in medians.index])]
        chunks = _chunks([(c, cells[c]) for c in columns], width - sum(_width(c) for c in fixed) - 1)
        for part, chunk in enumerate(chunks):
            title = f"{post}: medians per kind" + (f" ({part + 1}/{len(chunks)})" if len(chunks) > 1 else "")
            view = Table(title=title, title_justify="left", min_width=len(title))
            for name, values in fixed + chunk:
                view.add_column(name, justify="left" if name == "kind" else "right", no_wrap=True)
            for i in range(len(kinds)):
                view.add_row(*(values[i] for _, values in fixed + chunk))
            tables.append(view)
    return tables


def _cell(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.3g}"


def _width(column: tuple[str, list[str]]) -> int:
    name, values = column
    return max(len(name), *(len(v) for v in values)) + BORDER


def _chunks(columns: list[tuple[str, list[str]]], room: int) -> list[list[tuple[str, list[str]]]]:
    """Columns packed greedily into groups whose widths fit `room` (one column per group at least)."""
    chunks: list[list] = [[]]
    used = 0
    for column in columns:
        if chunks[-1] and used + _width(column) > room:
            chunks.append([])
            used = 0
        chunks[-1].append(column)
        used += _width(column)
    return [c for c in chunks if c]
