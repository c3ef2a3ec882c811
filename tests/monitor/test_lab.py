"""The lab monitors its own post-training: its series folders equal a compare of the checkpoints it saved."""

import numpy as np
import pytest

import orthoscope
from orthoscope.lab.build import MONITORED
from orthoscope.monitor import MONITOR_METRICS, MONITOR_PAIR_DRAWS
from orthoscope.pipeline.runfolder import RunFolder

from .test_monitor import numbers


@pytest.fixture(scope="module")
def lab(micro_lab):
    """The micro lab (tests/conftest.py, shared with the lab's tests): its folder and its log lines."""
    folder, lines = micro_lab
    return folder / "a", lines


def test_the_lab_logs_curves_and_its_series_equal_compare(lab):
    out, lines = lab
    assert any(line.startswith("  cot 2: rel_delta ") and "z_pair" in line for line in lines)
    assert max(map(len, lines)) <= 80, max(lines, key=len)  # a terminal's width (the monitor's mode, each step)
    live = RunFolder(out / MONITORED / "cot").read_table()
    after = orthoscope.compare(out / "base", {"step-2": out / "trajectories" / "cot" / "step-0002",
                                              "step-4": out / "cot"}, metrics=MONITOR_METRICS,
                               pair_draws=MONITOR_PAIR_DRAWS)
    assert sorted(live.post.unique()) == ["step-2", "step-4"] and len(live) == len(after.table)
    np.testing.assert_allclose(numbers(live).to_numpy(), numbers(after.table).to_numpy(), rtol=1e-6, atol=1e-6,
                               equal_nan=True)
    summary = RunFolder(out / MONITORED / "cot").read_summary()
    assert set(summary["verdicts"]["posts"]) == {"step-2", "step-4"}
