"""The verdicts and the metrics table for a terminal: tables that fit its width, no number cut.

`compact_tables(verdicts)`: per post, the few columns that carry the answer (about 60 characters);
`metric_tables(table, columns, width)`: medians per kind of any metric columns, split into as many
tables as the width needs (the kind repeated in each) instead of squeezing numbers into `0.…`;
`note_lines(notes, width)`: a run's notes, each wrapped under its `note: `.
"""

from __future__ import annotations

import textwrap

import pandas as pd
from rich.table import Table

from orthoscope.verdicts.render import COMPACT_HEAD, compact_rows

CAPTION = ("n: matrices used (changed, above the noise floor); rel_delta: update size; "
           "BH: beyond the pairing null (q = 0.05)")
BORDER = 3
"""Characters a rich table spends per column on padding and the rule (plus one for the edge)."""


def compact_tables(verdicts: dict) -> list[Table]:
    """One table per post: kinds and 'all', the numbers the bottom line rests on.

    >>> compact_tables({"posts": {}})
    []
    """
    tables = []
    posts = (verdicts or {}).get("posts", {})
    for i, (post, entry) in enumerate(posts.items()):
        last = i == len(posts) - 1
        view = Table(title=f"{post}: medians per kind", title_justify="left",
                     caption=CAPTION if last else None, caption_justify="left")
        for column in COMPACT_HEAD:
            view.add_column(column, justify="left" if column == "kind" else "right", no_wrap=True)
        for row in compact_rows(entry):
            view.add_row(*row, style="bold" if row[0] == "all" else None)
        tables.append(view)
    return tables


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
