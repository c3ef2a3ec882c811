"""Two real ranks (torchrun, gloo, CPU): FSDP2-sharded parameters are gathered in the same order on every rank, in
line and in the background, and rank 0's numbers are those of the unsharded model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_fsdp2_ranks_measure_what_the_unsharded_model_measures(base_folder, tmp_path):
    out = tmp_path / "differences.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("fsdp2_ranks.py")), str(base_folder), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    differences = json.loads(out.read_text())
    assert differences["matrices"] == 14
    assert differences["in line"] == 0.0 and differences["background"] == 0.0, differences


@pytest.mark.slow
def test_fsdp1_ranks_measure_what_the_unsharded_model_measures(base_folder, tmp_path):
    """Flat parameters, use_orig_params and SHARDED_STATE_DICT (fsdp1_ranks.py), each in line and in background."""
    out = tmp_path / "differences.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("fsdp1_ranks.py")), str(base_folder), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(out.read_text())
    assert measured["matrices"] == 14 and len(measured["differences"]) == 8
    assert all(gap == 0.0 for gap in measured["differences"].values()), measured
