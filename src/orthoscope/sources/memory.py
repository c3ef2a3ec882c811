"""Models already in memory: an `nn.Module` (a Hugging Face model or any module) or a state dict.

A Hugging Face model brings its config (`model.config.to_dict()`); a plain module or a
state dict has none, so its matrices are found by name. Tensors that are one object
under two names (tied embeddings) are kept once, under the first name, as
`save_pretrained` stores them. The fingerprint hashes every tensor's bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch

from orthoscope.errors import SourceError
from orthoscope.sources.store import TensorStore

NAME = "in-memory"
SHARD = Path("in-memory.safetensors")  # the one group shards() reports


def detect(obj: object) -> bool:
    """An `nn.Module` or a mapping (a state dict).

    >>> detect(torch.nn.Linear(2, 3)), detect({"w": torch.ones(1)}), detect("./base")
    (True, True, False)
    """
    return isinstance(obj, (torch.nn.Module, Mapping))


def open(obj: torch.nn.Module | Mapping) -> tuple[MemoryTensors, dict, str]:  # noqa: A001 - the registry's verb
    """The store, the config ({} without one) and a label for a module or a state dict.

    >>> store, config, label = open(torch.nn.Linear(2, 3))
    >>> store.shapes, config, label
    ({'weight': (3, 2), 'bias': (3,)}, {}, '<in-memory Linear>')
    """
    if isinstance(obj, torch.nn.Module):
        config = getattr(obj, "config", None)
        config = config.to_dict() if hasattr(config, "to_dict") else {}
        return MemoryTensors(_unique(obj.state_dict(), "module")), config, f"<in-memory {type(obj).__name__}>"
    return MemoryTensors(_unique(obj, "state dict")), {}, "<in-memory state dict>"


def _unique(state: Mapping, what: str) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple] = set()
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise SourceError(f"the in-memory {what} maps {name!r} to a {type(value).__name__}, not a tensor")
        key = (value.device, value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
        if value.numel() and key in seen:
            continue  # the same tensor under a second name (tied weights)
        seen.add(key)
        tensors[name] = value
    if not tensors:
        raise SourceError(f"the in-memory {what} holds no tensors")
    return tensors


class MemoryTensors(TensorStore):
    """Tensors held by the caller; `read` gives a detached CPU copy, so no caller can change the model."""

    format = NAME

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        self._fingerprint: str | None = None

    def read(self, name: str) -> torch.Tensor:
        return self.tensors[name].detach().to("cpu", copy=True)

    def dtype(self, name: str) -> torch.dtype:
        return self.tensors[name].dtype

    def shards(self) -> dict[Path, list[str]]:
        return {SHARD: list(self.tensors)}

    def fingerprint(self) -> str:
        """blake2b of every tensor's name, dtype, shape and bytes (computed once).

        >>> MemoryTensors({"w": torch.zeros(2)}).fingerprint() == MemoryTensors({"w": torch.zeros(2)}).fingerprint()
        True
        """
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=8)
            for name, tensor in self.tensors.items():
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                flat = tensor.detach().to("cpu").contiguous().reshape(-1)
                digest.update(flat.view(torch.uint8).numpy())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint
