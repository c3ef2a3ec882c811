"""Safetensors checkpoints: one file, a folder of files, or a sharded folder with its index."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from orthoscope.errors import SourceError
from orthoscope.sources.store import SAFETENSORS_DTYPES, TensorFiles, add_tensor, head_bytes, open_indexed, regular_file

NAME = "safetensors"
INDEX = "model.safetensors.index.json"
ADAPTER_FILE = "adapter_model.safetensors"


def detect(target: Path) -> bool:
    """A .safetensors file, or a folder holding an index or .safetensors files (adapters excepted)."""
    if target.suffix == ".safetensors" and not target.is_dir():
        return True
    return target.is_dir() and ((target / INDEX).exists() or any(_files(target)))


def open(target: Path) -> SafetensorsFiles:  # noqa: A001 - the registry's verb
    """Read the headers (names, shapes) of a file or folder; no tensor is loaded."""
    if not target.is_dir():
        return read_files(target.parent, [target])
    index = target / INDEX
    if index.exists() or index.is_symlink():
        return open_indexed(target, index, read_files)
    return read_files(target, list(_files(target)))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.safetensors") if p.name != ADAPTER_FILE)


@dataclass
class SafetensorsFiles(TensorFiles):
    _spans: dict[Path, dict[str, tuple[int, int]]] = field(default_factory=dict, repr=False, compare=False)

    def byte_range(self, name: str) -> tuple[int, int] | None:
        """From the file's header: 8 bytes of length, the JSON header, then each tensor's data_offsets."""
        path = self.location[name]
        if path not in self._spans:
            self._spans[path] = _spans(path)
        return self._spans[path].get(name)

    def read(self, name: str) -> torch.Tensor:
        path = self.location[name]
        try:
            with safe_open(str(regular_file(path)), framework="pt") as handle:
                return handle.get_tensor(name)
        except SafetensorError as err:
            raise SourceError(f"cannot read tensor {name!r} from {path}: {err}") from None

    def dtype(self, name: str) -> torch.dtype:
        path = self.location[name]
        with safe_open(str(regular_file(path)), framework="pt") as handle:
            code = handle.get_slice(name).get_dtype()
        if code not in SAFETENSORS_DTYPES:
            raise SourceError(f"tensor {name!r} in {path} has dtype {code}, which torch cannot hold")
        return SAFETENSORS_DTYPES[code]


def _spans(path: Path) -> dict[str, tuple[int, int]]:
    """{name: (offset, length)} from a safetensors header; {} if it cannot be read (it is only a hint)."""
    try:
        head = head_bytes(path, samples=0)  # the length and the JSON header, as the fingerprint reads them
        size = struct.unpack("<Q", head[:8])[0]
        header = json.loads(head[8:])
        return {name: (8 + size + int(entry["data_offsets"][0]),
                       int(entry["data_offsets"][1]) - int(entry["data_offsets"][0]))
                for name, entry in header.items() if name != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error, AttributeError):
        return {}


def read_files(folder: Path, files: list[Path]) -> SafetensorsFiles:
    """Headers of `files`; a tensor stored in two of them is refused."""
    shapes: dict[str, tuple[int, ...]] = {}
    location: dict[str, Path] = {}
    for path in files:
        regular_file(path)
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    add_tensor(shapes, location, name, tuple(handle.get_slice(name).get_shape()), path)
        except (SafetensorError, OSError) as err:
            raise SourceError(f"corrupt or truncated safetensors file {path}: {err}") from None
    return SafetensorsFiles(folder, shapes, location, NAME)
