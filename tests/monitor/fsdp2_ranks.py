"""Run on two CPU ranks (gloo) by ranks.py: a tiny Llama sharded with FSDP2, measured in line and in the background on
every rank, against the same model measured unsharded on rank 0 (the update, the measure and the difference are
fsdp1_ranks.py's)."""

import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from orthoscope import Monitor
from tests.monitor.fsdp1_ranks import gap, measure, updated


def fsdp2_differences(base: str) -> dict | None:
    """Rank 0's largest difference from the unsharded model, in line and in background (None on the other ranks)."""
    rank = dist.get_rank()
    model = updated(base)
    reference = Monitor(base, None).measure(model, 1).table if rank == 0 else None
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    differences = {}
    for background in (False, True):
        table = measure(base, model, background)
        if rank == 0:
            differences["background" if background else "in line"] = gap(table, reference)
    return {**differences, "matrices": len(reference)} if rank == 0 else None
