"""The paper's intervention table on the shipped family: every condition, sane values, resume."""

import pandas as pd
import pytest

from orthoscope.experiment import run as run_module
from orthoscope.experiment import run_experiment
from orthoscope.lab.shipped import shipped_family

TEXT = "The colour of Zorvin is red.\n12 + 30 = 42.\nThe small cat sees a dog.\n"


def test_experiment_table_plot_and_resume(tmp_path, monkeypatch):
    family = shipped_family()
    # square matrices only: there the geodesic ends exactly at the post model (no subspace leak)
    kwargs = dict(grid=(0.9, 1.1), tasks=["lab-facts"], limit=4, text=TEXT, kinds={"q", "o"}, log=lambda m: None)
    table = run_experiment(family["base"], family["instruct"], tmp_path / "exp", **kwargs)
    assert list(table.condition) == [
        "post", "swap-sigma@1", "swap-sigma@auto", "swap-sigma@0.9", "swap-sigma@1.1", "base-vectors", "break-left",
        "break-right", "break-random", "reconstruct", "interpolate@0", "interpolate@0.25", "interpolate@0.5",
        "interpolate@0.75", "interpolate@1"]
    by = table.set_index("condition")
    assert by.loc["interpolate@1", "ppl"] == pytest.approx(by.loc["post", "ppl"], rel=1e-4)
    assert by.loc["interpolate@1", "cka_vs_post"] == pytest.approx(1.0, abs=1e-5)
    assert by.loc["post", "cka_vs_post"] == pytest.approx(1.0, abs=1e-9)
    assert by.loc["break-left", "cka_vs_post"] < by.loc["swap-sigma@1", "cka_vs_post"]
    assert (tmp_path / "exp" / "experiment.png").stat().st_size > 10_000
    assert pd.read_csv(tmp_path / "exp" / "experiment.csv").shape[0] == 15

    calls = []
    monkeypatch.setattr(run_module, "_evaluate", lambda *a: calls.append(1) or {})
    again = run_experiment(family["base"], family["instruct"], tmp_path / "exp", **kwargs)
    assert calls == [] and again.equals(table)
    run_experiment(family["base"], family["instruct"], tmp_path / "exp", **{**kwargs, "limit": 5})
    assert len(calls) == 15  # other settings: nothing reused
