"""Every bad input: one line naming the problem and the file, exit code 2, no traceback."""

import json
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from orthoscope.cli import app
from tests.helpers import Q0, copy_with, shard_of

runner = CliRunner()


def fails(*args: str) -> str:
    result = runner.invoke(app, ["compare", *map(str, args), "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_missing_path(planted, tmp_path):
    line = fails(tmp_path / "nowhere", planted[1], "-o", tmp_path / "o")
    assert "path does not exist" in line and "nowhere" in line


def test_folder_without_weights(planted, tmp_path):
    (tmp_path / "empty").mkdir()
    line = fails(tmp_path / "empty", planted[1], "-o", tmp_path / "o")
    assert "no weights found in" in line and "empty" in line


def test_truncated_safetensors(planted, tmp_path):
    bad = shutil.copytree(planted[1], tmp_path / "bad")
    shard = shard_of(bad, Q0)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    line = fails(planted[0], bad, "-o", tmp_path / "o")
    assert "corrupt or truncated safetensors file" in line and shard.name in line


def test_index_names_missing_shard(planted, tmp_path):
    bad = shutil.copytree(planted[1], tmp_path / "bad")
    shard_of(bad, Q0).unlink()
    line = fails(planted[0], bad, "-o", tmp_path / "o")
    assert "names missing shard" in line and "model.safetensors.index.json" in line


def test_architectures_differ(planted, tmp_path):
    bad = shutil.copytree(planted[1], tmp_path / "bad")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    line = fails(planted[0], bad, "-o", tmp_path / "o")
    assert "architectures differ" in line and "'qwen2'" in line and "'llama'" in line


def test_shapes_differ(planted, tmp_path):
    bad = copy_with(planted[1], tmp_path / "bad", Q0, torch.zeros(32, 64))
    line = fails(planted[0], bad, "-o", tmp_path / "o")
    assert "differ in 1 matrices" in line and Q0 in line and "(64, 64) vs (32, 64)" in line


def test_unreachable_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    line = fails("nobody/no-such-model", "nobody/other", "-o", tmp_path / "o")
    assert "cannot fetch hub id 'nobody/no-such-model'" in line


def test_bad_filters(planted, tmp_path):
    line = fails(*planted, "-o", tmp_path / "o", "--layers", "1-x")
    assert "--layers" in line and "1-x" in line
    line = fails(*planted, "-o", tmp_path / "o", "--kinds", "q,zz")
    assert "unknown --kinds" in line and "zz" in line
    line = fails(*planted, "-o", tmp_path / "o", "--precision", "f16")
    assert "precision" in line and "f16" in line


@pytest.mark.parametrize("value, reason", [
    (float("nan"), "NaN/Inf entries in the post matrix"),
    (0.0, "all-zero post matrix"),
])
def test_nan_or_zero_matrix_is_skipped_and_the_run_goes_on(planted, tmp_path, value, reason):
    bad = copy_with(planted[1], tmp_path / "bad", Q0, torch.full((64, 64), value))
    result = runner.invoke(app, ["compare", str(planted[0]), str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert f"skipped bad {Q0}: " in result.output and reason in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["skipped"] == [{"post": "bad", "name": Q0, "reason": summary["skipped"][0]["reason"]}]
    assert reason in summary["skipped"][0]["reason"]
    assert len(pd.read_parquet(tmp_path / "o" / "metrics.parquet")) == 13


def test_rank_deficient_matrix_gives_finite_metrics(planted, tmp_path):
    W = load_file(shard_of(planted[1], Q0))[Q0]
    U, S, Vh = torch.linalg.svd(W)
    S[10:] = 0
    bad = copy_with(planted[1], tmp_path / "bad", Q0, U @ torch.diag(S) @ Vh)
    result = runner.invoke(app, ["compare", str(planted[0]), str(bad), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "o" / "metrics.parquet")
    row = table[table.name == Q0].iloc[0]
    from orthoscope.metrics.registry import metric_sets, names

    vectors = {*names(family="rotation"), *names(family="angles")}  # the post's vectors past rank 10 are arbitrary
    asked = sorted(metric_sets()["all"] - vectors)  # the default set (delta_rank90, delta_top16: only when asked for)
    bad = [c for c in asked if not (pd.notna(row[c]) and abs(float(row[c])) < 1e12)]
    assert row.changed and not bad, bad
    assert row[sorted(vectors)].isna().all() and row.note.startswith("post has numerical rank 10 < r = 64")
    assert row.stable_rank_post < row.stable_rank_base


@pytest.mark.slow
def test_bin_checkpoint_is_read_with_weights_only(planted, tmp_path):
    binary = tmp_path / "bin"
    binary.mkdir()
    shutil.copy(planted[1] / "config.json", binary / "config.json")
    tensors = {}
    for shard in sorted(planted[1].glob("*.safetensors")):
        tensors.update(load_file(shard))
    torch.save(tensors, binary / "pytorch_model.bin")
    result = runner.invoke(app, ["compare", str(planted[0]), str(binary), "-o", str(tmp_path / "o"), "-q",
                                 "--no-report"])  # the tables are compared: no report needed
    assert result.exit_code == 0, result.output
    reference = runner.invoke(app, ["compare", str(planted[0]), str(planted[1]), "-o", str(tmp_path / "r"), "-q",
                                    "--no-report"])
    assert reference.exit_code == 0
    a = pd.read_parquet(tmp_path / "o" / "metrics.parquet")
    b = pd.read_parquet(tmp_path / "r" / "metrics.parquet")
    pd.testing.assert_frame_equal(a.drop(columns="post"), b.drop(columns="post"))


def test_pickle_with_code_is_refused(planted, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    shutil.copy(planted[1] / "config.json", evil / "config.json")
    torch.save({"x": torch.zeros(2), "f": print}, evil / "pytorch_model.bin")
    line = fails(planted[0], evil, "-o", tmp_path / "o")
    assert "holds pickled code (print)" in line and "was refused" in line and "pytorch_model.bin" in line
    assert "weights_only=False" not in line
