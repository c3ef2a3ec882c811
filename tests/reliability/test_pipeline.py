"""Hostile inputs and faults around compare: each ends in a correct result or one line and exit 2.

Stale resumes, damaged cache entries, name collisions, unusable output folders, bad
options, concurrent runs, another run's folder, full disks, Ctrl-C and kill -9.
"""

import errno
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import SafetensorError
from safetensors.torch import load_file
from typer.testing import CliRunner

import orthoscope
from orthoscope.cli import app
from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline import cache as cache_module
from orthoscope.pipeline import work
from orthoscope.pipeline.runfolder import RunFolder
from orthoscope.pipeline.store import safe_name
from tests.helpers import Q0, copy_with, shard_of

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
K1 = "model.layers.1.self_attn.k_proj.weight"

def named(rows):
    """Parametrize rows with readable ids: the command-line arguments of the case."""
    return [pytest.param(*row, id=" ".join(map(str, row[0])) or "no-args") for row in rows]



def measured(monkeypatch) -> list:
    """The (matrix) names measure() is called for from now on."""
    calls = []
    real = work.measure
    monkeypatch.setattr(work, "measure", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    return calls


def cli(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_line_error(output: str, *needles: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for needle in needles:
        assert needle in lines[0], output
    assert "Traceback" not in output


def changed_post(post: Path, folder: Path, tensor: str = Q0, factor: float = 1.5) -> Path:
    W = load_file(shard_of(post, tensor))[tensor]
    return copy_with(post, folder, tensor, W * factor)


# ----------------------------------------------------------------- stale resume


def test_resume_recomputes_exactly_the_matrix_whose_post_bytes_changed(planted, tmp_path, monkeypatch):
    base, post = planted
    editable = tmp_path / "post"
    shutil.copytree(post, editable)
    orthoscope.compare(base, editable, tmp_path / "r")
    # rewrite one matrix in place, as `intervene` or a training step would (the sampled fingerprint may not see it)
    shutil.rmtree(editable)
    changed_post(post, editable, K1, 1.5)
    calls = measured(monkeypatch)
    resumed = orthoscope.compare(base, editable, tmp_path / "r").table
    assert calls == [K1]
    fresh = orthoscope.compare(base, editable).table
    pd.testing.assert_frame_equal(resumed, fresh)
    before = orthoscope.compare(*planted, kinds="k").table.set_index("name").a_geo[K1]
    assert resumed.set_index("name").a_geo[K1] == pytest.approx(1.5 * before, rel=1e-6)


def test_resume_recomputes_when_the_base_matrix_changed(planted, tmp_path, monkeypatch):
    base, post = planted
    editable = tmp_path / "base"
    shutil.copytree(base, editable)
    orthoscope.compare(editable, post, tmp_path / "r", kinds="q")
    shutil.rmtree(editable)
    changed_post(base, editable, Q0, 0.5)
    calls = measured(monkeypatch)
    orthoscope.compare(editable, post, tmp_path / "r", kinds="q")
    assert calls == [Q0]


def test_stale_update_cos_is_recomputed_for_the_changed_matrix_only(planted, tmp_path):
    base, post = planted
    other = tmp_path / "other"
    shutil.copytree(post, other)
    first = orthoscope.compare(base, [post, other], tmp_path / "r", kinds="q").update_cos
    assert first.update_cos.to_numpy() == pytest.approx(1.0)
    W_b = load_file(shard_of(base, Q0))[Q0]
    W_p = load_file(shard_of(post, Q0))[Q0]
    shutil.rmtree(other)
    copy_with(post, other, Q0, W_b - (W_p - W_b))
    again = orthoscope.compare(base, [post, other], tmp_path / "r", kinds="q").update_cos.set_index("name")
    assert again.update_cos[Q0] == pytest.approx(-1.0, abs=1e-5)
    assert again.update_cos.drop(Q0).to_numpy() == pytest.approx(1.0)


# ----------------------------------------------------------------- cache


def entry_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


def test_cache_entry_with_flipped_bits_is_a_miss_and_is_replaced(planted, tmp_path, private_svd_cache):
    reference = orthoscope.compare(*planted, kinds="o", cache=False).table
    orthoscope.compare(*planted, kinds="o")
    for path in entry_files(private_svd_cache):
        raw = bytearray(path.read_bytes())
        for offset in range(len(raw) - 64, len(raw) - 8):  # inside the factors; length and header intact
            raw[offset] ^= 0x5A
        path.write_bytes(bytes(raw))
    damaged = orthoscope.compare(*planted, kinds="o")
    assert damaged.summary["cache"]["hits"] == 0 and damaged.summary["cache"]["misses"] == 2
    pd.testing.assert_frame_equal(damaged.table, reference, rtol=1e-10, atol=1e-12)
    assert orthoscope.compare(*planted, kinds="o").summary["cache"]["hits"] == 2  # replaced by good entries


def test_truncated_cache_entry_is_a_miss(planted, private_svd_cache):
    orthoscope.compare(*planted, kinds="q")
    for path in entry_files(private_svd_cache):
        path.write_bytes(path.read_bytes()[:100])
    result = orthoscope.compare(*planted, kinds="q")
    assert result.summary["cache"] == {"hits": 0, "misses": 2, "not_stored": 0}


def test_full_disk_while_writing_the_cache_goes_on_without_caching(planted, monkeypatch):
    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(cache_module, "save_file", full)
    reference = orthoscope.compare(*planted, kinds="q,k", cache=False).table
    result = orthoscope.compare(*planted, kinds="q,k")
    assert result.summary["cache"]["not_stored"] == 4
    assert any("cache full or not writable" in note for note in result.summary["notes"])
    pd.testing.assert_frame_equal(result.table, reference)


# ----------------------------------------------------------------- names


def test_posts_named_a_space_b_and_a_underscore_b_keep_their_own_results(planted, tmp_path):
    base, post = planted
    other = changed_post(post, tmp_path / "other", Q0, 2.0)
    result = orthoscope.compare(base, {"a b": post, "a_b": other}, tmp_path / "r", kinds="q")
    folders = sorted(p.name for p in (tmp_path / "r" / "spectra").iterdir())
    assert len(folders) == 2 and "a_b" in folders
    by_post = result.table.set_index(["post", "name"]).a_geo
    assert by_post[("a_b", Q0)] == pytest.approx(2.0 * by_post[("a b", Q0)], rel=1e-6)
    again = orthoscope.compare(base, {"a b": post, "a_b": other}, tmp_path / "r", kinds="q")  # resume reads its own
    pd.testing.assert_frame_equal(again.table, result.table)


def test_matrix_names_differing_only_in_escaped_characters_get_distinct_files(tmp_path):
    names = ["blk.0:attn", "blk.0_attn", "blk.0/attn", "blk.0 attn", "..", "."]
    assert len({safe_name(n) for n in names}) == len(names)
    assert all("/" not in safe_name(n) and safe_name(n) not in (".", "..") for n in names)
    folder = RunFolder(tmp_path / "r")
    with folder.open({"base": "b", "posts": {}, "settings": {}}):
        for i, name in enumerate(names):
            folder.save_part("p", name, {}, {"metrics": {"a_geo": float(i)}})
    assert [folder.load_part("p", n, {})["metrics"]["a_geo"] for n in names] == list(map(float, range(len(names))))
    assert all(p.parent == tmp_path / "r" / "parts" / "p" for p in (tmp_path / "r" / "parts").rglob("*.json"))


# ----------------------------------------------------------------- output folder


def test_output_path_that_is_a_file(planted, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code, output = cli("compare", *planted, "-o", target, "-q", "--no-report")
    assert code == 2
    one_line_error(output, str(target), "is a file")
    code, output = cli("compare", *planted, "-o", target / "sub", "-q", "--no-report")
    assert code == 2
    one_line_error(output, "cannot create run folder", str(target / "sub"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(planted, tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    try:
        code, output = cli("compare", *planted, "-o", target, "-q", "--no-report")
    finally:
        target.chmod(0o755)
    assert code == 2
    one_line_error(output, str(target), "not writable")


def test_output_folder_that_refuses_writes(planted, tmp_path, monkeypatch):
    """A read-only mount (EROFS) seen as root too: creating the lock file fails."""
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".orthoscope.lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report")
    assert code == 2
    one_line_error(output, "not writable", "Read-only file system")


def test_full_disk_while_writing_results(planted, tmp_path, monkeypatch):
    import numpy as np

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q")
    assert code == 2
    one_line_error(output, "cannot write", "No space left on device")
    assert not (tmp_path / "r" / "metrics.parquet").exists()
    assert not list((tmp_path / "r").rglob("*.tmp"))


# ----------------------------------------------------------------- options


@pytest.mark.parametrize("args, needle", named([
    (["--device", "bogus"], "unknown --device 'bogus'"),
    (["--device", "cuda:" + "9" * 30], "unknown --device 'cuda:999"),
    (["--cache-limit", "nan"], "--cache-limit must be a finite number"),
    (["--cache-limit", "inf"], "--cache-limit must be a finite number"),
    (["--cache-limit", "-1"], "--cache-limit must be a finite number"),
    (["--seed", str(2**70)], "--seed must be an integer from 0 to"),
    (["--seed", "-1"], "--seed must be an integer from 0 to"),
    (["--layers", "0-99999999999"], "bad --layers"),
    (["--kinds", "qq"], "unknown --kinds qq"),
    (["--precision", "f16"], "unknown precision 'f16'"),
    (["--workers", "0"], "--workers must be a positive integer, not 0"),
    (["--executor", "ray", "--workers", "0"], "--workers must be a positive integer"),
    (["--executor", "dask"], "unknown executor 'dask'"),
    (["--control", "nobody"], "--control 'nobody' is not one of the posts"),
]))
def test_bad_option_is_one_line(planted, tmp_path, args, needle):
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", *args)
    assert code == 2, output
    one_line_error(output, needle)


def test_a_post_name_that_is_not_a_plain_name_says_what_a_name_may_be(planted, tmp_path):
    code, output = cli("compare", planted[0], f"a b={planted[1]}", "-o", tmp_path / "r", "-q", "--no-report")
    assert code == 2, output
    one_line_error(output, "post name 'a b'", "a NAME=PATH name is letters, digits")  # not "path does not exist"


def test_bad_cache_limit_in_the_environment(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("ORTHOSCOPE_CACHE_LIMIT", "nan")
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report")
    assert code == 2
    one_line_error(output, "ORTHOSCOPE_CACHE_LIMIT")


# ----------------------------------------------------------------- another run, another process


def test_folder_of_another_run_is_refused_unless_overwrite(planted, tmp_path):
    base, post = planted
    other = changed_post(post, tmp_path / "other", Q0, 2.0)
    out = tmp_path / "r"
    assert cli("compare", base, post, "-o", out, "-q", "--no-report")[0] == 0
    code, output = cli("compare", base, other, "-o", out, "-q", "--no-report")
    assert code == 2
    one_line_error(output, str(out), "other inputs or settings", "--overwrite")
    code, output = cli("compare", base, post, "-o", out, "-q", "--no-report", "--seed", "3")
    assert code == 2 and "settings.seed" in output
    assert cli("compare", base, f"mine={other}", "-o", out, "-q", "--no-report", "--overwrite")[0] == 0
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["mine"]  # the old run's parts are gone
    assert set(pd.read_parquet(out / "metrics.parquet").post) == {"mine"}


def test_folder_with_files_of_an_unknown_run_is_refused(planted, tmp_path):
    out = tmp_path / "r"
    (out / "parts").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    code, output = cli("compare", *planted, "-o", out, "-q", "--no-report")
    assert code == 2
    one_line_error(output, "unknown run", "parts")
    assert cli("compare", *planted, "-o", out, "-q", "--no-report", "--overwrite")[0] == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite clears only what runs write


def test_identical_base_and_post_give_a_note(planted, tmp_path):
    code, output = cli("compare", planted[0], planted[0], "-o", tmp_path / "r", "--no-report", "--kinds", "q")
    assert code == 0
    notes = [line for line in output.splitlines() if "same bytes as the base" in line]
    assert len(notes) == 1 and notes[0].startswith("note:")


def test_no_same_bytes_note_beside_a_changed_matrix(planted, tmp_path):
    base = planted[0]
    post = changed_post(base, tmp_path / "post", Q0, 1.5)  # the base with one matrix changed
    code, output = cli("compare", base, post, "-o", tmp_path / "r", "--no-report", "--kinds", "q")
    assert code == 0 and "same bytes as the base" not in output, output


def test_second_concurrent_compare_is_refused(planted, tmp_path):
    out = tmp_path / "r"
    holder = RunFolder(out)
    out.mkdir()
    with holder.locked():
        code, output = cli("compare", *planted, "-o", out, "-q", "--no-report")
        with pytest.raises(OrthoscopeError, match="in use by another orthoscope process"):
            orthoscope.compare(*planted, out)
    assert code == 2
    one_line_error(output, str(out), "in use by another orthoscope process")
    assert cli("compare", *planted, "-o", out, "-q", "--no-report", "--kinds", "q")[0] == 0  # released


def test_lock_held_by_another_process(planted, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    script = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
              "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(out / ".orthoscope.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, output = cli("compare", *planted, "-o", out, "-q", "--no-report")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "in use by another orthoscope process" in output


# ----------------------------------------------------------------- interrupts


def test_ctrl_c_exits_130_with_a_resume_hint(planted, tmp_path, monkeypatch):
    real = work.measure
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(work, "measure", interrupted)
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "--no-report")
    assert code == 130
    assert output.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    monkeypatch.setattr(work, "measure", real)
    calls2 = measured(monkeypatch)
    assert cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report")[0] == 0
    assert len(calls2) == 14 - 3


def slow_by_a_tenth(call: int) -> None:
    time.sleep(0.1)


class SlowRun:
    """`orthoscope compare ARGS` in a forked child of the test process (a real process to signal, without an
    interpreter's start-up and imports), each measure() slowed by `slow(call number)` (0.1 s); its stderr goes to
    a file. Popen's poll/send_signal/wait/returncode."""

    def __init__(self, args, stderr: Path, slow=slow_by_a_tenth):
        self.stderr_path, self.returncode, self.slow = stderr, None, slow
        self.pid = os.fork()
        if self.pid == 0:
            self._child(args)

    def _child(self, args) -> None:
        code = 1
        try:  # never returns into pytest
            fd = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
            real, calls = work.measure, itertools.count()

            def slow(*a, **k):
                self.slow(next(calls))
                return real(*a, **k)

            work.measure = slow
            sys.argv = ["orthoscope", "compare", *map(str, args)]
            from orthoscope.cli import main

            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)

    def _set(self, status: int) -> int:
        self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._set(status)
        return self.returncode

    def wait(self, timeout: float = 600) -> int:
        """Its exit status (the signal's number, negated, if one ended it); killed and an error after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise TimeoutError(f"the forked compare ran past {timeout} s: {self.stderr()[-2000:]}")
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def parts_written(out: Path) -> int:
    return len(list((out / "parts").glob("*/*.json"))) if (out / "parts").is_dir() else 0


@pytest.mark.slow
def test_kill_9_at_several_moments_then_resume_gives_the_uninterrupted_table(planted, tmp_path):
    base, post = planted
    other = changed_post(post, tmp_path / "other", K1, 0.5)
    args = [str(base), str(post), f"other={other}", "-o", str(tmp_path / "r"), "-q", "--no-report", "--precision",
            "f64"]
    for moment in (1, 18):  # parts on disk when the kill lands (of 28): early in a fresh run, late in a resumed one
        process = SlowRun(args, tmp_path / f"stderr-{moment}.txt")
        while parts_written(tmp_path / "r") < moment and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr()  # killed mid-run, not finished
        assert not (tmp_path / "r" / "metrics.parquet").exists()
    done = SlowRun(args, tmp_path / "stderr-done.txt")
    # while the resume runs; no cache, so a broken cache entry cannot feed both sides of the comparison
    reference = orthoscope.compare(base, [post, ("other", other)], precision="f64", cache=False)
    assert done.wait() == 0, done.stderr()
    table = pd.read_parquet(tmp_path / "r" / "metrics.parquet")
    pd.testing.assert_frame_equal(table, reference.table, rtol=1e-12, atol=1e-12)
    pairs = pd.read_parquet(tmp_path / "r" / "update_cos.parquet")
    pd.testing.assert_frame_equal(pairs, reference.update_cos, rtol=1e-12, atol=1e-12)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["resumed"] > 0


@pytest.mark.slow
def test_ctrl_c_in_a_real_process(planted, tmp_path):
    out = tmp_path / "r"
    process = SlowRun([*planted, "-o", out, "-q", "--no-report"], tmp_path / "stderr.txt")
    while parts_written(out) < 2 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    stderr = process.stderr()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    assert "Traceback" not in stderr


def long_after_the_third(call: int) -> None:
    """The first three measures take 0.1 s, every later one 60 s: 600 kernels of 0.1 s (a large matrix's)."""
    from orthoscope.kernels.threads import full_threads

    for _ in range(1 if call < 3 else 600):
        with full_threads():  # a kernel's entry
            time.sleep(0.1)


@pytest.mark.slow
def test_ctrl_c_with_lanes_is_prompt_and_keeps_the_finished_matrices(planted, tmp_path, monkeypatch):
    """Two lanes, both inside a 60 s matrix when Ctrl-C lands: exit 130 within a kernel or so (not after the
    matrices finish), every finished matrix stored, and the resume measures only the rest."""
    out = tmp_path / "r"
    args = [*planted, "-o", out, "-q", "--no-report", "--workers", "2"]
    process = SlowRun(args, tmp_path / "stderr.txt", slow=long_after_the_third)
    while parts_written(out) < 3 and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.5)  # both lanes inside their long matrices
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    took = time.monotonic() - interrupted
    stderr = process.stderr()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    assert "Traceback" not in stderr
    assert took < 20, took  # the running matrices had 59 s or more to go (a prompt exit: about 1 s)
    stored = parts_written(out)
    assert stored >= 3
    calls = measured(monkeypatch)
    code, output = cli("compare", *args)
    assert code == 0, output
    assert len(calls) == 14 - stored
    assert json.loads((out / "summary.json").read_text())["settings"]["executor_options"]["lanes"] == 2


def test_damaged_table_or_summary_is_one_line(planted, tmp_path):
    out = tmp_path / "r"
    orthoscope.compare(*planted, out, kinds="q")
    folder = RunFolder(out)
    assert len(folder.read_table()) == 2 and folder.read_summary()["matrices"] == 2
    raw = folder.metrics_parquet.read_bytes()
    folder.metrics_parquet.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(OrthoscopeError, match=r"metrics.parquet is damaged"):
        folder.read_table()
    folder.summary_json.write_text('{"per_kind": ')
    with pytest.raises(OrthoscopeError, match=r"summary.json is damaged"):
        folder.read_summary()
    folder.summary_json.write_text("[1, 2]")
    with pytest.raises(OrthoscopeError, match=r"summary.json is damaged \(not a JSON object\)"):
        folder.read_summary()
    with pytest.raises(OrthoscopeError, match="no metrics.parquet in"):
        RunFolder(tmp_path / "empty").read_table()

