"""A worker's series and its mirror: after every step the worker sends the step's rows and own summary
(`Series.update`), a message whose size does not grow with the series, and the mirror (`adopt`) becomes
the worker's series: the same table, summary, skips, notes and counts."""

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


def test_200_steps_keep_the_message_size_flat_and_the_mirror_equal():
    worker, mirror, weights = _pair({"rel_delta"})
    first = weights[NAMES[0]].double()
    sizes = []
    for step in range(1, 201):
        weights[NAMES[0]] *= 1.001
        sizes.append(_step(worker, mirror, weights, step))
    assert len(worker.table) == 400 and sizes[199] <= sizes[19] + 64, sizes[19::60]  # labels a digit longer
    _same(worker, mirror)
    assert list(mirror.summary["per_layer"]) == [f"step-{step}" for step in range(1, 201)]
    moved = ((weights[NAMES[0]].double() - first).norm() / first.norm()).item()  # ~ 1.001 ** 200 - 1
    last = mirror.table.query(f"post == 'step-200' and name == '{NAMES[0]}'")
    assert last.rel_delta.iloc[0] == pytest.approx(moved, rel=1e-5)


def test_a_skipped_matrix_a_step_measured_again_and_a_failed_step_leave_the_mirror_equal(tmp_path):
    worker, mirror, weights = _pair(MONITOR_METRICS, tmp_path / "run")
    for step in (1, 2):
        weights[NAMES[1]] += 0.01 * step
        _step(worker, mirror, weights, step)
    held = weights[NAMES[0]].clone()
    weights[NAMES[0]][0, 0] = float("nan")
    _step(worker, mirror, weights, 3)
    assert [s["post"] for s in mirror.skipped] == ["step-3"] and len(mirror.table) == 5
    weights[NAMES[0]] = held * 1.01
    _step(worker, mirror, weights, 2)  # a restarted training measures step 2 again: its rows replace the old
    assert mirror.table.post.tolist() == ["step-1"] * 2 + ["step-3"] + ["step-2"] * 2
    assert list(mirror.summary["posts"]) == list(mirror.summary["verdicts"]["posts"]) == ["step-1", "step-2",
                                                                                          "step-3"]
    assert mirror.table.rel_delta.iloc[-2] == pytest.approx(0.01, rel=1e-4)
    _same(worker, mirror)
    worker.counts["hits"] += 1  # what a failed step may have changed: its update is the whole series
    result, update = worker.update(None)
    mirror.adopt(result, update)
    assert update.step is None and update.table is not None
    _same(worker, mirror)
    folder = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    pd.testing.assert_frame_equal(folder, mirror.table, check_dtype=False)
