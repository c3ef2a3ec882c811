"""What every format gives a checkpoint: tensor names, shapes, dtypes, one tensor read at a time.

`TensorStore` is the interface; `TensorFiles` is a store backed by weight files on disk,
which knows the file holding each tensor. The helpers here keep reading safe: files
must be regular files (a FIFO would hang `open`), paths taken from index files must
stay inside the model folder, and JSON side files must hold an object.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from orthoscope.errors import SourceError

# safetensors dtype names -> torch dtypes
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


MAX_JSON_BYTES = 256 << 20  # config, index and adapter config files are small: a larger one is not one


class TensorStore:
    """Names, shapes and one-at-a-time reads of one checkpoint's tensors, whatever holds them.

    >>> from orthoscope.sources.memory import MemoryTensors
    >>> store = MemoryTensors({"w": torch.ones(2, 3)})
    >>> store.shapes, store.read("w").sum().item(), store.dtype("w")
    ({'w': (2, 3)}, 6.0, torch.float32)
    """

    format: str = "?"
    shapes: dict[str, tuple[int, ...]]

    def read(self, name: str) -> torch.Tensor:
        raise NotImplementedError

    def dtype(self, name: str) -> torch.dtype:
        return self.read(name).dtype

    def shards(self) -> dict[Path, list[str]]:
        """Tensor names grouped by the file that holds them."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError

    def content_hash(self) -> str:
        """128-bit XXH3 of every tensor's name, dtype, shape and bytes (reads the whole model once).

        Unlike `fingerprint`, which samples files, this changes whenever any byte of any
        weight does: what a result that depends on the whole model (an experiment) is keyed on.

        >>> from orthoscope.sources.memory import MemoryTensors
        >>> MemoryTensors({"w": torch.ones(2)}).content_hash() == MemoryTensors({"w": torch.ones(2)}).content_hash()
        True
        """
        import xxhash

        digest = xxhash.xxh3_128()
        for name in sorted(self.shapes):
            tensor = self.read(name).detach().contiguous().cpu()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
        return digest.hexdigest()

    def metadata_config(self) -> dict:
        """A config read from the weights themselves (GGUF metadata); {} for other formats."""
        return {}

    def prefetch(self, name: str) -> None:
        """A hint that `name` will be read soon (nothing here: stores in memory or without byte ranges)."""

    def notes(self) -> list[str]:
        """What a run should tell the user about how these tensors were read (an adapter made for another base)."""
        return []


@dataclass
class TensorFiles(TensorStore):
    """A store whose tensors live in files of one folder: `location[name]` is the file."""

    folder: Path
    shapes: dict[str, tuple[int, ...]]
    location: dict[str, Path]
    format: str

    def shards(self) -> dict[Path, list[str]]:
        groups: dict[Path, list[str]] = {}
        for name, path in self.location.items():
            groups.setdefault(path, []).append(name)
        return groups

    def byte_range(self, name: str) -> tuple[int, int] | None:
        """(offset, length) of the stored bytes of `name` in its file, where the format says; else None."""
        return None

    def prefetch(self, name: str) -> None:
        """Ask the OS to start reading `name`'s bytes into the page cache, and return at once.

        The reads then overlap the work on earlier matrices. Only a hint
        (`posix_fadvise(WILLNEED)`): no value depends on it, and nothing is raised.
        """
        span = self.byte_range(name)
        if span is not None:
            advise_willneed(self.location[name], *span)

    def content_hash(self) -> str:
        """128-bit XXH3 of every weight file's name and bytes, read in 8 MiB pieces."""
        import xxhash

        digest = xxhash.xxh3_128()
        for path in sorted(set(self.location.values())):
            digest.update(f"{path.name}|".encode())
            with regular_file(path).open("rb") as handle:
                while chunk := handle.read(8 << 20):
                    digest.update(chunk)
        return digest.hexdigest()

    def fingerprint(self) -> str:
        """A hash of the files' names, sizes, headers and slices: changes whenever the weights do."""
        digest = hashlib.sha256()
        for path in sorted(set(self.location.values())):
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            digest.update(head_bytes(path))
        return digest.hexdigest()[:16]


def head_bytes(path: Path, samples: int = 8, sample_size: int = 1 << 16) -> bytes:
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


READAHEAD_CHUNK = 1 << 17  # bytes per WILLNEED call: Linux reads at most max(read_ahead_kb, max_sectors_kb) per call


