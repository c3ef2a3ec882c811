"""Monitor(background=True): the analysis in a worker process gives the in-line numbers, in order, and never
stops training (a failed step, a full disk, a killed worker are warnings); an idle worker serves the next
monitor; none outlives the training."""

import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

import orthoscope
from orthoscope.monitor import MONITOR_METRICS, MONITOR_PAIR_DRAWS, Monitor
from orthoscope.monitor import worker as worker_module
from orthoscope.monitor.lanes import LANES_ENV
from orthoscope.monitor.series import Job
from orthoscope.pipeline.runfolder import RunFolder

from .conftest import numbers, tiny_llama, train_steps

STEPS = (1, 2, 3)
UP = "model.layers.0.mlp.up_proj.weight"


@pytest.fixture(scope="module")
def both(base_folder, tmp_path_factory):
    """One training measured in line and in background at the same steps, and its checkpoints saved there."""
    root = tmp_path_factory.mktemp("background")
    model = tiny_llama()
    warm = tiny_llama()
    train_steps(warm, 1, seed=99)  # changed matrices: the base's factors are computed and cached
    Monitor(base_folder, None).measure(warm, 0)  # first, so that both monitors below only hit the cache
    inline = Monitor(base_folder, root / "inline")
    inline.results = {}
    arrived = []
    with Monitor(base_folder, root / "background", background=True, pending=1) as background:
        process = background.worker.process
        futures = {}
        for step in STEPS:
            train_steps(model, 1, seed=step)  # the step after a measure changes the weights in place at once
            inline.results[step] = inline.measure(model, step)
            futures[step] = background.measure(model, step)
            futures[step].add_done_callback(lambda f: arrived.append(f.result().step))
            model.save_pretrained(root / f"step-{step}")
    return root, inline, background, futures, arrived, process


def test_background_numbers_equal_in_line_ones_and_an_after_the_fact_compare(base_folder, both):
    root, inline, background, futures, *_ = both
    after = orthoscope.compare(base_folder, {f"step-{s}": root / f"step-{s}" for s in STEPS},
                               metrics=MONITOR_METRICS,
                               pair_draws=MONITOR_PAIR_DRAWS)
    tables = [numbers(RunFolder(root / "background").read_table()), numbers(inline.table), numbers(after.table)]
    assert len(tables[0]) == len(after.table) == 14 * len(STEPS) and tables[0]["rel_delta"].min() > 1e-3
    for other in tables[1:] + [numbers(background.table)]:
        assert list(other.columns) == list(tables[0].columns)
        np.testing.assert_allclose(tables[0].to_numpy(), other.to_numpy(), rtol=1e-6, atol=1e-6, equal_nan=True)
    for step in STEPS:
        assert futures[step].result().logs() == pytest.approx(inline.results[step].logs(), rel=1e-6, abs=1e-6)
    summary = RunFolder(root / "background").read_summary()
    assert list(summary["posts"]) == [f"step-{s}" for s in STEPS]
    assert summary["verdicts"]["posts"].keys() == inline.summary["verdicts"]["posts"].keys()
    assert background.summary["posts"].keys() == summary["posts"].keys()  # the mirror, read in this process
    assert background.counts == inline.counts and background.notes == inline.notes


def test_steps_arrive_in_order_and_close_lets_the_process_go(both):
    *_, background, futures, arrived, process = both
    assert arrived == list(STEPS) and all(f.done() for f in futures.values())
    assert [r.step for r in (f.result() for f in futures.values())] == list(STEPS)
    assert background.worker.process is None and background.seconds > 0
    assert background.worker.cpu_seconds > 0  # the worker's own count, start-up included
    assert process.returncode == 0 or process.poll() is None  # ended, or idle as the spare (or a later test's)


