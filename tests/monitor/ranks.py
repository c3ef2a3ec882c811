"""One rank of test_distributed.py's two (gloo, CPU; RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set by the test):
the FSDP2 cases (fsdp2_ranks.py), then the FSDP v1 ones (fsdp1_ranks.py), in one process group. Rank 0 writes
what both found as JSON to argv[2]."""

import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parents[2]))  # the repository: `tests` as the suite imports it
from tests.monitor.fsdp1_ranks import fsdp1_differences  # noqa: E402
from tests.monitor.fsdp2_ranks import fsdp2_differences  # noqa: E402


def main(base: str, out: str) -> None:
    dist.init_process_group("gloo")
    found = {"fsdp2": fsdp2_differences(base), "fsdp1": fsdp1_differences(base)}
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(found))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
