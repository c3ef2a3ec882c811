"""What a report reads from a run folder: the table, summary, spectra, experiment, evaluation."""

from __future__ import annotations

import json
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

    def ratio_curves(self, names: list[str]):
        """Yield (post, name, i/r, s_p,i / s_b,i) over the indices where rho is defined."""
        for post in dict.fromkeys(self.table.post):
            for name in names:
                spectra = self.spectra(post, name)
                if spectra is None:
                    continue
                s_b, s_p = spectra["s_base"], spectra["s_post"]
                keep = s_b > RHO_FLOOR * s_b[0]
                yield post, name, np.arange(len(s_b))[keep] / len(s_b), s_p[keep] / s_b[keep]

    def spectra(self, post: str, name: str) -> dict[str, np.ndarray] | None:
        path = self.folder / "spectra" / safe_name(post) / f"{safe_name(name)}.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


def load_run(folder: str | Path) -> Run:
    """The run in `folder`; an experiment table is taken from the folder or one of its subfolders."""
    folder = Path(folder)
    if not (folder / "metrics.parquet").is_file():
        raise OrthoscopeError(f"no metrics.parquet in {folder} (run `orthoscope compare ... -o {folder}` first)")
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
    found = sorted(folder.glob("experiment.parquet")) + sorted(folder.glob("*/experiment.parquet"))
    experiment = pd.read_parquet(found[0]) if found else None
    evaluation = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else None
    return Run(folder, pd.read_parquet(folder / "metrics.parquet"), summary, experiment, evaluation)