def test_the_next_monitor_takes_the_idle_process_and_it_ends_with_end_spares(base_folder, tmp_path):
    worker_module.end_spares()  # the first monitor starts its own process: its start-up CPU is counted
    weights = {UP: torch.ones(16, 8)}
    first = Monitor(dict(weights), None, background=True, metrics={"rel_delta"})
    process = first.worker.process
    weights[UP] = weights[UP] * 1.5
    assert first.measure(weights, 1).result().table.rel_delta.item() == pytest.approx(0.5)
    first.close()
    assert process.poll() is None  # idle, kept for the next monitor
    second = Monitor(base_folder, tmp_path / "second", background=True)
    assert second.worker.process is process  # no start-up
    model = tiny_llama()
    train_steps(model, 1, seed=7)
    result = second.measure(model, 4).result()
    second.close()
    inline = Monitor(base_folder, None).measure(model, 4)
    np.testing.assert_allclose(numbers(result.table).to_numpy(), numbers(inline.table).to_numpy(), rtol=1e-6,
                               atol=1e-6, equal_nan=True)  # a fresh series: nothing of the first one's
    assert second.worker.start_cpu_seconds < first.worker.start_cpu_seconds / 2  # counted from when it was taken
    worker_module.end_spares()
    assert process.returncode == 0


@pytest.fixture
def gate(monkeypatch):
    """Holds every step's job in this process's sender until set (the worker sees nothing before)."""
    event, real = threading.Event(), worker_module.pack

    def gated(message):
        if isinstance(message, Job):
            event.wait()
        return real(message)

    monkeypatch.setattr(worker_module, "pack", gated)
    return event


def test_a_snapshot_is_isolated_and_at_most_pending_steps_are_held(gate):
    weights = {UP: torch.randn(16, 8, generator=torch.Generator().manual_seed(0))}
    with Monitor(weights, background=True, metrics={"rel_delta"}, pending=1) as monitor:
        weights[UP] *= 1.01
        future = monitor.measure(weights, 1)
        weights[UP] *= 2.0  # an optimizer step while the measure is queued
        assert not monitor.worker.slots.acquire(timeout=0.05)  # the one slot is held: a measure would wait
        gate.set()
        monitor.wait()
        assert monitor.worker.slots.acquire(timeout=5)
        monitor.worker.release()
    assert future.result().table["rel_delta"].item() == pytest.approx(0.01, rel=1e-5)


def test_the_drain_at_close_runs_on_two_lanes_with_rows_in_order_and_the_numbers_of_one(
        base_folder, tmp_path, gate, monkeypatch, caplog):
    worker_module.end_spares()
    monkeypatch.setenv(LANES_ENV, "2")  # two lanes even on a one-core machine
    model, inline = tiny_llama(), Monitor(base_folder, None, cache_dir=tmp_path / "inline")  # its own cold cache
    with caplog.at_level(logging.DEBUG, logger="orthoscope"):
        monitor = Monitor(base_folder, tmp_path / "run", background=True, pending=3, cache_dir=tmp_path / "cache")
        for step in STEPS:
            train_steps(model, 1, seed=step)
            inline.measure(model, step)
            monitor.measure(model, step)  # held here by the gate: the close reaches the worker with them
        threading.Timer(0.2, gate.set).start()
        monitor.close()
    lanes = [line for line in caplog.messages if "monitor worker: step" in line]
    assert [line.split()[4] for line in lanes] == [str(s) for s in STEPS], lanes
    assert all("on 2 lane(s)" in line for line in lanes[1:]) and "drain at close" in caplog.text
    written = RunFolder(tmp_path / "run").read_table()
    assert list(dict.fromkeys(written.post)) == [f"step-{s}" for s in STEPS]  # rows in step order
    assert list(written.name) == list(inline.table.name)  # and in the plan's order within a step
    expected, got = numbers(inline.table).to_numpy(), numbers(written).to_numpy()
    assert np.array_equal(expected, got, equal_nan=True)  # identical, not merely close
    assert monitor.counts == inline.counts  # each lane counted its own: a miss per matrix, then a hit per matrix
    assert monitor.counts == {"hits": 14 * (len(STEPS) - 1), "misses": 14, "not_stored": 0}
    assert monitor.summary["verdicts"] == inline.summary["verdicts"]


