"""Two real ranks (gloo, CPU): sharded parameters (FSDP2 DTensors; FSDP v1 flat parameters, use_orig_params and
SHARDED_STATE_DICT) are gathered in the same order on every rank, in line and in the background, and rank 0's
numbers are those of the unsharded model (ranks.py runs the cases; the fsdp*_ranks.py files say what each does)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_sharded_ranks_measure_what_the_unsharded_model_measures(base_folder, tmp_path):
    out = tmp_path / "differences.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2"}
    script = str(Path(__file__).with_name("ranks.py"))
    ranks = [subprocess.Popen([sys.executable, script, str(base_folder), str(out)], env={**env, "RANK": str(rank),
                              "LOCAL_RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], "\n".join(output[-3000:] for output in outputs)
    found = json.loads(out.read_text())
    fsdp2, fsdp1 = found["fsdp2"], found["fsdp1"]
    assert fsdp2["matrices"] == 14 and fsdp2["in line"] == 0.0 and fsdp2["background"] == 0.0, fsdp2
    assert fsdp1["matrices"] == 14 and len(fsdp1["differences"]) == 8
    assert all(gap == 0.0 for gap in fsdp1["differences"].values()), fsdp1
