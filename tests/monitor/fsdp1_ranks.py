"""Run on two CPU ranks (gloo) by ranks.py: a tiny Llama wrapped in FSDP (v1), one unit per
decoder layer, as flat parameters, with `use_orig_params=True`, and with SHARDED_STATE_DICT set (as accelerate sets
it), measured in line and in the background on every rank against the same model measured unsharded on rank 0;
then (flat) inside `summon_full_params(rank0_only=True)`, and after one training step against the full state dict
the step left."""

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullStateDictConfig, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from orthoscope import Monitor

COLUMNS = ["rel_delta", "a_geo", "z_pair", "p_pair", "intruders"]
CASES = {"flat": (False, None), "orig params": (True, None),  # (use_orig_params, the state-dict type set)
         "sharded state dict": (True, StateDictType.SHARDED_STATE_DICT)}


def updated(base: str) -> LlamaForCausalLM:
    """The base with the same update on every rank: a different scale and noise per matrix."""
    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            for weight in (layer.self_attn.q_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight):
                weight.mul_(1.0 + 0.02 * (index + 1)).add_(0.01 * torch.randn(weight.shape, generator=generator))
    return model


def gap(table, reference) -> float:
    return float((table.set_index("name")[COLUMNS] - reference.set_index("name")[COLUMNS]).abs().max().max())


def measure(base: str, model, background: bool):
    with Monitor(base, None, background=background) as monitor:
        result = monitor.measure(model, 1)
    if dist.get_rank() != 0:
        assert result is None
        return None
    return (result.result() if background else result).table


def train_step(model) -> None:
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))
    model(input_ids=ids, labels=ids).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()


def after_a_step(base: str, wrapped) -> float | None:
    """One step of training, then the monitor's numbers against those of the full state dict FSDP gathers."""
    train_step(wrapped)
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig()):  # offload: CPU breaks
        state = wrapped.state_dict()
    table = measure(base, wrapped, False)
    if dist.get_rank() != 0:
        return None
    plain = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    plain.load_state_dict(state)
    return gap(table, Monitor(base, None).measure(plain, 1).table)


def fsdp1_differences(base: str) -> dict:
    """Rank 0's largest difference from the unsharded model in each case (None on the other ranks)."""
    rank = dist.get_rank()
    reference = Monitor(base, None).measure(updated(base), 1).table if rank == 0 else None
    differences = {}
    for case, (orig_params, state_dict_type) in CASES.items():
        wrapped = FSDP(updated(base), device_id=torch.device("cpu"), use_orig_params=orig_params,
                       auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}))
        if state_dict_type is not None:
            FSDP.set_state_dict_type(wrapped, state_dict_type)
        for background in (False, True):
            table = measure(base, wrapped, background)
            if rank == 0:
                differences[f"{case}, {'background' if background else 'in line'}"] = gap(table, reference)
        assert FSDP.get_state_dict_type(wrapped).state_dict_type == (state_dict_type or StateDictType.FULL_STATE_DICT)
        if case == "flat":  # inside the user's summon_full_params (rank 1 holds shards, reads no collective)
            with FSDP.summon_full_params(wrapped, writeback=False, rank0_only=True):  # offload_to_cpu: CPU breaks
                table = measure(base, wrapped, False)
            differences[f"{case}, summoned on rank 0"] = gap(table, reference) if rank == 0 else None
        if case == "flat":  # measured before any forward (FSDP's lazy init done by the monitor), then trained
            differences[f"{case}, after a step"] = after_a_step(base, wrapped)
    return {"differences": differences, "matrices": len(reference)} if rank == 0 else None