def test_a_bad_lanes_setting_is_one_warning_from_the_worker_and_the_drain_goes_on(gate, monkeypatch, caplog):
    worker_module.end_spares()  # a worker started with the setting below
    monkeypatch.setenv(LANES_ENV, "abc")
    weights = {UP: torch.ones(16, 8)}
    try:
        with caplog.at_level(logging.WARNING, logger="orthoscope"):
            monitor = Monitor(dict(weights), None, background=True, metrics={"rel_delta"}, pending=2)
            futures = [monitor.measure({UP: weights[UP] * (1 + step)}, step) for step in (1, 2)]
            threading.Timer(0.2, gate.set).start()
            monitor.close()  # both steps drained, each asking for the lanes
    finally:
        worker_module.end_spares()  # no later test's monitor gets this worker
    assert [f.result().table.rel_delta.item() for f in futures] == pytest.approx([1.0, 2.0])
    assert caplog.messages == [f"orthoscope: {LANES_ENV}='abc' is not a positive integer: the monitor uses "
                               "the default (a thread per core)"]


def test_a_monitor_dropped_unclosed_finishes_its_steps_on_one_lane(base_folder, gate, monkeypatch, caplog):
    """Its caller may still be training: no drain on every core."""
    worker_module.end_spares()
    monkeypatch.setenv(LANES_ENV, "2")
    model = tiny_llama()
    with caplog.at_level(logging.DEBUG, logger="orthoscope"):
        monitor = Monitor(base_folder, None, background=True, pending=2)
        futures = []
        for step in (1, 2):
            train_steps(model, 1, seed=step)
            futures.append(monitor.measure(model, step))
        del monitor
        gc.collect()  # its worker (in a cycle with it) asks the process to end after the steps it has
        gate.set()
        assert [f.result(timeout=60).step for f in futures] == [1, 2]
        deadline = time.time() + 30
        while caplog.text.count("monitor worker: step") < 2 and time.time() < deadline:
            time.sleep(0.05)
    assert caplog.text.count("on 1 lane(s)") == 2 and "drain at close" not in caplog.text
    while not worker_module._SPARES and time.time() < deadline:
        time.sleep(0.05)
    assert worker_module._SPARES  # its series ended: the process was let go, idle


def test_a_measure_held_long_by_the_worker_says_so_once(gate, monkeypatch, caplog):
    monkeypatch.setattr(worker_module, "SLOW_SECONDS", 0.05)
    weights = {UP: torch.ones(16, 8)}
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        with Monitor(weights, background=True, metrics={"rel_delta"}, pending=1) as monitor:
            monitor.measure(weights, 1)  # held in the sender: the one slot stays taken
            threading.Timer(0.3, gate.set).start()
            monitor.measure(weights, 2)  # waits for step 1
            monitor.measure(weights, 3)
    assert caplog.text.count("measure() waited") == 1 and "ORTHOSCOPE_MONITOR_IDLE=0" in caplog.text


FAULTY = """
import errno, orthoscope.monitor.series as series, orthoscope.pipeline.runfolder as runfolder
from orthoscope.monitor import child
collect, write, seen = series.collect, runfolder.atomic_write, []
def boom(*args):
    seen.append(1)
    if len(seen) == 1:
        raise RuntimeError("boom")
    return collect(*args)
def full(*args):
    if len(seen) == 2 and not str(args[0]).endswith("run.json"):  # step 2's rows and summary
        raise OSError(errno.ENOSPC, "No space left on device")
    return write(*args)
series.collect, runfolder.atomic_write = boom, full
child.main()
"""


