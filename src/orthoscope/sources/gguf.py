"""GGUF checkpoints (llama.cpp): tensors renamed to Hugging Face names, dequantized on read.

A GGUF file holds its config as metadata and its tensors under llama.cpp names, with
dimensions listed innermost first and, for the `llama` architecture, the rows of q and
k permuted for llama.cpp's rotary layout. This reader maps each name back to its
Hugging Face name, reports shapes as (out, in), and on `read` dequantizes exactly one
tensor to float32 and undoes the q/k permutation, so a GGUF converted from a HF model
reads back as that model's weights (up to quantization error).

The file is memory-mapped by `gguf.GGUFReader`; opening reads only the header.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orthoscope.errors import SourceError, reason
from orthoscope.sources.config import positive_int
from orthoscope.sources.store import TensorFiles, add_tensor, regular_file

# llama.cpp tensor name -> Hugging Face name, outside the layers.
GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output": "lm_head",
    "output_norm": "model.norm",
}

# llama.cpp `blk.N.<part>` -> Hugging Face `model.layers.N.<module>`.
BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}

BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
GLOBAL = re.compile(r"(\w+)\.(weight|bias)")

# Architectures whose converter permutes q/k rows (convert_hf_to_gguf.py, LlamaModel.permute),
# and the config key giving each tensor's head count.
PERMUTED_ARCHITECTURES = {"llama"}
PERMUTED_HEADS = {"self_attn.q_proj": "num_attention_heads", "self_attn.k_proj": "num_key_value_heads"}

# GGUF metadata key (after "<arch>.") -> Hugging Face config key.
CONFIG_KEYS = {
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "block_count": "num_hidden_layers",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "context_length": "max_position_embeddings",
    "rope.freq_base": "rope_theta",
    "vocab_size": "vocab_size",
}

SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")

NAME = "gguf"


def detect(target: Path) -> bool:
    """A .gguf file, or a folder holding .gguf files."""
    if target.suffix == ".gguf" and not target.is_dir():
        return True
    return target.is_dir() and any(target.glob("*.gguf"))


def open(target: Path) -> GGUFFiles:  # noqa: A001 - the registry's verb
    """A .gguf file (this one, even beside others, with its split parts) or the one GGUF set of a folder."""
    if target.is_dir():
        return open_gguf(target, complete(gguf_files_in(target)))
    return open_gguf(target.parent, complete(split_set(target)))


def complete(files: list[Path]) -> list[Path]:
    """`files`, refused with the name of the first missing part when a gguf-split set lacks one."""
    parts = [(m, f) for f in files if (m := SPLIT.match(f.name))]
    if not parts:
        return files
    stem, total = parts[0][0].group(1), int(parts[0][0].group(3))
    present = {int(m.group(2)) for m, _ in parts}
    missing = [i for i in range(1, total + 1) if i not in present]
    if missing:
        name = f"{stem}-{missing[0]:05d}-of-{total:05d}.gguf"
        raise SourceError(f"GGUF split set {stem} in {files[0].parent} lacks part {name}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return files


def hf_name(name: str) -> str:
    """The Hugging Face name of a llama.cpp tensor; unknown names are kept as they are.

    >>> hf_name("blk.3.attn_q.weight"), hf_name("output_norm.weight")
    ('model.layers.3.self_attn.q_proj.weight', 'model.norm.weight')
    """
    match = BLOCK.fullmatch(name)
    if match and match.group(2) in BLOCK_NAMES:
        return f"model.layers.{match.group(1)}.{BLOCK_NAMES[match.group(2)]}.{match.group(3)}"
    match = GLOBAL.fullmatch(name)
    if match and match.group(1) in GLOBAL_NAMES:
        return f"{GLOBAL_NAMES[match.group(1)]}.{match.group(2)}"
    return name


def unpermute(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation (the inverse of LlamaModel.permute)."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


@dataclass
class GGUFFiles(TensorFiles):
    """The tensors of one GGUF file (or one gguf-split set), under Hugging Face names."""

    config: dict = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    _readers: dict[Path, Any] = field(default_factory=dict, repr=False)
    _source: dict[str, tuple[Path, int]] = field(default_factory=dict, repr=False)

    def metadata_config(self) -> dict:
        return dict(self.config)

    def dtype(self, name: str) -> torch.dtype:
        """Every tensor is read dequantized to float32."""
        return torch.float32

    def quant_types(self) -> dict[str, str]:
        """Each tensor's GGML type name (F32, Q8_0, Q6_K, ...)."""
        return {name: self._tensor(name).tensor_type.name for name in self.shapes}

    def byte_range(self, name: str) -> tuple[int, int] | None:
        tensor = self._tensor(name)
        return int(tensor.data_offset), int(tensor.n_bytes)

    def _tensor(self, name: str):
        path, index = self._source[name]
        return self._readers[path].tensors[index]

    def read(self, name: str) -> torch.Tensor:
        """Dequantize one tensor to float32, un-permuting q/k where the converter permuted them."""
        from gguf.quants import dequantize

        path = self.location[name]
        tensor = self._tensor(name)
        try:
            if tensor.data.dtype.kind == "f":
                values = np.array(tensor.data, dtype=np.float32)  # a copy, off the memmap
            else:
                values = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
            values = values.reshape(self.shapes[name])
        except NotImplementedError:
            raise SourceError(
                f"cannot dequantize tensor {tensor.name!r} of type {tensor.tensor_type.name} in {path}"
            ) from None
        except (ValueError, IndexError, OSError) as err:
            raise SourceError(f"cannot read tensor {tensor.name!r} from {path}: {reason(err)}") from None
        weight = torch.from_numpy(values)
        heads = self._permuted_heads(name)
        if heads:  # check_heads made sure they divide the rows
            weight = unpermute(weight, heads)
        return weight

    def _permuted_heads(self, name: str) -> int | None:
        if self.config.get("model_type") not in PERMUTED_ARCHITECTURES:
            return None
        match = re.fullmatch(r"model\.layers\.\d+\.(self_attn\.[qk]_proj)\.(?:weight|bias)", name)
        if not match:
            return None
        where = f"GGUF metadata of {self.location[name]}"
        key = PERMUTED_HEADS[match.group(1)]
        return positive_int(self.config, key, where) or positive_int(self.config, "num_attention_heads", where)

    def check_heads(self, first: Path) -> None:
        """Refuse head counts that are not positive integers or do not divide the q/k rows they un-permute."""
        for key in ("num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers"):
            positive_int(self.config, key, f"GGUF metadata of {first}")
        for name, shape in self.shapes.items():
            heads = self._permuted_heads(name)
            if heads and shape[0] % (2 * heads):
                raise SourceError(f"GGUF metadata of {self.location[name]}: a head count of {heads} does not divide "
                                  f"the {shape[0]} rows of {name} into pairs of rotary halves")

    def fingerprint(self) -> str:
        """Hash of sizes, whole headers (metadata and tensor table) and the first MiB of data."""
        digest = hashlib.sha256()
        for path in sorted(self._readers):
            reader = self._readers[path]
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            end = min(int(reader.data_offset) + (1 << 20), len(reader.data))
            digest.update(memoryview(np.ascontiguousarray(reader.data[:end])))
        return digest.hexdigest()[:16]


