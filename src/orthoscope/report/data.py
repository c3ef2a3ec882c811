"""What a report reads from a run folder: the table, summary, spectra, experiment, evaluation.

Every file is read through `orthoscope.pipeline.runfolder.RunFolder`, the one owner of
the folder's layout: a damaged file (truncated parquet or .npz, corrupt JSON) is an
OrthoscopeError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from orthoscope.experiment.columns import POST
from orthoscope.metrics.scaling import RHO_FLOOR
from orthoscope.pipeline.runfolder import ExperimentFolder, RunFolder


@dataclass
class Run:
    folder: Path
    table: pd.DataFrame
    summary: dict
    experiment: pd.DataFrame | None
    evaluation: dict | None
    update_cos: pd.DataFrame | None = None
    experiment_key: dict | None = None
    store: RunFolder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = RunFolder(self.folder)

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
        return self.store.read_spectra(post, name)


def load_run(folder: str | Path) -> Run:
    """The run in `folder` in the current schema (summary with verdicts); an experiment table is taken from the
    folder or one of its subfolders."""
    store = RunFolder(folder)
    table, summary = store.read_run()
    return Run(store.path, table, summary, store.read_experiment(), store.read_evaluation(), store.read_update_cos(),
               experiment_key(store.path))


def experiment_key(folder: Path) -> dict | None:
    """What the experiment's post model was evaluated with (its post condition's key: post fingerprint,
    limit, text digest), or None when the folder holds no readable one."""
    found = sorted(folder.glob(ExperimentFolder.TABLE)) + sorted(folder.glob(f"*/{ExperimentFolder.TABLE}"))
    if not found:
        return None
    try:
        record = json.loads(ExperimentFolder(found[0].parent).condition_path(POST).read_text())
    except (OSError, ValueError):
        return None
    key = record.get("key") if isinstance(record, dict) else None
    return key if isinstance(key, dict) else None
