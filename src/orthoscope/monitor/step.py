"""What one measured step gives back (`StepResult`), and the one warning for a step that was not measured."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from orthoscope.verdicts.compute import usable

LOGGED = ("rel_delta", "a_geo", "z_pair", "sym_frac", "intruders")
"""Columns whose medians `StepResult.logs` gives (those measured), overall and per kind."""
BRIEF = ("rel_delta", "a_geo", "z_pair")  # what `brief` shows besides one BH count
BH_COUNTS = ("bh_pair", "bh_gauss")
"""Counts of matrices significant after Benjamini-Hochberg (p_pair, p_gauss) that `logs` gives where measured."""
FAMILY = {"bh_pair": ("n_p_pair", "n_pair"), "bh_gauss": ("n_p_gauss", "n_gauss")}
"""Each BH count's family in the verdicts (changed, above the noise floor, with a p-value) and its logged name."""


@dataclass
class StepResult:
    """One measured step: its rows, skipped matrices, and the series' summary after it."""

    step: int
    label: str
    table: pd.DataFrame
    skipped: list[dict]
    summary: dict
    seconds: float
    notes: list[str] = field(default_factory=list)

    def logs(self, prefix: str = "orthoscope/") -> dict[str, float]:
        """Medians of LOGGED overall and per kind (`orthoscope/rel_delta`, `orthoscope/q/z_pair`) over the matrices
        training changed, as the verdicts count them (`orthoscope/changed` of them, above the noise floor: a LoRA
        on q and v leaves the rest bit-identical, whose zeros would flatten the curves; over every matrix while
        none changed), the BH count of matrices with a
        significant pairing test (`orthoscope/bh_pair`, out of `orthoscope/n_pair`) and `orthoscope/skipped`.

        >>> table = pd.DataFrame({"kind": ["q", "k", "v"], "rel_delta": [0.02, 0.0, 0.04],
        ...                       "changed": [True, False, True]})
        >>> logs = StepResult(5, "step-5", table, [], {}, 0.25).logs("")
        >>> logs["rel_delta"], logs["changed"], logs["k/rel_delta"]
        (0.03, 2.0, 0.0)
        """
        out: dict[str, float] = {}
        if len(self.table):
            out[f"{prefix}changed"] = float(usable(self.table).sum())
        groups = [("", self.table)] + [(f"{kind}/", rows) for kind, rows in self.table.groupby("kind", sort=False)]
        for scope, rows in groups:
            rows = _changed(rows)
            for column in LOGGED:
                if column in rows:
                    values = pd.to_numeric(rows[column], errors="coerce").dropna()
                    if len(values):
                        out[f"{prefix}{scope}{column}"] = float(values.median())
        verdicts = (self.summary.get("verdicts") or {}).get("posts", {}).get(self.label, {})
        scopes = [("", verdicts.get("overall"))] + [(f"{k}/", g) for k, g in verdicts.get("kinds", {}).items()]
        for scope, group in scopes:
            for count in BH_COUNTS:
                rotation = (group or {}).get("rotation") or {}
                if rotation.get(count) is not None:
                    out[f"{prefix}{scope}{count}"] = float(rotation[count])
                    family, name = FAMILY[count]
                    if rotation.get(family) is not None:
                        out[f"{prefix}{scope}{name}"] = float(rotation[family])
        out[f"{prefix}skipped"] = float(len(self.skipped))
        return out

    def brief(self) -> str:
        """One short line of the overall medians and BH counts, for a training log (under 60 characters).

        >>> table = pd.DataFrame({"kind": ["q", "k"], "rel_delta": [0.01, 0.03], "z_pair": [1.0, 3.0]})
        >>> StepResult(5, "step-5", table, [], {}, 0.25).brief()
        'rel_delta 0.02 z_pair 2 (0.25 s)'
        """
        logs = self.logs("")
        shown = [f"{c} {logs[c]:.3g}" for c in BRIEF if c in logs]
        bh = next((c for c in BH_COUNTS if c in logs), None)
        family = logs.get(FAMILY[bh][1], len(self.table)) if bh else 0
        shown += [f"{bh} {int(logs[bh])}/{int(family)}"] if bh else []
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return " ".join(shown) + f" ({self.seconds:.2f} s{skipped})"


def _changed(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the verdicts count (`verdicts.compute.usable`: changed, above the noise floor), if any (else all:
    their true zeros)."""
    kept = usable(rows) if len(rows) else None
    return rows[kept] if kept is not None and kept.any() else rows


def warn_unmeasured(logger: logging.Logger, step: int, error: BaseException) -> None:
    """The one warning for a step the monitor could not measure (training goes on): the error's first line."""
    logger.warning("orthoscope: step %d not measured (%s: %s); training goes on", step, type(error).__name__,
                   str(error).splitlines()[0] if str(error) else "")
