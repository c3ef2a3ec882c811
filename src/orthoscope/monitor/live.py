"""A model being trained, read one matrix at a time: plain modules, PEFT LoRA, sharded parameters.

`live_checkpoint(model)` gives a `Checkpoint` over the model's current weights without
copying them: each `read` copies one tensor to the CPU (a module on CUDA stays there), a
LoRA-wrapped projection reads as its merged weight `W_b + s * B @ A` (the formula of
`sources/adapter.py`, so a saved adapter gives the same numbers), a DTensor (FSDP2's
`fully_shard`) is gathered by `full_tensor()` and a DeepSpeed ZeRO-3 parameter by
`deepspeed.zero.GatheredParameters`, one tensor at a time, and an FSDP (v1) model one FSDP unit at
a time (`summon_full_params(unit, recurse=False)`; flat parameters or not, whatever state-dict type
is set; the unit's full parameters are copied to the CPU of every rank until the next unit's
turn). Those gathers are collective:
every rank must read the same tensors in the same order (`Monitor.measure` does).

>>> ckpt = live_checkpoint(torch.nn.Linear(3, 2, bias=False))
>>> ckpt.names(), ckpt.shape("weight"), ckpt.describe()["format"]
(['weight'], (2, 3), 'live')
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from orthoscope.architectures import read_matrix
from orthoscope.errors import OrthoscopeError
from orthoscope.sources import Checkpoint
from orthoscope.sources.store import TensorStore

FORMAT = "live"
SHARD = Path("live-model.safetensors")
WRAPPERS = ("module", "_orig_mod")  # DistributedDataParallel / DataParallel, torch.compile


class MonitorError(OrthoscopeError):
    """The monitored model cannot be read as the base's matrices (names, shapes, dtype, device, sharding)."""


class LiveTensors(TensorStore):
    """Tensors of a live model: names, shapes and dtypes known up front, each read when asked for."""

    format = FORMAT

    def __init__(self, readers: dict[str, Callable[[], torch.Tensor]], shapes: dict[str, tuple[int, ...]],
                 dtypes: dict[str, torch.dtype]):
        self.readers, self.shapes, self.dtypes = readers, shapes, dtypes
        self.digest: str | None = None  # set by the monitor from the per-matrix hashes it computed

    def read(self, name: str) -> torch.Tensor:
        return self.readers[name]()

    def dtype(self, name: str) -> torch.dtype:
        return self.dtypes[name]

    def shards(self) -> dict[Path, list[str]]:
        return {SHARD: list(self.shapes)}

    def fingerprint(self) -> str:
        """The hash of the analysed matrices' hashes (set after measuring; hashing the whole model again
        would double the cost of a step)."""
        return self.digest or "not measured"


class HeldTensors(LiveTensors):
    """The tensors one measure read from a live model, copied (a snapshot): plain values, so it can be pickled
    and sent to the monitor's worker process; other names keep their shapes and dtypes but cannot be read."""

    def __init__(self, held: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]],
                 dtypes: dict[str, torch.dtype]):
        super().__init__({}, shapes, dtypes)
        self.held = held

    def read(self, name: str) -> torch.Tensor:
        if name not in self.held:
            raise MonitorError(f"{name} is not in the step's snapshot (only the measured matrices are copied)")
        return self.held[name]


def snapshot(post: Checkpoint, refs, keep: bool = True) -> Checkpoint | None:
    """The tensors `refs` read from `post`, copied now (one at a time, in the order of `refs`), as a Checkpoint
    that later changes of the model cannot reach; None with `keep=False` (a rank other than 0: the collective
    gathers are made, in rank 0's order, and dropped).

    >>> weights = {"model.layers.0.mlp.up_proj.weight": torch.ones(2, 2)}
    >>> from orthoscope.pipeline.pairing import make_plan
    >>> post = live_checkpoint(weights)
    >>> frozen = snapshot(post, make_plan(post, [post], None, None, False, ["p"], [True]).refs)
    >>> weights["model.layers.0.mlp.up_proj.weight"] += 1
    >>> frozen.read("model.layers.0.mlp.up_proj.weight").tolist(), frozen.describe()["format"]
    ([[1.0, 1.0], [1.0, 1.0]], 'live')
    """
    store = post.files
    held: dict[str, torch.Tensor] = {}

    class Recording(LiveTensors):  # every read of read_matrix goes to the model, as a measure would make it
        def read(self, name: str) -> torch.Tensor:
            tensor = store.read(name)
            if keep:
                held[name] = tensor
            return tensor

    recording = Checkpoint(post.spec, None, post.config, Recording(store.readers, store.shapes, store.dtypes))
    for ref in refs:
        read_matrix(recording, ref)
    if not keep:
        return None
    return Checkpoint(post.spec, None, post.config, HeldTensors(held, store.shapes, store.dtypes))


