"""Damaged run folders and faults of the disk (issue 26): files with the right names but the wrong
JSON types, FIFOs in place of results, full disks and read-only folders while the report is
written, names longer than a file name may be. Each ends in a correct result or one line, exit 2.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from tests.helpers import Q0, shard_of
from tests.reliability.in_process import cli, one_line

PART = Path("parts") / "post" / f"{Q0}.json"


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    return shutil.copytree(finished_run, tmp_path / "r")


def compare_into(planted, out: Path) -> tuple[int, str]:
    return cli("compare", planted[0], f"post={planted[1]}", "-o", out, "-q", "--no-report", "--kinds", "q,k")


# ---------------------------------------------------------------- wrong JSON types


@pytest.mark.parametrize("value", [[1, 2], "run", 3, None])
def test_run_json_that_is_not_an_object_is_an_unknown_run(planted, run, value):
    (run / "run.json").write_text(json.dumps(value))
    code, output = compare_into(planted, run)
    one_line(code, output, str(run), "unknown run", "--overwrite")


@pytest.mark.parametrize("record", [
    {"metrics": "a_geo=1"},
    {"metrics": {"a_geo": "0.5"}},
    {"metrics": {"a_geo": [1, 2]}},
    {"hashes": "x"},
    {},
    {"skipped": 7},
])
def test_a_part_record_of_wrong_types_is_recomputed(planted, run, finished_run, record):
    path = run / PART
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, **record} if record else {"key": stored["key"]}))
    code, output = compare_into(planted, run)
    assert code == 0, output
    pd.testing.assert_frame_equal(pd.read_parquet(run / "metrics.parquet"),
                                  pd.read_parquet(finished_run / "metrics.parquet"))


@pytest.mark.parametrize("field, value, needle", [
    ("verdicts", [1, 2], "'verdicts' is a list, not a dict"),
    ("notes", "a note", "'notes' is a str, not a list"),
    ("settings", 3, "'settings' is a int, not a dict"),
])
def test_summary_json_with_a_field_of_the_wrong_type_is_one_line(run, field, value, needle):
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, field: value}))
    for command in ("summary", "report"):
        code, output = cli(command, run)
        one_line(code, output, str(run / "summary.json"), needle)


@pytest.mark.parametrize("column", ["a_geo", "rows"])
def test_metrics_parquet_with_numbers_stored_as_text_is_one_line(run, column):
    table = pd.read_parquet(run / "metrics.parquet")
    table[column] = table[column].astype(str)
    table.to_parquet(run / "metrics.parquet")
    for command in ("summary", "report"):
        code, output = cli(command, run)
        one_line(code, output, str(run / "metrics.parquet"), f"column '{column}' holds text")


@pytest.mark.parametrize("name", ["metrics.parquet", "summary.json"])
def test_a_fifo_in_place_of_a_result_is_one_line_not_a_hang(run, name):
    (run / name).unlink()
    os.mkfifo(run / name)
    code, output = cli("summary", run)
    one_line(code, output, str(run / name), "not a regular file")


# ---------------------------------------------------------------- full disk, read-only


def failing_writes(monkeypatch, under: Path, code: int, only=lambda path: True) -> None:
    """Every file created under `under` (and passing `only`) fails with `code`, as a full or read-only disk does."""
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def refused(path) -> bool:
        text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        return text.startswith(str(under)) and only(Path(text)) and not text.endswith(".orthoscope.lock")

    def fail(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and refused(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if refused(path):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)


def report_file(path: Path) -> bool:
    return path.name.startswith((".report.html", "report.html")) or "figures" in path.parts


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EROFS, "Read-only file system"),
                                         (errno.EDQUOT, "quota")])
def test_report_on_a_full_or_read_only_disk_is_one_line(run, monkeypatch, code, words):
    failing_writes(monkeypatch, run, code)
    exit_code, output = cli("report", run)
    one_line(exit_code, output, str(run), words)


def test_compare_with_a_disk_that_fills_while_the_report_is_written_is_one_line(planted, tmp_path, monkeypatch):
    out = tmp_path / "r"
    failing_writes(monkeypatch, out, errno.ENOSPC, only=report_file)
    code, output = cli("compare", *planted, "-o", out, "-q", "--kinds", "q")
    one_line(code, output, str(out), "No space left on device")
    assert (out / "metrics.parquet").is_file()  # the results were written before the report


@pytest.mark.slow
def test_demo_with_a_full_disk_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    failing_writes(monkeypatch, out, errno.ENOSPC, only=lambda path: "eval.json" in path.name)
    code, output = cli("demo", "-o", out, "-q", "--no-experiment")
    one_line(code, output, str(out), "No space left on device")


def test_an_output_path_over_path_max_is_one_line(planted, tmp_path):
    out = tmp_path.joinpath(*["d" * 200] * 25)
    code, output = cli("compare", *planted, "-o", out, "-q", "--no-report", "--kinds", "q")
    one_line(code, output, "name too long")


def test_an_output_that_is_a_link_loop_is_one_line(planted, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    code, output = cli("compare", *planted, "-o", tmp_path / "loop", "-q", "--no-report", "--kinds", "q")
    one_line(code, output, str(tmp_path / "loop"), "symbolic links")


# ---------------------------------------------------------------- long names


def test_a_valid_250_character_tensor_name_gets_its_result_files(planted, tmp_path):
    long = "model.layers.0.self_attn." + "x" * (250 - len("model.layers.0.self_attn..weight")) + ".weight"
    assert len(long) == 250
    folders = []
    for source in planted:
        folder = shutil.copytree(source, tmp_path / source.name)
        shard = shard_of(folder, Q0)
        tensors = load_file(shard)
        tensors[long] = tensors[Q0].clone() * (1.5 if source == planted[1] else 1.0)
        save_file(tensors, shard, metadata={"format": "pt"})
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        index["weight_map"][long] = shard.name
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()),
                                                        "model_type": "mystery"}))
        folders.append(folder)
    out = tmp_path / "r"
    code, output = cli("compare", *folders, "-o", out, "-q", "--no-report", "--layers", "0")
    assert code == 0, output
    table = pd.read_parquet(out / "metrics.parquet").set_index("name")
    assert long in table.index and table.a_geo[long] == pytest.approx(table.a_geo[Q0] * 1.5, rel=1e-5)
    assert all(len(p.name) < 255 for p in out.rglob("*"))


def test_float64_values_near_the_top_of_the_range_are_a_result_or_one_line(planted, tmp_path):
    folders = []
    for source, factor in zip(planted, (1e300, 1.5e300)):
        folder = shutil.copytree(source, tmp_path / source.name)
        shard = shard_of(folder, Q0)
        tensors = load_file(shard)
        tensors[Q0] = tensors[Q0].double() * factor
        save_file(tensors, shard, metadata={"format": "pt"})
        folders.append(folder)
    code, output = cli("compare", *folders, "-o", tmp_path / "r", "--no-report", "--kinds", "q", "--layers", "0",
                       "--precision", "f64")
    assert code == 0, output
    table = pd.read_parquet(tmp_path / "r" / "metrics.parquet")
    if Q0 in set(table.name):  # measured: then with finite numbers
        assert pd.notna(table.set_index("name").a_geo[Q0]), table
    else:  # or skipped, with the reason on the terminal
        assert any(line.startswith("skipped") and Q0 in line for line in output.splitlines()), output


def test_finite_float64_values_beyond_float32_are_not_called_nan(planted, tmp_path):
    folder = shutil.copytree(planted[1], tmp_path / "post")
    shard = shard_of(folder, Q0)
    tensors = load_file(shard)
    tensors[Q0] = tensors[Q0].double() * 1e300
    save_file(tensors, shard, metadata={"format": "pt"})
    code, output = cli("compare", planted[0], folder, "-o", tmp_path / "r", "--no-report", "--kinds", "q",
                       "--layers", "0", "--precision", "f32")
    assert code == 0, output
    skipped = " ".join(line for line in output.splitlines() if Q0 in line or "overflow" in line)
    assert "overflow float32" in skipped and "--precision f64" in skipped and "NaN/Inf" not in skipped, output


# ---------------------------------------------------------------- experiment resume


def test_experiment_resume_sees_a_change_the_sampled_fingerprint_misses(tmp_path):
    """The experiment's resume key (run_key) changes with any weight byte, as compare's per-matrix hashes do."""
    from orthoscope.experiment.run import run_key
    from orthoscope.interventions.run import plan_for
    from orthoscope.lab.shipped import shipped_family
    from orthoscope.sources.store import head_bytes

    family = shipped_family()
    post = shutil.copytree(family["instruct"], tmp_path / "post")
    weights = post / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    head = 8 + int.from_bytes(raw[:8], "little")  # the fingerprint reads the header and 8 slices of 64 KiB
    slices = [head + (len(raw) - head) * i // 8 for i in range(8)]
    offset = slices[-1] - 4096  # inside the last gap between two slices, in tensor data
    assert offset > slices[-2] + (1 << 16) and len(head_bytes(weights)) < len(raw)

    def key() -> tuple[dict, str]:
        plan = plan_for(family["base"], post, {0}, {"q"})
        return run_key(plan, (1.0,), ["lab-arith"], 2, None, 0, {0}, {"q"}), plan.posts[0].fingerprint()

    before, fingerprint = key()
    assert key() == (before, fingerprint)  # same bytes: the same key (a rerun resumes)
    raw[offset] ^= 0x01  # the lowest bit of one weight, in bytes the fingerprint does not sample
    weights.write_bytes(bytes(raw))
    after, fingerprint_after = key()
    assert fingerprint_after == fingerprint and after["post"] != before["post"] and after["base"] == before["base"]
