"""Verdicts on the paper's claims from a metrics table (interface; filled by the trust work).

`compute_verdicts(table, control)` -> the `verdicts` entry of summary.json;
`verdict_lines(verdicts)` -> plain sentences for the terminal;
`verdict_html(verdicts)` -> the report's first screen (an HTML fragment).
"""

from __future__ import annotations

import pandas as pd


def compute_verdicts(table: pd.DataFrame, control: str | None = None) -> dict:
    """Per post, per kind and overall verdicts with the numbers they rest on ({} until implemented)."""
    return {}


def verdict_lines(verdicts: dict) -> list[str]:
    """One plain sentence per claim and post, numbers included."""
    return []


def verdict_html(verdicts: dict) -> str:
    """The verdicts as an HTML fragment for the top of report.html."""
    return ""
