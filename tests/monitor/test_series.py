"""A worker's series and its mirror: after every step the worker sends the step's rows and own summary
(`Series.update`), a message whose size does not grow with the series, and the mirror (`adopt`) becomes
the worker's series: the same table, summary, skips, notes and counts."""

import json
import time

import pandas as pd
import pytest
import torch

from orthoscope.monitor import MONITOR_METRICS
from orthoscope.monitor.channel import pack
from orthoscope.monitor.live import live_checkpoint
from orthoscope.monitor.series import Series
from orthoscope.pipeline.options import CompareOptions
from orthoscope.pipeline.pairing import make_plan

NAMES = ("model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight")


def _pair(metrics, output=None) -> tuple[Series, Series, dict]:
    torch.manual_seed(0)
    weights = {name: torch.randn(12, 8) for name in NAMES}
    base = live_checkpoint({k: v.clone() for k, v in weights.items()})
    opts = CompareOptions(metrics=metrics, pair_draws=1024)
    worker = Series(base, opts, output, {}, hold_gib=0.1)
    mirror = Series(base, opts, None, {}, hold_gib=0.1)
    return worker, mirror, weights


def _step(worker: Series, mirror: Series, weights: dict, step: int, label: str | None = None) -> int:
    """One step measured by `worker` and adopted by `mirror`; the size of the worker's message."""
    post = live_checkpoint({k: v.clone() for k, v in weights.items()})
    plan = make_plan(worker.base, [post], None, None, False, [label or f"step-{step}"], [True])
    result, update = worker.update(worker.analyse(plan, step, time.time()))
    assert result.summary == {}  # the series' summary stays in the worker
    data, buffers = pack(("done", result, update, time.process_time()))
    mirror.adopt(result, update)
    assert result.summary is mirror.summary
    return data.nbytes + sum(buffer.nbytes for buffer in buffers)


def _same(worker: Series, mirror: Series) -> None:
    pd.testing.assert_frame_equal(mirror.table, worker.table)
    assert mirror.summary == worker.summary and mirror.skipped == worker.skipped
    assert (mirror.notes, mirror.counts, mirror.seconds, mirror.warned) == (worker.notes, worker.counts,
                                                                           worker.seconds, worker.warned)


def test_60_steps_keep_the_message_size_flat_and_the_mirror_equal():
    """A message carrying the series would grow by kilobytes a step (its table, summary and notes); one carrying
    the step's change stays within a few bytes (a label a digit longer)."""
    worker, mirror, weights = _pair({"rel_delta"})
    first = weights[NAMES[0]].double()
    sizes = []
    for step in range(1, 61):
        weights[NAMES[0]] *= 1.001
        sizes.append(_step(worker, mirror, weights, step))
    assert len(worker.table) == 120 and sizes[59] <= sizes[9] + 64, sizes[9::10]
    _same(worker, mirror)
    assert list(mirror.summary["per_layer"]) == [f"step-{step}" for step in range(1, 61)]
    moved = ((weights[NAMES[0]].double() - first).norm() / first.norm()).item()  # ~ 1.001 ** 60 - 1
    last = mirror.table.query(f"post == 'step-60' and name == '{NAMES[0]}'")
    assert last.rel_delta.iloc[0] == pytest.approx(moved, rel=1e-5)


def test_a_skipped_matrix_a_step_measured_again_and_a_failed_step_leave_the_mirror_equal(tmp_path, caplog):
    worker, mirror, weights = _pair(MONITOR_METRICS, tmp_path / "run")
    for step in (1, 2):
        weights[NAMES[1]] += 0.01 * step
        _step(worker, mirror, weights, step)
    held = weights[NAMES[0]].clone()
    weights[NAMES[0]][0, 0] = float("nan")
    _step(worker, mirror, weights, 3)
    assert [s["post"] for s in mirror.skipped] == ["step-3"] and len(mirror.table) == 5
    weights[NAMES[0]] = held * 1.01
    _step(worker, mirror, weights, 3)  # a restarted training measures step 3 again: its rows replace the old
    assert mirror.table.post.tolist() == ["step-1"] * 2 + ["step-2"] * 2 + ["step-3"] * 2 and mirror.skipped == []
    assert list(mirror.summary["posts"]) == list(mirror.summary["verdicts"]["posts"]) == ["step-1", "step-2",
                                                                                          "step-3"]
    assert mirror.table.rel_delta.iloc[-2] == pytest.approx(0.01, rel=1e-4)
    assert "dropped" not in caplog.text  # no later step: nothing dropped
    _same(worker, mirror)
    worker.counts["hits"] += 1  # what a failed step may have changed: its update is the whole series
    result, update = worker.update(None)
    mirror.adopt(result, update)
    assert update.step is None and update.table is not None
    _same(worker, mirror)
    folder = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    pd.testing.assert_frame_equal(folder, mirror.table, check_dtype=False)