def unwrap(model):
    """The model inside DistributedDataParallel / DataParallel and torch.compile wrappers.

    >>> inner = torch.nn.Linear(2, 2)
    >>> unwrap(torch.nn.DataParallel(inner)) is inner
    True
    """
    while isinstance(model, torch.nn.Module) and not _is_peft(model):
        inner = next((getattr(model, attr) for attr in WRAPPERS if isinstance(getattr(model, attr, None),
                                                                                 torch.nn.Module)), None)
        if inner is None or not _is_wrapper(model):
            return model
        model = inner
    return model


def _is_wrapper(model) -> bool:
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return isinstance(model, wrappers) or type(model).__name__ == "OptimizedModule"


def _is_peft(model) -> bool:
    return callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config")


def live_checkpoint(model, config: dict | None = None, label: str | None = None) -> Checkpoint:
    """A Checkpoint reading `model`'s current weights (an nn.Module, a PEFT model or a state dict).

    `config` is the base's config when the model brings none (a state dict), so the same
    architecture map applies to both.
    """
    model = unwrap(model)
    if isinstance(model, torch.nn.Module):
        own = getattr(model, "config", None)
        own = own.to_dict() if hasattr(own, "to_dict") else {}
        entries = _fsdp1_entries(model)
        if entries is None:
            entries = _peft_entries(model) if _is_peft(model) else _entries(model.state_dict())
        readers, shapes, dtypes = entries
        config = own or config or {}
        label = label or f"<live {type(model).__name__}>"
    elif isinstance(model, Mapping):
        readers, shapes, dtypes = _entries(model)
        label = label or "<live state dict>"
    else:
        raise MonitorError(f"cannot monitor a {type(model).__name__}: pass an nn.Module, a PEFT model or a state dict")
    if not readers:
        raise MonitorError(f"{label} holds no tensors to measure")
    return Checkpoint(label, None, dict(config or {}), LiveTensors(readers, shapes, dtypes))


def _entries(state: Mapping) -> tuple[dict, dict, dict]:
    """Readers, shapes and dtypes of a state dict; tied tensors (one object, two names) kept once."""
    readers, shapes, dtypes = {}, {}, {}
    seen: set[tuple] = set()
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise MonitorError(f"the monitored state dict maps {name!r} to a {type(value).__name__}, not a tensor")
        key = _identity(value)
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        readers[name], shapes[name], dtypes[name] = _reader(name, value), _shape(value), value.dtype
    return readers, shapes, dtypes


def _identity(value: torch.Tensor) -> tuple | None:
    """What makes two names one tensor (None where it cannot be told: meta, sharded, empty)."""
    local = value.to_local() if _is_dtensor(value) else value
    if local.device.type == "meta" or not local.numel() or hasattr(value, "ds_id"):
        return None
    return (local.device, local.data_ptr(), local.dtype, tuple(local.shape), local.stride())


def _shape(value: torch.Tensor) -> tuple[int, ...]:
    return tuple(value.ds_shape) if hasattr(value, "ds_shape") else tuple(value.shape)


def _is_dtensor(value) -> bool:
    return type(value).__name__ == "DTensor" and callable(getattr(value, "full_tensor", None))


def _reader(name: str, value: torch.Tensor) -> Callable[[], torch.Tensor]:
    """How to get `value` whole on the CPU: a copy, a DTensor gather, a ZeRO-3 gather, or a clear refusal."""
    if hasattr(value, "ds_id"):
        return lambda: _zero3_gather(name, value)
    if _is_dtensor(value):
        return lambda: value.full_tensor().detach().to("cpu", copy=True)

    def read() -> torch.Tensor:
        if value.device.type == "meta":
            raise MonitorError(f"{name} is on the meta device (offloaded or not materialised): the monitor "
                               f"needs the parameter's values; measure after loading the weights")
        return value.detach().to("cpu", copy=True)

    return read


def _zero3_gather(name: str, param: torch.Tensor) -> torch.Tensor:
    try:
        import deepspeed
    except ImportError:
        raise MonitorError(f"{name} is a DeepSpeed ZeRO-3 partitioned parameter but deepspeed cannot be imported: "
                           f"the monitor needs full parameters on rank 0") from None
    with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
        return param.data.detach().to("cpu", copy=True)