def advise_willneed(path: Path, offset: int, length: int) -> None:
    """posix_fadvise(WILLNEED) on a byte range of `path`: the kernel reads it ahead, asynchronously.

    Asked for in 128 KiB pieces: Linux caps one call at the device's readahead window, so
    one call for a whole tensor brings only its first part in (docs/benchmarks.md). A no-op where the call does not
    exist (macOS, Windows) or fails.

    >>> advise_willneed(Path(__file__), 0, 100)
    """
    if not hasattr(os, "posix_fadvise") or length <= 0 or offset < 0:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        for start in range(offset, offset + length, READAHEAD_CHUNK):
            os.posix_fadvise(fd, start, min(READAHEAD_CHUNK, offset + length - start), os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def regular_file(path: Path) -> Path:
    """`path` if it is a regular file (symlinks followed); SourceError otherwise, without opening it.

    A FIFO or a device in place of a weights file would make `open` wait forever.

    >>> regular_file(Path("/dev/null"))
    Traceback (most recent call last):
    orthoscope.errors.SourceError: /dev/null is not a regular file (a character device)
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise SourceError(f"cannot read {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise SourceError(f"{path} is not a regular file ({_kind(mode)})")
    return path


def _kind(mode: int) -> str:
    for test, name in [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]:
        if test(mode):
            return name
    return "not a plain file"


def inside(folder: Path, entry: object, index: Path) -> Path:
    """The file `entry` names in `index`, refused unless it stays inside `folder` (symlinks resolved).

    A snapshot of the Hugging Face cache links its files to `../../blobs/`; those links are allowed.

    >>> inside(Path("/m"), "../other/model.safetensors", Path("/m/model.safetensors.index.json"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.SourceError: index /m/model.safetensors.index.json names '../other/model.safetensors', outside ...
    """
    def refuse() -> SourceError:
        return SourceError(f"index {index} names {entry!r}, outside the model folder {folder}")

    if not isinstance(entry, str) or not entry:
        raise SourceError(f"index {index} has a weight_map entry {entry!r} that is not a file name")
    relative = PurePosixPath(entry.replace("\\", "/"))
    if not relative.parts or relative.is_absolute() or Path(entry).is_absolute() or ".." in relative.parts \
            or ":" in relative.parts[0]:
        raise refuse()
    path = folder / relative
    if path.exists() or path.is_symlink():
        real, root = path.resolve(), folder.resolve()
        blobs = folder.parent.parent / "blobs" if folder.parent.name == "snapshots" else None
        if not (real.is_relative_to(root) or (blobs is not None and real.is_relative_to(blobs.resolve()))):
            raise refuse()
    return path


def confined_file(folder: Path, path: Path) -> bool:
    """True if `path` is a regular file that stays inside `folder` once links are resolved (or inside the
    Hugging Face cache's `blobs/` beside a snapshot); False for a link out of the folder, a FIFO, a device.

    A side file copied into an output must not be `special_tokens_map.json -> /etc/shadow`.

    >>> confined_file(Path("/etc"), Path("/etc/hostname")), confined_file(Path("/dev"), Path("/dev/zero"))
    (True, False)
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        real, root = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a dangling link, a link loop
        return False
    blobs = folder.parent.parent / "blobs" if folder.parent.name == "snapshots" else None
    return real.is_relative_to(root) or (blobs is not None and real.is_relative_to(blobs.resolve()))


def read_json_object(path: Path, what: str = "JSON file") -> dict:
    """The JSON object in `path`; one-line SourceError if unreadable, not UTF-8, invalid or not an object."""
    regular_file(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise SourceError(f"{what} {path} is larger than {MAX_JSON_BYTES >> 20} MiB: not a JSON side file")
        text = raw.decode("utf-8")
        value = json.loads(text)
    except OSError as err:
        raise SourceError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise SourceError(f"{what} {path} is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise SourceError(f"invalid JSON in {path}: {err}") from None
    if not isinstance(value, dict):
        raise SourceError(f"{what} {path} holds a JSON {type(value).__name__}, not an object")
    return value


def read_weight_map(index: Path) -> dict[str, str]:
    """The `weight_map` of an index file (tensor name -> shard file name)."""
    data = read_json_object(index, "index file")
    mapping = data.get("weight_map")
    if not isinstance(mapping, dict):
        raise SourceError(f"invalid index file {index}: 'weight_map' is "
                          + ("missing" if mapping is None else f"a {type(mapping).__name__}, not a mapping"))
    return mapping


def check_index(index: Path, mapping: dict[str, str], found: dict[str, Path], folder: Path) -> None:
    """Refuse an index whose weight_map contradicts what its shards hold."""
    for name, path in found.items():
        listed = mapping.get(name)
        if listed is None:
            raise SourceError(f"index {index} does not list tensor {name!r} held by {path.name}")
        if folder / listed != path:
            raise SourceError(f"index {index} places tensor {name!r} in {listed}, but it is in {path.name}")
    absent = [name for name in mapping if name not in found]
    if absent:
        raise SourceError(f"index {index} lists tensor {absent[0]!r} in {mapping[absent[0]]}, which does not hold it")


def open_indexed(folder: Path, index: Path, read_files) -> TensorFiles:
    """A sharded folder through its index: every entry confined to `folder`, every shard present,
    and the shards' contents equal to what the index says (`read_files(folder, paths)` reads headers)."""
    mapping = read_weight_map(index)
    shards = {name: inside(folder, entry, index) for name, entry in mapping.items()}
    missing = sorted({p.name for p in shards.values() if not p.exists()})
    if missing:
        raise SourceError(f"index {index} names missing shard {missing[0]}" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    files = read_files(folder, sorted(set(shards.values())))
    check_index(index, {k: str(p.relative_to(folder)) for k, p in shards.items()}, files.location, folder)
    return files


def add_tensor(shapes: dict, location: dict, name: str, shape: tuple[int, ...], path: Path) -> None:
    """Record one tensor; a name held by two files is refused (which one is meant?)."""
    if name in location:
        raise SourceError(f"tensor {name!r} is stored twice, in {location[name]} and in {path.name}")
    shapes[name] = shape
    location[name] = path
