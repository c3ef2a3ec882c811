"""What a report reads from a run folder: the table, summary, spectra, experiment, evaluation.

A damaged file (truncated parquet or .npz, corrupt JSON) is an OrthoscopeError naming it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orthoscope.errors import OrthoscopeError
from orthoscope.metrics.scaling import RHO_FLOOR
from orthoscope.pipeline.store import safe_name


@dataclass
class Run:
    folder: Path
    table: pd.DataFrame
    summary: dict
    experiment: pd.DataFrame | None
    evaluation: dict | None
    update_cos: pd.DataFrame | None = None

    def ratio_curves(self, names: list[str]):
        """Yield (post, name, i/r, s_p,i / s_b,i) over the indices where rho is defined."""
        for post in dict.fromkeys(self.table.post):
            for name in names:
                spectra = self.spectra(post, name)
                if spectra is None or "s_base" not in spectra:
                    continue
                s_b, s_p = spectra["s_base"], spectra["s_post"]
                keep = s_b > RHO_FLOOR * s_b[0]
                yield post, name, np.arange(len(s_b))[keep] / len(s_b), s_p[keep] / s_b[keep]

    def spectra(self, post: str, name: str) -> dict[str, np.ndarray] | None:
        path = self.folder / "spectra" / safe_name(post) / f"{safe_name(name)}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise OrthoscopeError(f"damaged spectra file {path}: {error} (rerun compare into a fresh folder)") from None


def read_parquet(path: Path) -> pd.DataFrame:
    """A parquet file of a run; a truncated or foreign one is an OrthoscopeError naming it."""
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...: all mean "cannot read this file"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OrthoscopeError(f"damaged table {path}: {reason} (rerun compare into a fresh folder)") from None


def read_json(path: Path) -> dict:
    """A JSON file of a run ({} when absent); a corrupt one is an OrthoscopeError naming it."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OrthoscopeError(f"damaged {path.name} in {path.parent}: {error}") from None
    if not isinstance(value, dict):
        raise OrthoscopeError(f"damaged {path.name} in {path.parent}: expected a JSON object")
    return value


def read_table_and_summary(folder: str | Path) -> tuple[pd.DataFrame, dict]:
    """metrics.parquet and summary.json of a run folder (what `orthoscope summary` prints)."""
    folder = Path(folder)
    if not (folder / "metrics.parquet").is_file():
        raise OrthoscopeError(f"no metrics.parquet in {folder} (run `orthoscope compare ... -o {folder}` first)")
    table = read_parquet(folder / "metrics.parquet")
    if "post" not in table or "kind" not in table:
        raise OrthoscopeError(f"damaged table {folder / 'metrics.parquet'}: no post/kind columns")
    return table, read_json(folder / "summary.json")


def load_run(folder: str | Path) -> Run:
    """The run in `folder`; an experiment table is taken from the folder or one of its subfolders."""
    folder = Path(folder)
    table, summary = read_table_and_summary(folder)
    found = sorted(folder.glob("experiment.parquet")) + sorted(folder.glob("*/experiment.parquet"))
    experiment = read_parquet(found[0]) if found else None
    evaluation = read_json(folder / "eval.json") or None
    update_cos = read_parquet(folder / "update_cos.parquet") if (folder / "update_cos.parquet").is_file() else None
    return Run(folder, table, summary, experiment, evaluation, update_cos)
