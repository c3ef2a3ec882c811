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
