"""Tensor files on disk: the safetensors and torch-zip readers behind a checkpoint.

Each reader knows, for every tensor, its shape and the file that holds it, and reads
one tensor at a time; nothing else stays in memory.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from orthoscope.errors import SourceError, reason

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


@dataclass
class TensorFiles:
    """Where each tensor lives and what shape it has, for one format."""

    folder: Path
    shapes: dict[str, tuple[int, ...]]
    location: dict[str, Path]
    format: str

    def read(self, name: str) -> torch.Tensor:
        raise NotImplementedError

    def metadata_config(self) -> dict:
        """A config read from the weights themselves (GGUF metadata); {} for other formats."""
        return {}

    def fingerprint(self) -> str:
        """A hash of the files' sizes and headers: changes whenever the weights do."""
        digest = hashlib.sha256()
        for path in sorted(set(self.location.values())):
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            digest.update(_head_bytes(path))
        return digest.hexdigest()[:16]


def _head_bytes(path: Path, samples: int = 8, sample_size: int = 1 << 16) -> bytes:
    """The header plus `samples` slices spread over the file.

    Headers alone hold names and shapes, identical for every fine-tune of one
    architecture; the slices tell apart weights of the same shapes without reading
    a large file whole.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw = handle.read(8)
        head = raw + handle.read(min(struct.unpack("<Q", raw)[0], 100_000_000)) \
            if path.suffix == ".safetensors" and len(raw) == 8 else raw + handle.read(1 << 20)
        parts = [head]
        for i in range(samples):
            handle.seek(len(head) + (size - len(head)) * i // samples)
            parts.append(handle.read(sample_size))
    return b"".join(parts)


class SafetensorsFiles(TensorFiles):
    def read(self, name: str) -> torch.Tensor:
        path = self.location[name]
        try:
            with safe_open(str(path), framework="pt") as handle:
                return handle.get_tensor(name)
        except SafetensorError as err:
            raise SourceError(f"cannot read tensor {name!r} from {path}: {err}") from None


@dataclass
class TorchZipFiles(TensorFiles):
    _loaded: dict[Path, dict] = field(default_factory=dict)

    def read(self, name: str) -> torch.Tensor:
        path = self.location[name]
        return _load_bin(path, self._loaded)[name]


def _load_bin(path: Path, cache: dict[Path, dict]) -> dict:
    """Memory-map one .bin shard; never unpickles code (weights_only)."""
    if path not in cache:
        try:
            cache.clear()  # one shard mapped at a time keeps memory bounded
            cache[path] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # torch raises many types for a bad or unsafe pickle
            raise SourceError(f"cannot load {path} with weights_only=True: {reason(err)}") from None
    return cache[path]


def find_tensor_files(folder: Path) -> TensorFiles:
    """Pick the weights of a checkpoint folder: safetensors first, then .bin, then .gguf."""
    if (folder / SAFETENSORS_INDEX).is_file():
        return _safetensors_from_index(folder, folder / SAFETENSORS_INDEX)
    singles = sorted(folder.glob("*.safetensors"))
    if singles:
        return _safetensors_from_files(folder, singles)
    if (folder / BIN_INDEX).is_file():
        mapping = _read_index(folder / BIN_INDEX)
        return _bin_files(folder, sorted({folder / f for f in mapping.values()}), folder / BIN_INDEX)
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return _bin_files(folder, bins, None)
    from orthoscope.sources.gguf import gguf_files_in, open_gguf

    ggufs = gguf_files_in(folder)
    if ggufs:
        return open_gguf(folder, ggufs)
    raise SourceError(
        f"no weights found in {folder} "
        f"(expected {SAFETENSORS_INDEX}, *.safetensors, pytorch_model*.bin or *.gguf)"
    )


def _read_index(index: Path) -> dict[str, str]:
    try:
        return json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as err:
        raise SourceError(f"invalid index file {index}: {err}") from None


def _safetensors_from_index(folder: Path, index: Path) -> SafetensorsFiles:
    mapping = _read_index(index)
    missing = sorted({f for f in mapping.values() if not (folder / f).is_file()})
    if missing:
        raise SourceError(f"index {index} names missing shard {missing[0]}" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return _safetensors_from_files(folder, sorted({folder / f for f in mapping.values()}))


def _safetensors_from_files(folder: Path, files: list[Path]) -> SafetensorsFiles:
    shapes: dict[str, tuple[int, ...]] = {}
    location: dict[str, Path] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
                    location[name] = path
        except (SafetensorError, OSError) as err:
            raise SourceError(f"corrupt or truncated safetensors file {path}: {err}") from None
    return SafetensorsFiles(folder, shapes, location, "safetensors")


def _bin_files(folder: Path, files: list[Path], index: Path | None) -> TorchZipFiles:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SourceError(f"index {index} names missing shard {missing[0].name}")
    shapes: dict[str, tuple[int, ...]] = {}
    location: dict[str, Path] = {}
    cache: dict[Path, dict] = {}
    for path in files:
        for name, tensor in _load_bin(path, cache).items():
            if isinstance(tensor, torch.Tensor):
                shapes[name] = tuple(tensor.shape)
                location[name] = path
    return TorchZipFiles(folder, shapes, location, "torch-bin")
