"""The worker process starts at idle priority: SCHED_IDLE is set before the package (torch) is imported,
unless ORTHOSCOPE_MONITOR_IDLE=0; a spare taken by the next monitor keeps it."""

import os
import subprocess
import time

import pytest
import torch

from orthoscope.monitor import Monitor
from orthoscope.monitor import worker as worker_module

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")

PROBE = """import os, sys
print(os.sched_getscheduler(0), "orthoscope" in sys.modules, "torch" in sys.modules, sys.argv[1:])
"""


@pytest.mark.parametrize("idle", [None, "0"])
def test_the_priority_is_set_before_any_import_of_the_package(tmp_path, monkeypatch, idle):
    """The worker's command run on a probe module in place of the child: the probe, the first code after the
    prelude, sees SCHED_IDLE (or normal priority with ORTHOSCOPE_MONITOR_IDLE=0), and neither orthoscope nor
    torch imported yet (a `-m orthoscope...` start imports the package, torch included, at normal priority)."""
    (tmp_path / "probe_child.py").write_text(PROBE)
    if idle is None:
        monkeypatch.delenv(worker_module.IDLE_ENV, raising=False)
    else:
        monkeypatch.setenv(worker_module.IDLE_ENV, idle)
    env = {**worker_module._child_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(worker_module.child_command("probe_child"), env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip().split(maxsplit=3)
    policy = os.SCHED_OTHER if idle == "0" else os.SCHED_IDLE
    assert out == [str(policy), "False", "False", f"['{worker_module.IDLE_SECONDS}']"]


def test_the_worker_and_the_spare_the_next_monitor_takes_run_at_idle_priority():
    weights = {"model.layers.0.mlp.up_proj.weight": torch.eye(4)}
    first = Monitor(weights, background=True, metrics={"rel_delta"})
    process = first.worker.process
    deadline = time.monotonic() + 30
    while os.sched_getscheduler(process.pid) != os.SCHED_IDLE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE
    first.measure(weights, 1).result()
    first.close()
    with Monitor(weights, background=True, metrics={"rel_delta"}) as second:
        assert second.worker.process is process and os.sched_getscheduler(process.pid) == os.SCHED_IDLE
        assert second.measure(weights, 2).result().table.rel_delta.tolist() == [0.0]
    worker_module.end_spares()
