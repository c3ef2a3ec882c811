"""The run folder's schema version, and the one place a folder of an older version is read as the current one.

`SCHEMA` is recorded in run.json as `schema`; a folder without it (no run.json, or a run.json written
before the number existed) is version 0. Readers get the current shape from `RunFolder.read_run`,
which calls `upgrade` here: no reader elsewhere has a branch for an older folder. A folder of a newer
version is refused with one line.

Version 0 -> 1: a table without `changed` / `at_noise_floor` counts every matrix as changed and none at
the noise floor (said in a note); summary.json's `settings.metrics_option` (the `--metrics` value) is
named from its list of metric columns, and its verdicts carry it.

Every version: a summary without verdicts (summary.json absent or edited) gets them computed from the table.

>>> import pandas as pd
>>> table = pd.DataFrame({"post": ["p"], "kind": ["q"], "a_geo": [1.0]})
>>> table, summary = upgrade(table, {"settings": {"metrics": ["a_geo"]}}, schema=0)
>>> table["changed"].tolist(), summary["settings"]["metrics_option"], summary["verdicts"]["metrics"]
([True], 'a_geo', 'a_geo')
>>> summary["verdicts"]["notes"][0]
'no `changed` column (a run of an older orthoscope): every matrix counted as changed'
"""

from __future__ import annotations

import pandas as pd

from orthoscope.errors import OrthoscopeError

SCHEMA = 1
"""The version of the run folder's layout and files this orthoscope writes (run.json's `schema`)."""
NO_CHANGED = "no `changed` column (a run of an older orthoscope): every matrix counted as changed"


def check_schema(schema: int, where: object) -> None:
    """Refuse a folder written by a newer orthoscope (its files may mean something else).

    >>> check_schema(SCHEMA + 1, "runs/x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.OrthoscopeError: runs/x was written by a newer orthoscope (run folder schema 2; this one ...
    """
    if schema > SCHEMA:
        raise OrthoscopeError(f"{where} was written by a newer orthoscope (run folder schema {schema}; this one "
                              f"reads up to {SCHEMA}): upgrade orthoscope, or rerun compare into another --output")


def upgrade(table: pd.DataFrame, summary: dict, schema: int) -> tuple[pd.DataFrame, dict]:
    """(table, summary) of a folder of version `schema` in the current shape (see the module docstring)."""
    notes: list[str] = []
    summary = dict(summary)
    if schema < 1:
        table, summary = _from_0(table, summary, notes)
    settings = summary.get("settings") or {}
    verdicts = summary.get("verdicts")
    if not isinstance(verdicts, dict) or verdicts.get("posts") is None:
        from orthoscope.verdicts import compute_verdicts

        posts = set(table["post"].astype(str)) if "post" in table else set()
        control = settings.get("control") if settings.get("control") in posts else None
        verdicts = compute_verdicts(table, control, settings.get("metrics_option"))
        summary["verdicts"] = {**verdicts, "notes": notes + verdicts["notes"]}
    elif schema < 1 and not verdicts.get("metrics") and settings.get("metrics_option"):
        summary["verdicts"] = {**verdicts, "metrics": settings["metrics_option"]}
    return table, summary


def _from_0(table: pd.DataFrame, summary: dict, notes: list[str]) -> tuple[pd.DataFrame, dict]:
    if len(table) and "changed" not in table:
        table = table.assign(changed=True)
        notes.append(NO_CHANGED)
    if len(table) and "at_noise_floor" not in table:
        table = table.assign(at_noise_floor=False)
    settings = summary.get("settings") or {}
    columns = settings.get("metrics")
    if not settings.get("metrics_option") and isinstance(columns, list) and columns:
        from orthoscope.pipeline.options import metrics_label

        summary["settings"] = {**settings, "metrics_option": metrics_label(columns)}
    return table, summary
