"""Run folders for the report tests: a compare run of the planted pair, with the columns of the
trust work added where this run lacks them, and a checkpoint series built from it."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from orthoscope.cli import app

runner = CliRunner()


def add_trust_columns(table: pd.DataFrame, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """changed/at_noise_floor/rel_delta/z_pair/p_pair/p_gauss/... as the metrics work writes them (kept if present)."""
    rng = np.random.default_rng(seed)
    n = len(table)
    z = rng.normal(shift, 1, n)
    extra = {"changed": True, "at_noise_floor": False, "rel_delta": rng.uniform(0.001, 0.05, n),
             "sym_frac_pair_null": table["sym_frac"] - 0.01 * z, "z_pair": z, "p_pair": norm.sf(z),
             "z_gauss": z + 1, "p_gauss": norm.sf(z + 1), "z_pair_top": z, "sym_frac_top": table["sym_frac"]}
    table = table.copy()
    for column, value in extra.items():
        if column not in table:
            table[column] = value
    return table


def write_table(folder, table: pd.DataFrame) -> None:
    table.to_parquet(folder / "metrics.parquet", index=False)
    table.to_csv(folder / "metrics.csv", index=False)


@pytest.fixture(scope="session")
def planted_run(planted, tmp_path_factory):
    """compare base post -> a run folder (report not written yet), trust columns added."""
    base, post = planted
    folder = tmp_path_factory.mktemp("planted-run") / "run"
    result = runner.invoke(app, ["compare", str(base), str(post), "-o", str(folder), "-q", "--no-report"])
    assert result.exit_code == 0, result.output
    write_table(folder, add_trust_columns(pd.read_parquet(folder / "metrics.parquet"), shift=6.0))
    return folder


@pytest.fixture(scope="session")
def series_run(planted_run, tmp_path_factory):
    """Four checkpoints step-100 ... step-400 of one training (the planted post relabelled, z_pair growing),
    plus update_cos.parquet for every pair of them."""
    folder = tmp_path_factory.mktemp("series-run") / "run"
    shutil.copytree(planted_run, folder)
    one = pd.read_parquet(planted_run / "metrics.parquet")
    posts = {f"step-{s}": s for s in (100, 200, 300, 400)}
    frames = []
    for i, (label, step) in enumerate(posts.items()):
        frame = one.copy()
        frame["post"], frame["step"] = label, step
        frame["z_pair"] = one["z_pair"] * (i + 1) / 4
        frame["rel_delta"] = one["rel_delta"] * (i + 1)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True).astype({"step": "Int64"})
    write_table(folder, table)
    for post in list(posts)[1:]:
        shutil.copytree(folder / "spectra" / "post", folder / "spectra" / post)
    shutil.move(folder / "spectra" / "post", folder / "spectra" / "step-100")
    rng = np.random.default_rng(1)
    pairs = [(a, b) for i, a in enumerate(posts) for b in list(posts)[i + 1:]]
    cos = pd.DataFrame([{"post_a": a, "post_b": b, "name": r["name"], "layer": r["layer"], "kind": r["kind"],
                         "expert": pd.NA, "update_cos": rng.uniform(0.2, 0.9)}
                        for a, b in pairs for _, r in one.iterrows()])
    cos.astype({"expert": "Int64"}).to_parquet(folder / "update_cos.parquet", index=False)
    summary = json.loads((folder / "summary.json").read_text())
    summary["posts"] = {label: summary["posts"]["post"] for label in posts}
    summary.pop("verdicts", None)  # computed by compare for the single post: the report recomputes them
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def experiment_table() -> pd.DataFrame:
    """An intervention table shaped as `orthoscope experiment` writes it (the demo's conditions and claims),
    with accuracies on 20 problems and their Wilson intervals."""
    from orthoscope.evaluation.stats import Accuracy
    from orthoscope.interventions.ops import CONSISTENCY, CONTROL, FRAMEWORK, GEODESIC, SCALING

    rows = [("post", "post", "", "", None, 8, 8.06), ("swap-sigma@1", "swap-sigma", SCALING, "noise", 1.0, 8, 7.86),
            ("swap-sigma@auto", "swap-sigma", SCALING, "noise", None, 8, 7.86),
            ("swap-sigma@0.5", "swap-sigma", SCALING, "noise", 0.5, 0, 109.7),
            ("swap-sigma@1.5", "swap-sigma", SCALING, "noise", 1.5, 0, 37.4),
            ("base-vectors", "base-vectors", CONSISTENCY, "noise,rotate-random", None, 0, 3.5),
            ("break-left", "break-left", CONSISTENCY, "noise,rotate-random", None, 0, 3604.1),
            ("break-right", "break-right", CONSISTENCY, "noise,rotate-random", None, 0, 2937.2),
            ("reconstruct", "reconstruct", FRAMEWORK, "rotate-random", None, 1, 3.79),
            ("interpolate@0.5", "interpolate", GEODESIC, "", None, 6, 3.79),
            ("noise", "noise", CONTROL, "", None, 0, 3.38),
            ("rotate-random", "rotate-random", CONTROL, "", None, 0, 22.4)]
    records = []
    for condition, op, claim, control, scale, hits, ppl in rows:
        record = {"condition": condition, "op": op, "claim": claim, "control": control, "scale": scale, "t": np.nan}
        record.update(Accuracy(hits, 20).fields("lab-facts"))
        record.update({"ppl": ppl, "attn_entropy": 1.0 + ppl / 1e4, "cka_vs_post": 1.0 / (1 + np.log(ppl / 8.06) ** 2),
                       "seconds": 1.0, "dropped_share": np.nan})
        records.append(record)
    return pd.DataFrame(records).astype({"scale": float})


@pytest.fixture(scope="session")
def family_run(tmp_path_factory):
    """compare base instruct control (the shipped family) with the shipped evaluation (eval.json) and an
    intervention table of instruct whose post condition carries the experiment's key; report written."""
    from orthoscope.experiment.columns import claims_table
    from orthoscope.experiment.plot import plot_experiment
    from orthoscope.lab.shipped import shipped_evaluation, shipped_family
    from orthoscope.pipeline.runfolder import ExperimentFolder
    from orthoscope.report import write_report

    family = shipped_family()
    folder = tmp_path_factory.mktemp("family-run") / "run"
    result = runner.invoke(app, ["compare", str(family["base"]), str(family["instruct"]), str(family["control"]),
                                 "-o", str(folder), "-q", "--no-report"])
    assert result.exit_code == 0, result.output
    evaluation = shipped_evaluation()
    (folder / "eval.json").write_text(json.dumps(evaluation))
    experiment = ExperimentFolder(folder / "experiment")
    table = experiment_table()
    with experiment.open():
        experiment.write_tables(table, claims_table(table))
    plot_experiment(table, experiment.plot)
    fingerprint = json.loads((folder / "summary.json").read_text())["posts"]["instruct"]["fingerprint"]
    key = {"post": fingerprint, "limit": 20, "text": evaluation["instruct"]["ppl:text"], "condition": "post"}
    experiment.condition_path("post").parent.mkdir(parents=True, exist_ok=True)
    experiment.condition_path("post").write_text(json.dumps({**table.iloc[0].to_dict(), "key": key}, default=str))
    write_report(folder)
    return folder