def gguf_files_in(folder: Path) -> list[Path]:
    """The .gguf files of `folder` that make one checkpoint; [] if none, SourceError if ambiguous."""
    files = sorted(folder.glob("*.gguf"))
    if len(files) <= 1:
        return files
    groups = {m.group(1) if (m := SPLIT.match(f.name)) else f.name for f in files}
    if len(groups) == 1:
        return files
    shown = ", ".join(f.name for f in files[:4]) + (", ..." if len(files) > 4 else "")
    raise SourceError(f"several GGUF files in {folder} ({shown}): pass the path of one of them")


def split_set(path: Path) -> list[Path]:
    """A .gguf file and, if it is one part of a gguf-split set, its sibling parts."""
    match = SPLIT.match(path.name)
    if not match:
        return [path]
    return sorted(p for p in path.parent.glob(f"{glob_escape(match.group(1))}-*-of-{match.group(3)}.gguf"))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def open_gguf(folder: Path, files: list[Path]) -> GGUFFiles:
    """Read the headers of `files` (one GGUF, or the parts of a split one) without reading weights."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise SourceError(
            f"reading {files[0]} needs the gguf package (pip install 'orthoscope[gguf]')"
        ) from None
    readers: dict[Path, Any] = {}
    metadata = {}
    for path in files:
        regular_file(path)
        try:  # the header is parsed here, and its fields decoded: a damaged one fails now, as one line
            readers[path] = GGUFReader(path, "r")
            metadata.update(_metadata(readers[path]))
        except (ValueError, IndexError, KeyError, TypeError, OSError, OverflowError, UnicodeDecodeError,
                MemoryError, AttributeError) as err:
            raise SourceError(f"corrupt or truncated GGUF file {path}: {reason(err)}") from None
    shapes: dict[str, tuple[int, ...]] = {}
    location: dict[str, Path] = {}
    source: dict[str, tuple[Path, int]] = {}
    for path, reader in readers.items():
        for index, tensor in enumerate(reader.tensors):
            name = hf_name(tensor.name)
            if name in location:  # twice in one file, in two parts, or an HF-named decoy beside its llama.cpp name
                first = location[name].name
                raise SourceError(f"tensor {name!r} is stored twice ({tensor.name!r} in {path.name}, and in {first}): "
                                  "which one is meant?")
            add_tensor(shapes, location, name, tuple(int(d) for d in reversed(tensor.shape.tolist())), path)
            source[name] = (path, index)
    try:
        config = config_from_metadata(metadata, readers[files[0]], shapes)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as err:
        raise SourceError(f"corrupt GGUF metadata in {files[0]}: {reason(err)}") from None
    store = GGUFFiles(folder, shapes, location, "gguf", config, metadata, readers, source)
    store.check_heads(files[0])
    return store


def _metadata(reader) -> dict[str, Any]:
    """Scalar and string metadata; arrays (the tokenizer's) are left out, their length kept."""
    from gguf import GGUFValueType

    values: dict[str, Any] = {}
    for key, item in reader.fields.items():
        if key.startswith("GGUF.") or not item.types:
            continue
        if item.types[0] == GGUFValueType.ARRAY:
            values[key] = _Array(len(item.data))
        else:
            values[key] = item.contents()
    return values


@dataclass(frozen=True)
class _Array:
    """An array-valued metadata field, by length only (tokenizer tokens, merges, scores)."""

    length: int


def config_from_metadata(metadata: dict[str, Any], reader, shapes: dict[str, tuple[int, ...]]) -> dict:
    """A Hugging Face style config from GGUF metadata (used when there is no config.json)."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return {}
    config: dict[str, Any] = {"model_type": arch}
    for key, hf_key in CONFIG_KEYS.items():
        value = metadata.get(f"{arch}.{key}")
        if isinstance(value, _Array):  # per-layer values (e.g. head counts): keep the first
            item = reader.fields[f"{arch}.{key}"]
            value = item.contents(0) if value.length else None
        if value is not None:
            config[hf_key] = value
    if "vocab_size" not in config:
        tokens = metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, _Array):
            config["vocab_size"] = tokens.length
        elif "model.embed_tokens.weight" in shapes:
            config["vocab_size"] = shapes["model.embed_tokens.weight"][0]
    config.setdefault("num_key_value_heads", config.get("num_attention_heads"))
    config["tie_word_embeddings"] = "lm_head.weight" not in shapes
    return {k: v for k, v in config.items() if v is not None}
