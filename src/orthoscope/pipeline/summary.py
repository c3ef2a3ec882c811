"""Aggregates of the metrics table: per kind and per layer, for each post model.

Medians are robust to a few odd matrices. Rotation, angle, symmetry and null
columns are medians over changed matrices only (an unchanged matrix has no
rotation to measure); every group also counts its `unchanged` and
`at_noise_floor` matrices.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from orthoscope.metrics import registry
from orthoscope.metrics.registry import COLUMNS as METRIC_COLUMNS

ID_COLUMNS = ("post", "step", "name", "layer", "kind", "expert", "rows", "cols")
NOTE = "note"  # text: why columns the matrix's route computes are NaN ("" if none; absent in older runs)
TABLE_COLUMNS = (*ID_COLUMNS, *METRIC_COLUMNS, NOTE)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=list(TABLE_COLUMNS))


def matrix_notes(table: pd.DataFrame) -> list[str]:
    """One note per post that has matrices with a `note` (summary.json's notes, `orthoscope summary`).

    >>> matrix_notes(pd.DataFrame({"post": ["p", "p"], "name": ["a", "b"], "note": ["", "rank 1"]}))
    ['p: 1 matrix has a note (the note column of metrics.csv): b: rank 1']
    """
    if NOTE not in table or table.empty:
        return []
    noted = table[table[NOTE].fillna("").astype(str) != ""]
    notes = []
    for post, frame in noted.groupby("post", sort=False):
        first = frame.iloc[0]
        many = f"{len(frame)} matrices have a note" if len(frame) > 1 else "1 matrix has a note"
        notes.append(f"{post}: {many} (the note column of metrics.csv): {'e.g. ' if len(frame) > 1 else ''}"
                     f"{first['name']}: {first[NOTE]}")
    return notes


def p_pair_notes(metrics: Iterable[str], pair_draws: int | None, table: pd.DataFrame) -> list[str]:
    """The notes on p_pair's draw cap (`metrics.nulls.cap_note`) where the run computed p_pair with one: from
    its settings' metrics and cap, each post's BH family in `table` (`verdicts.compute.bh_family`: the
    matrices the verdicts' BH runs over, changed, not at the noise floor, with a p_pair).

    >>> table = pd.DataFrame({"post": ["p"] * 3, "p_pair": [0.5, 0.01, float("nan")]})
    >>> p_pair_notes(["sym_frac"], 4096, table), len(p_pair_notes(["p_pair"], 4096, table))
    ([], 1)
    """
    if "p_pair" not in metrics or pair_draws is None:
        return []
    from orthoscope.metrics.nulls import cap_note  # torch and scipy: only for a capped run
    from orthoscope.verdicts.compute import bh_family

    changed = {}
    if "p_pair" in table and not table.empty:
        found = pd.Series(bh_family(table, "p_pair"), index=table.index)
        changed = {str(post): int(n) for post, n in found.groupby(table["post"], sort=False).sum().items()}
    return cap_note(pair_draws, changed)


CAP_NOTE = re.compile(r"(?:.*: )?p_pair capped at \d+ (?:sign )?draws")
"""What every line of `metrics.nulls.cap_note` starts with (the run-wide line, or `<post>: ` and its line)."""


def run_notes(summary: dict, table: pd.DataFrame) -> list[str]:
    """summary.json's notes as `orthoscope summary` prints them: p_pair's cap notes made again from the run's
    settings and `table` (`p_pair_notes`; a folder of an older orthoscope may have noted a cap on a run without
    p_pair, or counted matrices BH leaves out) where the stored ones stood, every other note as stored.

    >>> stored = {"notes": ["--workers 8 lowered to 2", "p_pair capped at 4096 sign draws ...", "p: 1 of 2 ..."],
    ...           "settings": {"metrics": ["sym_frac"], "pair_draws": 4096}}
    >>> run_notes(stored, pd.DataFrame({"post": ["p"], "sym_frac": [0.6]}))
    ['--workers 8 lowered to 2', 'p: 1 of 2 ...']
    """
    settings = summary.get("settings") or {}
    notes = [str(note) for note in summary.get("notes") or []]
    capped = [i for i, note in enumerate(notes) if CAP_NOTE.match(note)]
    kept = [note for i, note in enumerate(notes) if i not in capped]
    at = capped[0] if capped else len(kept)  # no other note stands before the first cap note
    return kept[:at] + p_pair_notes(settings.get("metrics") or (), settings.get("pair_draws"), table) + kept[at:]


def cast_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Column dtypes from the registry: int columns int64 (Int64 when some are NaN: not asked for or
    not defined), bool columns bool (nullable boolean when some are missing), the rest float.

    >>> t = cast_columns(pd.DataFrame({"intruders": [1.0, float("nan")], "changed": [True, False],
    ...                                "delta_rank90": [3.0, 4.0]}))
    >>> [str(t[c].dtype) for c in t]
    ['Int64', 'bool', 'int64']
    """
    types = {}
    for column in table.columns:
        if column not in registry.COLUMNS:
            continue
        kind, missing = registry.get(column).dtype, table[column].isna().any()
        if kind == "int":
            types[column] = "Int64" if missing else "int64"
        elif kind == "bool":
            types[column] = "boolean" if missing else "bool"
        else:
            types[column] = "float64"
    return table.astype(types)


def _flag(frame: pd.DataFrame, column: str, default: bool) -> pd.Series:
    """A boolean column (missing in older runs: `default`; missing values: `default`)."""
    if column not in frame:
        return pd.Series(default, index=frame.index, dtype=bool)
    return frame[column].astype("boolean").fillna(default).astype(bool)


def aggregate(table: pd.DataFrame, by: str) -> dict:
    """{post: {group: {metric: median, "matrices": n, "unchanged": n, "at_noise_floor": n}}}.

    >>> t = pd.DataFrame({"post": ["p", "p"], "kind": ["q", "q"], "a_geo": [1.0, 1.2],
    ...                   "sym_frac": [float("nan"), 0.7], "changed": [False, True],
    ...                   "at_noise_floor": [True, False]})
    >>> e = aggregate(t, "kind")["p"]["q"]
    >>> e["a_geo"], e["sym_frac"], e["matrices"], e["unchanged"], e["at_noise_floor"]
    (1.1, 0.7, 2, 1, 1)
    """
    out: dict = {}
    if table.empty:
        return out
    numeric = [c for c in METRIC_COLUMNS if c in table and registry.get(c).dtype != "bool"]
    changed = _flag(table, "changed", True)
    block = np.empty((len(table), len(numeric)))  # one float block: one grouped pass over every column
    for j, column in enumerate(numeric):
        block[:, j] = pd.to_numeric(table[column], errors="coerce").astype(float).to_numpy()
    change = set(registry.change_columns())
    masked = [j for j, column in enumerate(numeric) if column in change]
    block[np.ix_(~changed.to_numpy(), masked)] = math.nan  # change columns: medians over changed matrices only
    keys = [table["post"], table[by]]
    medians = pd.DataFrame(block, columns=numeric, index=table.index).groupby(keys, sort=True).median()
    flags = {"matrices": 1, "unchanged": ~changed, "at_noise_floor": _flag(table, "at_noise_floor", False)}
    counts = pd.DataFrame(flags, index=table.index).astype(int).groupby(keys, sort=True).sum().loc[medians.index]
    for (post, group), row, count in zip(medians.index, medians.to_numpy(), counts.to_numpy()):
        entry = {column: _finite(value) for column, value in zip(numeric, row)}
        entry.update({name: int(n) for name, n in zip(counts.columns, count)})
        out.setdefault(str(post), {})[str(group)] = entry
    return out


def unchanged_counts(table: pd.DataFrame) -> dict:
    """summary.json `unchanged`: {post: {kind: number of bit-identical matrices}} (kinds with none included).

    >>> unchanged_counts(pd.DataFrame({"post": ["p", "p"], "kind": ["q", "k"], "changed": [False, True]}))
    {'p': {'k': 0, 'q': 1}}
    """
    out: dict = {}
    if table.empty:
        return out
    flags = ~_flag(table, "changed", True)
    for (post, kind), frame in flags.groupby([table["post"], table["kind"]], sort=True):
        out.setdefault(str(post), {})[str(kind)] = int(frame.sum())
    return out


def change_notes(table: pd.DataFrame) -> list[str]:
    """One line per post with unchanged matrices (all of them: "identical to the base").

    >>> change_notes(pd.DataFrame({"post": ["p", "p"], "kind": ["q", "k"], "changed": [False, False]}))
    ['p: identical to the base (all 2 matrices bit-identical): no rotation or symmetry metric is defined']
    """
    notes = []
    if table.empty:
        return notes
    for post, frame in table.groupby("post", sort=False):
        unchanged = ~_flag(frame, "changed", True)
        n = int(unchanged.sum())
        if n == len(frame):
            notes.append(f"{post}: identical to the base (all {n} matrices bit-identical): "
                         "no rotation or symmetry metric is defined")
        elif n:
            kinds = ", ".join(f"{k} {c}" for k, c in frame[unchanged].groupby("kind", sort=False).size().items())
            notes.append(f"{post}: {n} of {len(frame)} matrices unchanged ({kinds}); their rotation and symmetry "
                         "metrics are NaN and left out of the medians")
    return notes


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
