"""Issue 11 end to end, through the CLI: planted posts with known truth get the right verdicts.

Five posts of one tiny base: a consistent rotation (symmetric D), a magnitude-only update
(|D| on the top directions, independent signs), an isotropic update, a LoRA-style update of
q and v only, and the base itself. Only the consistent plant may be called consistent.
"""

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.lab.planted import build_planted_family

runner = CliRunner()


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trust")
    paths = build_planted_family(folder / "models")
    posts = [f"{name}={path}" for name, path in paths.items() if name != "base"]
    result = runner.invoke(app, ["compare", str(paths["base"]), *posts, "-o", str(folder / "run"), "--json", "-q",
                                 "--no-report"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), pd.read_parquet(folder / "run" / "metrics.parquet")


def rotation(summary, post):
    return summary["verdicts"]["posts"][post]["overall"]["rotation"]


def test_only_the_consistent_plant_is_called_consistent(family_run):
    summary, _ = family_run
    verdicts = {post: rotation(summary, post)["verdict"] for post in summary["verdicts"]["posts"]}
    assert verdicts["consistent"] == "consistent"
    assert all(v not in ("consistent", "weakly consistent") for p, v in verdicts.items() if p != "consistent"), verdicts
    assert rotation(summary, "consistent")["z_pair_ci"][0] > 5


def test_magnitude_only_plant_beats_the_gaussian_null_but_not_the_pairing_null(family_run):
    summary, table = family_run
    rows = table[table.post == "magnitude"]
    assert rows.sym_frac.median() > rows.sym_frac_null.median() + 0.05
    assert (rows.p_gauss < 0.01).mean() >= 0.5
    assert (rows.z_pair.abs() < 3).all()
    assert rotation(summary, "magnitude")["bh_pair"] == 0


def test_isotropic_plant_is_noise_under_both_nulls(family_run):
    _, table = family_run
    rows = table[table.post == "isotropic"]
    assert rows.z_pair.abs().max() < 3.5 and rows.z_gauss.abs().median() < 1.5


def test_lora_plant_changes_only_its_adapted_matrices(family_run):
    summary, table = family_run
    rows = table[table.post == "lora"]
    assert set(rows[rows.changed].kind) == {"q", "v"}
    unchanged = rows[~rows.changed]
    assert unchanged[["sym_frac", "z_pair", "incons", "rot"]].isna().all().all()
    assert summary["unchanged"]["lora"] == {"down": 2, "gate": 2, "k": 2, "o": 2, "q": 0, "up": 2, "v": 0}


def test_a_model_against_itself_shows_no_changed_matrix_and_no_structure(family_run):
    summary, table = family_run
    rows = table[table.post == "self"]
    assert not rows.changed.any() and rows.sym_frac.isna().all() and rows.z_pair.isna().all()
    assert (rows.a_geo == 1).all()
    sentence = summary["verdicts"]["posts"]["self"]["sentences"]["rotation"]
    assert sentence.startswith("Post identical to base")
    assert any("self: identical to the base" in note for note in summary["notes"])


def test_every_number_of_the_verdicts_is_in_the_summary(family_run):
    summary, _ = family_run
    r = rotation(summary, "consistent")
    sentence = summary["verdicts"]["posts"]["consistent"]["sentences"]["rotation"]
    assert f"{r['bh_pair']} of {r['n_p_pair']}" in sentence
    assert f"{r['z_pair']:.3g}" in sentence and not math.isnan(r["z_pair"])