def _fsdp1_entries(model: torch.nn.Module) -> tuple[dict, dict, dict] | None:
    """An FSDP (v1) model's original parameters, read one FSDP unit at a time; None for a model without FSDP (v1).

    Names and shapes come from each unit's flat parameter (no gather); the first read of a matrix of a unit
    gathers that unit alone (`summon_full_params(unit, recurse=False, writeback=False)`, collective) and copies
    its parameters to the CPU, kept until a matrix of another unit is read. Flat parameters and
    `use_orig_params=True` read alike, whatever state-dict type is set (the state dict is not used). Memory: one
    unit's full parameters on the device while gathered and on the CPU of every rank (lanes reading matrices of
    two units side by side, on one rank, gather a unit again: no collective there); inside the user's own
    `summon_full_params(model)` the parameters are read as they are.
    """
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp._common_utils import TrainingState, clean_tensor_name
        from torch.distributed.fsdp._runtime_utils import _lazy_init
    except ImportError:  # torch without distributed
        return None
    units = [(name, unit) for name, unit in model.named_modules() if isinstance(unit, FSDP)]
    if not units:
        return None
    readers, shapes, dtypes = {}, {}, {}
    held: dict = {"unit": None, "tensors": {}}

    def gather(unit) -> dict[str, torch.Tensor]:
        flat = unit._handle.flat_param
        if unit.training_state == TrainingState.SUMMON_FULL_PARAMS:  # the user's summon_full_params: already full
            return {fqn: _summoned(getattr(info.module, info.param_name, None), shape, flat.dtype)
                    for fqn, info, shape in zip(flat._fqns, flat._param_infos, flat._shapes)}
        with FSDP.summon_full_params(unit, recurse=False, writeback=False):
            return {fqn: getattr(info.module, info.param_name).detach().to("cpu", copy=True)
                    for fqn, info in zip(flat._fqns, flat._param_infos)}

    lock = threading.Lock()  # in line on one rank, the lanes' threads read side by side: one gather at a time

    def reader(unit, fqn: str) -> Callable[[], torch.Tensor]:
        def read() -> torch.Tensor:
            with lock:
                if held["unit"] is not unit:
                    held["unit"], held["tensors"] = None, {}  # the previous unit's copy goes first
                    held["tensors"], held["unit"] = gather(unit), unit
                return held["tensors"][fqn].detach().to("cpu", copy=True)

        return read

    for unit_name, unit in units:
        _lazy_init(unit, unit)  # what a first forward does (no-op after one): a unit gathered alone stays non-root
        flat = getattr(getattr(unit, "_handle", None), "flat_param", None)
        if flat is None:  # a unit without parameters of its own
            continue
        for fqn, shape in zip(flat._fqns, flat._shapes):
            name = clean_tensor_name(f"{unit_name}.{fqn}" if unit_name else fqn)
            readers[name], shapes[name], dtypes[name] = reader(unit, fqn), tuple(shape), flat.dtype
    return readers, shapes, dtypes


def _summoned(value, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """A parameter inside the user's `summon_full_params`; with `rank0_only=True` a rank other than 0 keeps its
    shard, and reads zeros in its place (there is no collective to make, and such a rank drops what it reads)."""
    if isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(shape) and _backed(value):
        return value
    if torch.distributed.get_rank() == 0:
        raise MonitorError("inside summon_full_params an FSDP parameter is not whole on rank 0: measure outside it "
                           "(the monitor gathers one FSDP unit at a time)")
    return torch.zeros(shape, dtype=dtype)


def _backed(value: torch.Tensor) -> bool:
    """Whether the tensor's storage holds its elements (a view of a freed FSDP flat parameter does not)."""
    needed = (value.storage_offset() + value.numel()) * value.element_size()
    return value.untyped_storage().nbytes() >= needed


# ---------------------------------------------------------------------------------------------- PEFT
LORA_PARTS = (".lora_", ".original_module.", "lora_magnitude_vector")


def _peft_entries(model) -> tuple[dict, dict, dict]:
    """The base model's names (PEFT's prefixes and `base_layer` removed); adapted weights read merged."""
    inner = model.get_base_model()
    state = {}
    for name, value in inner.state_dict().items():
        if any(part in name for part in LORA_PARTS):
            continue
        state[name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")] = value
    readers, shapes, dtypes = _entries(state)
    for module_name, module in inner.named_modules():
        if not (hasattr(module, "base_layer") and hasattr(module, "lora_A") and hasattr(module, "scaling")):
            continue
        if any(getattr(module, "use_dora", {}).get(a) for a in _active(module)):
            raise MonitorError(f"{module_name} is a DoRA adapter (use_dora): not an additive low-rank update, "
                               f"cannot be measured as W_b + s B A")
        name = f"{module_name}.weight"
        if name in readers:
            readers[name] = _merged_reader(module)
    return readers, shapes, dtypes


def _active(module) -> list[str]:
    active = getattr(module, "active_adapters", None) or []
    return [a for a in ([active] if isinstance(active, str) else active) if a in module.lora_A]


def _merged_reader(module) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        weight = module.base_layer.weight.detach()
        merged = weight.float()
        for adapter in _active(module):
            delta = module.lora_B[adapter].weight.detach().float() @ module.lora_A[adapter].weight.detach().float()
            if getattr(module, "fan_in_fan_out", False):
                delta = delta.T
            merged = merged + delta * float(module.scaling[adapter])
        return merged.to(weight.dtype).to("cpu", copy=True)

    return read
