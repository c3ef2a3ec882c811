"""Run on two CPU ranks (gloo) by ranks.py: a tiny Llama sharded with FSDP2, measured in line and in the background on
every rank, against the same model measured unsharded on rank 0."""

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from transformers import LlamaForCausalLM

from orthoscope import Monitor

COLUMNS = ["rel_delta", "a_geo", "z_pair", "p_pair", "intruders"]


def fsdp2_differences(base: str) -> dict | None:
    """Rank 0's largest difference from the unsharded model, in line and in background (None on the other ranks)."""
    rank = dist.get_rank()
    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the same update on every rank: a different scale and noise per matrix
        for index, layer in enumerate(model.model.layers):
            for weight in (layer.self_attn.q_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight):
                weight.mul_(1.0 + 0.02 * (index + 1)).add_(0.01 * torch.randn(weight.shape, generator=generator))
    reference = Monitor(base, None).measure(model, 1).table if rank == 0 else None
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    differences = {}
    for background in (False, True):
        with Monitor(base, None, background=background) as monitor:
            result = monitor.measure(model, 1)
        if rank == 0:
            table = (result.result() if background else result).table
            gap = (table.set_index("name")[COLUMNS] - reference.set_index("name")[COLUMNS]).abs()
            differences["background" if background else "in line"] = float(gap.max().max())
        else:
            assert result is None
    return {**differences, "matrices": len(reference)} if rank == 0 else None