def test_a_failed_step_and_a_full_disk_in_the_worker_are_warnings(base_folder, tmp_path, monkeypatch, caplog):
    worker_module.end_spares()  # else the monitor would take an idle worker, not this one
    monkeypatch.setattr(worker_module, "child_command", lambda: [sys.executable, "-c", FAULTY])  # waits 0 s idle
    model = tiny_llama()
    futures = []
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        with Monitor(base_folder, tmp_path / "run", background=True, kinds="q") as monitor:
            for step in (1, 2, 3):
                train_steps(model, 1, seed=step)
                futures.append(monitor.measure(model, step))
    assert "step 1 not measured (RuntimeError: boom); training goes on" in caplog.text
    assert "No space left on device; the measurements stay in memory" in caplog.text
    assert [f.result() is None for f in futures] == [True, False, False]
    assert sorted(RunFolder(tmp_path / "run").read_table().post.unique()) == ["step-2", "step-3"]


@pytest.mark.slow
def test_a_killed_worker_loses_its_steps_with_a_warning_and_the_next_step_starts_another(
        base_folder, tmp_path, gate, caplog):
    model = tiny_llama()
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        with Monitor(base_folder, tmp_path / "run", background=True, kinds="q") as monitor:
            gate.set()
            train_steps(model, 1)
            monitor.measure(model, 1).result()
            gate.clear()
            train_steps(model, 1)
            lost = monitor.measure(model, 2)  # held here by the gate: the worker dies before it arrives
            killed = monitor.worker.process
            killed.kill()
            assert lost.result(timeout=30) is None
            gate.set()
            train_steps(model, 1)
            third = monitor.measure(model, 3)
            assert monitor.worker.process is not killed
    assert "step 2 not measured (MonitorError: the monitor's worker process was killed by signal 9)" in caplog.text
    assert third.result() is not None and killed.returncode == -9
    assert sorted(RunFolder(tmp_path / "run").read_table().post.unique()) == ["step-1", "step-3"]


SCRIPT = """
import os, signal, sys, time
import torch
from orthoscope.monitor import Monitor

signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts with Ctrl-C ignored

weights = {"model.layers.0.mlp.up_proj.weight": torch.ones(16, 8)}
monitor = Monitor({k: v.clone() for k, v in weights.items()}, sys.argv[1], background=True, metrics={"rel_delta"})
weights["model.layers.0.mlp.up_proj.weight"] *= 1.5
try:
    future = monitor.measure(weights, 1)
    os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl-C: the terminal's whole foreground group; not the worker
    time.sleep(60)
except KeyboardInterrupt:
    print("measured", future.result().table.rel_delta.item(), flush=True)
print("worker", monitor.worker.process.pid, flush=True)
monitor.measure(weights, 2)
os.kill(os.getpid(), signal.SIGKILL)  # the training dies: the worker must not outlive it
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_script_without_a_main_guard_runs_once_and_its_worker_outlives_ctrl_c_but_not_it(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, start_new_session=True)  # its own group for its Ctrl-C
    lines = done.stdout.splitlines()
    assert done.returncode == -9 and lines[0] == "measured 0.5" and len(lines) == 2, done.stderr
    pid = int(lines[1].split()[1])
    deadline = time.time() + 30
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert list(RunFolder(tmp_path / "run").read_table().post)[:1] == ["step-1"]


def test_a_monitor_in_another_working_folder_starts_its_own_process_which_ends_when_idle(tmp_path, monkeypatch):
    """A relative output folder means the caller's working folder: an idle worker started elsewhere is not taken.
    The new one, let go, waits IDLE_SECONDS for another series and ends on its own."""
    first = Monitor({UP: torch.ones(16, 8)}, None, background=True, metrics={"rel_delta"})
    first.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(worker_module, "IDLE_SECONDS", 0.5)
    second = Monitor({UP: torch.ones(16, 8)}, "run", background=True, metrics={"rel_delta"})
    process = second.worker.process
    assert process is not first.worker.links[-1].process
    second.measure({UP: torch.full((16, 8), 2.0)}, 1).result()
    second.close()
    assert RunFolder(tmp_path / "run").read_table().rel_delta.item() == pytest.approx(1.0)
    assert process.wait(timeout=30) == 0  # no new series within IDLE_SECONDS: it ended on its own
    assert worker_module._take_spare() is None  # and is not taken
