"""Monitor(background=True): the same numbers as measuring in line, steps in order, failures as warnings."""

import logging
import threading

import numpy as np
import pytest
import torch

import orthoscope
from orthoscope.monitor import MONITOR_METRICS, Monitor
from orthoscope.monitor import monitor as monitor_module
from orthoscope.monitor.worker import Worker
from orthoscope.pipeline.runfolder import RunFolder

from .conftest import numbers, tiny_llama, train_steps

STEPS = (1, 2, 3)


@pytest.fixture(scope="module")
def both(base_folder, tmp_path_factory):
    """One training measured in line and in background at the same steps, and its checkpoints saved there."""
    root = tmp_path_factory.mktemp("background")
    model = tiny_llama()
    inline = Monitor(base_folder, root / "inline")
    inline.results = {}
    arrived = []
    with Monitor(base_folder, root / "background", background=True, pending=1) as background:
        futures = {}
        for step in STEPS:
            train_steps(model, 1, seed=step)  # the step after a measure changes the weights in place at once
            inline.results[step] = inline.measure(model, step)
            futures[step] = background.measure(model, step)
            futures[step].add_done_callback(lambda f: arrived.append(f.result().step))
            model.save_pretrained(root / f"step-{step}")
    return root, inline, background, futures, arrived


def test_background_numbers_equal_in_line_ones_and_an_after_the_fact_compare(base_folder, both):
    root, inline, background, futures, _ = both
    after = orthoscope.compare(base_folder, {f"step-{s}": root / f"step-{s}" for s in STEPS},
                               metrics=MONITOR_METRICS)
    tables = [numbers(RunFolder(root / "background").read_table()), numbers(inline.table), numbers(after.table)]
    assert len(tables[0]) == len(after.table) == 14 * len(STEPS) and tables[0]["rel_delta"].min() > 1e-3
    for other in tables[1:]:
        assert list(other.columns) == list(tables[0].columns)
        np.testing.assert_allclose(tables[0].to_numpy(), other.to_numpy(), rtol=1e-6, atol=1e-6, equal_nan=True)
    for step in STEPS:
        assert futures[step].result().logs() == pytest.approx(inline.results[step].logs(), rel=1e-6, abs=1e-6)
    summary = RunFolder(root / "background").read_summary()
    assert list(summary["posts"]) == [f"step-{s}" for s in STEPS]
    assert summary["verdicts"]["posts"].keys() == inline.summary["verdicts"]["posts"].keys()


def test_steps_arrive_in_order_and_close_drains_the_queue(both):
    _, _, background, futures, arrived = both
    assert arrived == list(STEPS) and all(f.done() for f in futures.values())
    assert [r.step for r in (f.result() for f in futures.values())] == list(STEPS)
    assert background.worker.thread is None and background.seconds > 0


def test_a_snapshot_is_not_changed_by_later_in_place_updates(base_folder):
    weights = {"model.layers.0.mlp.up_proj.weight": torch.randn(16, 8, generator=torch.Generator().manual_seed(0))}
    monitor = Monitor(weights, background=True, metrics={"rel_delta"})
    gate = threading.Event()
    monitor.worker.reserve()
    monitor.worker.submit(gate.wait)  # the worker is busy: the step below waits in the queue
    weights["model.layers.0.mlp.up_proj.weight"] *= 1.01
    future = monitor.measure(weights, 1)
    weights["model.layers.0.mlp.up_proj.weight"] *= 2.0  # an optimizer step while the measure is queued
    gate.set()
    monitor.close()
    assert future.result().table["rel_delta"].item() == pytest.approx(0.01, rel=1e-5)


def test_a_crash_in_the_worker_warns_and_the_next_steps_work(base_folder, monkeypatch, caplog):
    model = tiny_llama()
    monitor = Monitor(base_folder, background=True)
    real = monitor_module.collect
    monkeypatch.setattr(monitor_module, "collect", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    train_steps(model, 1)
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        first = monitor.measure(model, 1)
        monitor.wait()
    assert first.result() is None and "step 1 not measured (RuntimeError: boom); training goes on" in caplog.text
    monkeypatch.setattr(monitor_module, "collect", real)
    train_steps(model, 1)
    second = monitor.measure(model, 2)
    monitor.wait()
    assert len(second.result().table) == 14 and list(monitor.table.post.unique()) == ["step-2"]
    monitor.close()


def test_wait_drains_and_measure_waits_while_pending_steps_are_held():
    worker = Worker(pending=1)
    gate, done = threading.Event(), []
    worker.reserve()
    worker.submit(lambda: (gate.wait(), done.append(1)))
    assert not worker.slots.acquire(timeout=0.05)  # the one slot is held: a reserve() would wait
    gate.set()
    worker.reserve()
    worker.submit(lambda: done.append(2))
    worker.wait()
    assert done == [1, 2]
    worker.close()
    with pytest.raises(ValueError, match="pending must be a positive integer"):
        Worker(pending=0)


def test_the_worker_runs_torch_at_one_thread_in_a_tuned_process(monkeypatch):
    from orthoscope.monitor import worker as worker_module

    monkeypatch.setattr(worker_module, "process_tuned", lambda: True)
    worker = Worker()
    worker.reserve()
    seen = worker.submit(torch.get_num_threads)
    worker.close()
    assert seen.result() == 1


def test_a_job_runs_at_the_short_switch_interval_and_the_interval_comes_back():
    import sys

    from orthoscope.monitor.worker import SWITCH_INTERVAL

    before, worker = sys.getswitchinterval(), Worker()
    worker.reserve()
    seen = worker.submit(sys.getswitchinterval)
    worker.close()
    assert seen.result() == pytest.approx(SWITCH_INTERVAL) and sys.getswitchinterval() == before