def _trajectory(lr: float, steps, nan_at=None) -> dict[int, dict]:
    """The weights of a training at `steps` (base + lr * step * a direction of its own; NaN in one matrix at
    `nan_at`: a skipped row)."""
    torch.manual_seed(0)
    base = {name: torch.randn(12, 8) for name in NAMES}
    direction = torch.Generator().manual_seed(int(lr * 1e6))
    moves = {name: torch.randn(12, 8, generator=direction) for name in NAMES}
    out = {step: {n: base[n] + lr * step * moves[n] for n in NAMES} for step in steps}
    if nan_at is not None:
        out[nan_at][NAMES[0]][0, 0] = float("nan")
    return out


def _run(output, trajectory: dict, background: bool) -> Series:
    """A monitor's series over `trajectory` into `output` (claimed first, as Monitor does): in line, or a
    worker's series made from the recipe of the caller's mirror, each step adopted there (background); the
    caller's series."""
    torch.manual_seed(0)
    base = live_checkpoint({name: torch.randn(12, 8) for name in NAMES})
    opts = CompareOptions(metrics=MONITOR_METRICS, pair_draws=1024)
    caller = Series(base, opts, output, {"run": "test"}, hold_gib=0.1, records=True)
    caller.claim(False)
    worker = Series.from_recipe(caller.recipe()) if background else caller
    for step, weights in trajectory.items():
        post = live_checkpoint({k: v.clone() for k, v in weights.items()})
        plan = make_plan(base, [post], None, None, False, [f"step-{step}"], [True])
        result = worker.analyse(plan, step, time.time())
        if background:
            caller.adopt(*worker.update(result))
    if background:
        _same(worker, caller)
    return caller


@pytest.mark.parametrize("background", [False, True], ids=["in_line", "background"])
def test_a_second_run_into_the_same_folder_drops_the_first_runs_later_steps(tmp_path, caplog, background):
    first = _run(tmp_path / "run", _trajectory(1e-2, (4, 8, 12), nan_at=12), background)
    assert first.table.post.unique().tolist() == ["step-4", "step-8", "step-12"] and len(first.skipped) == 1
    assert (tmp_path / "run" / "parts" / "step-12").is_dir() and "dropped" not in caplog.text
    second = _run(tmp_path / "run", _trajectory(1e-4, (4, 8)), background)
    alone = _run(tmp_path / "alone", _trajectory(1e-4, (4, 8)), background)  # the second run by itself
    pd.testing.assert_frame_equal(second.table, alone.table)
    assert second.skipped == [] and list(second.summary["posts"]) == ["step-4", "step-8"]
    for key in ("per_kind", "per_layer", "unchanged"):
        assert second.summary[key] == alone.summary[key]
    assert second.summary["verdicts"]["posts"] == alone.summary["verdicts"]["posts"]
    assert second.summary["skipped"] == [] and not any(n.startswith("step-12") for n in second.summary["notes"])
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [f"orthoscope: step 4 measured again: steps 8-12 of an earlier run dropped from "
                       f"{tmp_path / 'run'}"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "metrics.parquet"), second.table,
                                  check_dtype=False)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert list(written["posts"]) == list(written["verdicts"]["posts"]) == ["step-4", "step-8"]
    assert written["skipped"] == [] and sorted(p.name for p in (tmp_path / "run" / "parts").iterdir()) == [
        "step-4", "step-8"]


@pytest.mark.parametrize("background", [False, True], ids=["in_line", "background"])
def test_a_resume_from_an_earlier_checkpoint_keeps_the_steps_up_to_it(tmp_path, caplog, background):
    """A training measured at 4, 8, 12 crashes; resumed from its step-8 checkpoint, it measures 8 again (the same
    weights) then goes its own way: 12 of the crashed run is dropped when 8 comes again, 4 and 8 stay."""
    crashed = _trajectory(1e-2, (4, 8, 12))
    first = _run(tmp_path / "run", crashed, background)
    kept = first.table[first.table.post.isin(["step-4", "step-8"])].reset_index(drop=True)
    resumed = _run(tmp_path / "run", {8: crashed[8]}, background)
    pd.testing.assert_frame_equal(resumed.table, kept)  # step 8 again: the same rows, 12 gone
    assert list(resumed.summary["posts"]) == ["step-4", "step-8"]
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        f"orthoscope: step 8 measured again: step 12 of an earlier run dropped from {tmp_path / 'run'}"]
    later = _run(tmp_path / "run", {12: _trajectory(2e-2, (12,))[12]}, background)  # the resumed run's own 12
    assert later.table.post.unique().tolist() == ["step-4", "step-8", "step-12"]
    assert later.table.rel_delta.iloc[-1] > first.table.rel_delta.iloc[-1]  # not the crashed run's 12
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1  # a step after the others drops none


def test_reading_the_table_while_steps_arrive_loses_no_step():
    """A background monitor's receiving thread appends steps while the caller reads `monitor.table`."""
    import sys
    import threading

    series = _pair({"rel_delta"})[1]
    steps, done = 300, threading.Event()

    def read() -> None:
        while not done.is_set():
            series.table  # noqa: B018 - the read that concatenates the frames

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for step in range(steps):
            series._append(f"step-{step}", pd.DataFrame({"post": [f"step-{step}"] * 5, "rel_delta": 0.0}), [])
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(interval)
    assert len(series.table) == 5 * steps and series.table.post.nunique() == steps
