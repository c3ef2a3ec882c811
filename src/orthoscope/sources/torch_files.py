"""PyTorch `.bin` checkpoints, read with `weights_only=True`: pickled code is refused, never run.

Zip files (torch >= 1.6) are memory-mapped; legacy non-zip files are read whole, one shard at a time.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from orthoscope.errors import SourceError, reason
from orthoscope.sources.store import TensorFiles, add_tensor, open_indexed, regular_file

NAME = "torch-bin"
INDEX = "pytorch_model.bin.index.json"
SUFFIXES = (".bin", ".pt", ".pth")
ADAPTER_FILE = "adapter_model.bin"


def detect(target: Path) -> bool:
    """A .bin/.pt/.pth file, or a folder with `pytorch_model*.bin` or their index."""
    if target.suffix in SUFFIXES and not target.is_dir():
        return True
    return target.is_dir() and ((target / INDEX).exists() or any(target.glob("pytorch_model*.bin")))


def open(target: Path) -> TorchFiles:  # noqa: A001 - the registry's verb
    """Load each shard once to learn names and shapes (memory-mapped where the file allows)."""
    if not target.is_dir():
        return read_files(target.parent, [target])
    index = target / INDEX
    if index.exists() or index.is_symlink():
        return open_indexed(target, index, read_files)
    return read_files(target, sorted(target.glob("pytorch_model*.bin")))


@dataclass
class TorchFiles(TensorFiles):
    dtypes: dict[str, torch.dtype] = field(default_factory=dict)
    _loaded: dict[Path, dict] = field(default_factory=dict, repr=False)

    def read(self, name: str) -> torch.Tensor:
        return load(self.location[name], self._loaded)[name]

    def dtype(self, name: str) -> torch.dtype:
        return self.dtypes[name]


def load(path: Path, cache: dict[Path, dict]) -> dict:
    """The dict of tensors in one .bin file; one file kept loaded at a time (memory stays bounded)."""
    loaded = cache.get(path)
    if loaded is None:  # one lookup: jobs on other threads (the local executor's lanes) may swap the file meanwhile
        loaded = _load(path)
        cache.clear()
        cache[path] = loaded
    return loaded


def _load(path: Path) -> dict:
    regular_file(path)
    try:
        value = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as err:  # torch raises many types for a bad or unsafe pickle
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise SourceError(f"{path} holds pickled code ({found.group(1)}) besides tensors and was refused: "
                              "orthoscope never runs code from a checkpoint") from None
        detail = reason(err)
        if "weights_only" in text.lower():
            detail = "unsupported pickle data"
        raise SourceError(f"cannot load {path}: not a readable PyTorch file ({detail})") from None
    if not isinstance(value, dict):
        raise SourceError(f"{path} holds a {type(value).__name__}, not a dict of tensors")
    return {key: _plain(path, key, item) if isinstance(item, torch.Tensor) else item for key, item in value.items()
            if _named(path, key, item)}


def _named(path: Path, key: object, item: object) -> bool:
    """True for a tensor under a text name; a tensor under another key (an int) is refused: no name to read it by."""
    if isinstance(item, torch.Tensor) and not isinstance(key, str):
        raise SourceError(f"{path} holds a tensor under the key {key!r} ({type(key).__name__}), not a tensor name")
    return True


def _plain(path: Path, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A dense tensor without autograd (an nn.Parameter is read as its data); sparse, quantized or meta
    tensors are refused: they are not weights that can be read as they are stored."""
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
        kind = "a meta" if tensor.is_meta else "a quantized" if tensor.is_quantized else f"a {tensor.layout}"
        raise SourceError(f"{path}: tensor {name!r} is {kind} tensor; only dense tensors can be read "
                          "(save the state dict with dense tensors)")
    return tensor.detach() if tensor.requires_grad or isinstance(tensor, torch.nn.Parameter) else tensor


def read_files(folder: Path, files: list[Path]) -> TorchFiles:
    shapes: dict[str, tuple[int, ...]] = {}
    location: dict[str, Path] = {}
    dtypes: dict[str, torch.dtype] = {}
    cache: dict[Path, dict] = {}
    for path in files:
        tensors = {k: v for k, v in load(path, cache).items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise SourceError(f"{path} holds no tensors at its top level (a training state, not weights?)")
        for name, tensor in tensors.items():
            add_tensor(shapes, location, str(name), tuple(tensor.shape), path)
            dtypes[str(name)] = tensor.dtype
    return TorchFiles(folder, shapes, location, NAME, dtypes)
