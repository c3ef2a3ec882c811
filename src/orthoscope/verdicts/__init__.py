"""Verdicts on the paper's claims from a metrics table: numbers first, then one sentence per claim.

`compute_verdicts(table, control)` -> the `verdicts` entry of summary.json;
`verdict_lines(verdicts)` -> plain sentences for the terminal;
`verdict_html(verdicts)` -> the report's first screen (an HTML fragment).
The thresholds the sentences are written from are in `orthoscope.verdicts.thresholds`.
"""

from __future__ import annotations

from orthoscope.verdicts.compute import compute_verdicts
from orthoscope.verdicts.render import verdict_html, verdict_lines

__all__ = ["compute_verdicts", "verdict_lines", "verdict_html"]
