"""Hostile and broken checkpoints: each ends in one line naming the file and exit code 2, never a
traceback, a hang, or weights read from outside the model folder (issue 13, sources part).

Each case builds its bad input from a copy of the planted post (sharded safetensors with an index).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.errors import SourceError
from orthoscope.sources import open_checkpoint

runner = CliRunner()
Q0 = "model.layers.0.self_attn.q_proj.weight"
ST_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def compare_fails(base, post, out: Path) -> str:
    """Run `orthoscope compare`; it must exit 2 with one `error:` line (and never hang)."""
    def hung(*_):
        raise TimeoutError("orthoscope compare hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        result = runner.invoke(app, ["compare", str(base), str(post), "-o", str(out), "-q"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "\x1b" not in result.output  # names reach the terminal with control characters escaped
    return lines[0]


# ---------------------------------------------------------------- builders


def index_of(folder: Path, name: str = ST_INDEX) -> dict:
    return json.loads((folder / name).read_text())


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value))


def all_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def shard_of(folder: Path, tensor: str = Q0) -> str:
    return index_of(folder)["weight_map"][tensor]


def bin_folder(good: Path, dst: Path) -> Path:
    """The same weights as two pytorch_model-*.bin shards with their index."""
    dst.mkdir()
    shutil.copy(good / "config.json", dst / "config.json")
    tensors = all_tensors(good)
    names = sorted(tensors)
    halves = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
    for file, part in halves.items():
        torch.save({n: tensors[n] for n in part}, dst / file)
    write_json(dst / BIN_INDEX, {"weight_map": {n: f for f, part in halves.items() for n in part}})
    return dst


def escape_index(folder: Path, index: str, how: str) -> str:
    """Move the shard holding Q0 out of the folder and point the index at it; returns the shard name."""
    mapping = index_of(folder, index)
    shard = mapping["weight_map"][Q0]
    outside = folder.parent / "outside"
    outside.mkdir()
    shutil.move(folder / shard, outside / shard)
    if how == "symlink":
        (folder / shard).symlink_to(outside / shard)
        return shard
    entry = f"../outside/{shard}" if how == "parent" else str(outside / shard)
    mapping["weight_map"] = {k: entry if v == shard else v for k, v in mapping["weight_map"].items()}
    write_json(folder / index, mapping)
    return shard


def shared_shard_tensor(folder: Path) -> str:
    """A tensor whose shard holds other tensors too."""
    mapping = index_of(folder)["weight_map"]
    return next(n for n, f in mapping.items() if list(mapping.values()).count(f) > 1)


def adapter_folder(dst: Path, **config) -> Path:
    """A hand-made LoRA adapter of the planted Qwen2 (rank 2 on layer 0's q_proj)."""
    dst.mkdir()
    write_json(dst / "adapter_config.json", {"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                             "target_modules": ["q_proj"], **config})
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{module}.lora_A.weight": torch.randn(2, 64), f"{module}.lora_B.weight": torch.randn(64, 2)},
              dst / "adapter_model.safetensors")
    return dst


def tiny_gguf(path: Path) -> Path:
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_block_count(1)
    for i in range(4):
        writer.add_tensor(f"blk.0.attn_q{i}.weight", torch.randn(64, 64).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# Each case: (id, build(good copy, tmp) -> (base or None for the planted base, post), fragments of the line).
# `good` is a fresh copy of the planted post; a fragment "{shard}" is filled by the builder's return.


CASES = {}


def case(name, *fragments, base=None):
    def register(build):
        CASES[name] = (build, fragments, base)
        return build
    return register


@case("st-index-parent-path", "outside the model folder", ST_INDEX, "'../outside/")
def _(post, tmp):
    escape_index(post, ST_INDEX, "parent")
    return post


@case("st-index-absolute-path", "outside the model folder", ST_INDEX, "/outside/")
def _(post, tmp):
    escape_index(post, ST_INDEX, "absolute")
    return post


@case("st-index-symlink-escape", "outside the model folder", ST_INDEX)
def _(post, tmp):
    escape_index(post, ST_INDEX, "symlink")
    return post


@case("bin-index-parent-path", "outside the model folder", BIN_INDEX, "'../outside/")
def _(post, tmp):
    folder = bin_folder(post, tmp / "bin")
    escape_index(folder, BIN_INDEX, "parent")
    return folder


@case("bin-index-absolute-path", "outside the model folder", BIN_INDEX)
def _(post, tmp):
    folder = bin_folder(post, tmp / "bin")
    escape_index(folder, BIN_INDEX, "absolute")
    return folder


@case("bin-index-symlink-escape", "outside the model folder", BIN_INDEX)
def _(post, tmp):
    folder = bin_folder(post, tmp / "bin")
    escape_index(folder, BIN_INDEX, "symlink")
    return folder


@case("index-entry-not-a-name", "has a weight_map entry 7 that is not a file name", ST_INDEX)
def _(post, tmp):
    mapping = index_of(post)
    mapping["weight_map"][Q0] = 7
    write_json(post / ST_INDEX, mapping)
    return post


@case("tensor-in-two-indexed-shards", f"tensor '{Q0}' is stored twice")
def _(post, tmp):
    tensors = load_file(post / shard_of(post, Q0))
    other = next(f for f in sorted(set(index_of(post)["weight_map"].values())) if f != shard_of(post, Q0))
    extra = load_file(post / other)
    extra[Q0] = torch.zeros_like(tensors[Q0])
    save_file(extra, post / other)
    return post


@case("tensor-in-two-unindexed-files", f"tensor '{Q0}' is stored twice", "copy.safetensors")
def _(post, tmp):
    (post / ST_INDEX).unlink()
    save_file({Q0: torch.zeros(64, 64)}, post / "zz-copy.safetensors")
    return post


@case("index-places-tensor-elsewhere", f"places tensor '{Q0}' in", "but it is in", ST_INDEX)
def _(post, tmp):
    mapping = index_of(post)
    mapping["weight_map"][Q0] = next(f for f in mapping["weight_map"].values() if f != mapping["weight_map"][Q0])
    write_json(post / ST_INDEX, mapping)
    return post


@case("index-lists-absent-tensor", "lists tensor 'model.layers.0.extra.weight' in", "which does not hold it")
def _(post, tmp):
    mapping = index_of(post)
    mapping["weight_map"]["model.layers.0.extra.weight"] = mapping["weight_map"][Q0]
    write_json(post / ST_INDEX, mapping)
    return post


@case("index-omits-stored-tensor", "does not list tensor", ST_INDEX)
def _(post, tmp):
    mapping = index_of(post)
    del mapping["weight_map"][shared_shard_tensor(post)]
    write_json(post / ST_INDEX, mapping)
    return post


@case("weight-map-a-list", "'weight_map' is a list, not a mapping", ST_INDEX)
def _(post, tmp):
    write_json(post / ST_INDEX, {"weight_map": [1, 2]})
    return post


@case("weight-map-missing", "'weight_map' is missing", ST_INDEX)
def _(post, tmp):
    write_json(post / ST_INDEX, {"metadata": {}})
    return post


@case("index-not-an-object", "index file", ST_INDEX, "holds a JSON str, not an object")
def _(post, tmp):
    write_json(post / ST_INDEX, "model.safetensors")
    return post


@case("config-a-list", "config", "config.json holds a JSON list, not an object")
def _(post, tmp):
    write_json(post / "config.json", [1, 2])
    return post


@case("config-not-utf8", "config.json is not UTF-8 text")
def _(post, tmp):
    (post / "config.json").write_bytes(b'{"model_type": "\xff\xfe"}')
    return post


@case("config-invalid-json", "invalid JSON in", "config.json")
def _(post, tmp):
    (post / "config.json").write_text('{"model_type": ')
    return post


@case("config-a-folder", "config.json is not a regular file (a folder)")
def _(post, tmp):
    (post / "config.json").unlink()
    (post / "config.json").mkdir()
    return post


@case("config-a-fifo", "config.json is not a regular file (a FIFO)")
def _(post, tmp):
    (post / "config.json").unlink()
    os.mkfifo(post / "config.json")
    return post


@case("shard-a-fifo", "is not a regular file (a FIFO)", ".safetensors")
def _(post, tmp):
    shard = post / shard_of(post, Q0)
    shard.unlink()
    os.mkfifo(shard)
    return post


@case("weights-a-device", "model.safetensors is not a regular file (a character device)")
def _(post, tmp):
    folder = tmp / "device"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    (folder / "model.safetensors").symlink_to("/dev/zero")
    return folder


@case("folder-named-like-weights", "model.safetensors is not a regular file (a folder)")
def _(post, tmp):
    folder = tmp / "dir"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    (folder / "model.safetensors").mkdir()
    return folder


@case("truncated-safetensors", "corrupt or truncated safetensors file", ".safetensors")
def _(post, tmp):
    shard = post / shard_of(post, Q0)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size - 100])
    return post


@case("garbage-safetensors", "corrupt or truncated safetensors file", ".safetensors")
def _(post, tmp):
    shard = post / shard_of(post, Q0)
    shard.write_bytes(b"\xff" * 64)
    return post


@case("truncated-gguf", "corrupt or truncated GGUF file", "tiny.gguf")
def _(post, tmp):
    folder = tmp / "gguf"
    folder.mkdir()
    file = tiny_gguf(folder / "tiny.gguf")
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    return folder


@case("empty-folder", "no weights found in", "empty")
def _(post, tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


@case("not-a-weights-file", "config.json is not a weights file orthoscope reads")
def _(post, tmp):
    return post / "config.json"


@case("broken-symlink", "path does not exist", "dangling")
def _(post, tmp):
    (tmp / "dangling").symlink_to(tmp / "nowhere")
    return tmp / "dangling"


@case("bin-holds-a-list", "pytorch_model.bin holds a list, not a dict of tensors")
def _(post, tmp):
    folder = tmp / "list"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    torch.save([torch.zeros(2)], folder / "pytorch_model.bin")
    return folder


@case("bin-holds-no-tensors", "pytorch_model.bin holds no tensors at its top level")
def _(post, tmp):
    folder = tmp / "state"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    torch.save({"model": {Q0: torch.zeros(2)}, "step": 3}, folder / "pytorch_model.bin")
    return folder


@case("bin-with-code", "pytorch_model.bin holds pickled code (posix.mkdir)",
      "was refused: orthoscope never runs code from a checkpoint")
def _(post, tmp):
    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(tmp / "pwned"),)

    folder = tmp / "evil"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    torch.save({Q0: torch.zeros(2), "x": Payload()}, folder / "pytorch_model.bin")
    return folder


@case("bin-junk", "cannot load", "pytorch_model.bin: not a readable PyTorch file")
def _(post, tmp):
    folder = tmp / "junk"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle at all" * 10)
    return folder


@case("bin-index-names-missing-shard", "names missing shard pytorch_model-00002-of-00002.bin", BIN_INDEX)
def _(post, tmp):
    folder = bin_folder(post, tmp / "bin")
    (folder / "pytorch_model-00002-of-00002.bin").unlink()
    return folder


@case("adapter-given-as-base", "adapter is a PEFT adapter: it is read against its base model",
      base="adapter")
def _(post, tmp):
    return adapter_folder(tmp / "adapter")


@case("dora-adapter", "adapter_config.json: DoRA (use_dora)")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", use_dora=True)


@case("non-lora-adapter", "adapter_config.json describes a LOHA adapter; only LoRA adapters can be read")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", peft_type="LOHA")


@case("adapter-without-weights", "has adapter_config.json but no adapter_model.safetensors")
def _(post, tmp):
    folder = adapter_folder(tmp / "adapter")
    (folder / "adapter_model.safetensors").unlink()
    return folder


@case("adapter-config-a-list", "adapter config", "adapter_config.json holds a JSON list, not an object")
def _(post, tmp):
    folder = adapter_folder(tmp / "adapter")
    write_json(folder / "adapter_config.json", [])
    return folder


@case("adapter-of-another-model", "adapts 'model.layers.0.self_attn.qq_proj'", "has no tensor")
def _(post, tmp):
    folder = tmp / "adapter"
    adapter_folder(folder)
    module = "base_model.model.model.layers.0.self_attn.qq_proj"
    save_file({f"{module}.lora_A.weight": torch.randn(2, 64), f"{module}.lora_B.weight": torch.randn(64, 2)},
              folder / "adapter_model.safetensors")
    return folder


@case("adapter-wrong-shapes", "the update of 'model.layers.0.self_attn.q_proj' is 32 x 64")
def _(post, tmp):
    folder = tmp / "adapter"
    adapter_folder(folder)
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{module}.lora_A.weight": torch.randn(2, 64), f"{module}.lora_B.weight": torch.randn(32, 2)},
              folder / "adapter_model.safetensors")
    return folder


@case("name-too-long", "not a usable path", "File name too long")
def _(post, tmp):
    return "x" * 5000


# ---------------------------------------------------------------- round 3 (issue 26)


def model_folder(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """A one-file safetensors model with `config`."""
    folder.mkdir()
    write_json(folder / "config.json", config)
    save_file(tensors, folder / "model.safetensors")
    return folder


def gguf_file(path: Path, arch: str = "llama", heads=4, names=("blk.0.attn_q.weight", "blk.0.attn_k.weight"),
              rows: int = 64, parts: int = 1) -> Path:
    """A tiny GGUF (or the parts of a split one: one tensor per part); `heads` may be any metadata value."""
    gguf = pytest.importorskip("gguf")
    paths = [path] if parts == 1 else [path.parent / f"m-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]
    for i, file in enumerate(paths):
        writer = gguf.GGUFWriter(file, arch)
        writer.add_block_count(1)
        if isinstance(heads, str):
            writer.add_string(f"{arch}.attention.head_count", heads)
        elif heads is not None and heads < 0:
            writer.add_int32(f"{arch}.attention.head_count", heads)
        elif heads is not None:
            writer.add_head_count(heads)
        for name in (names if parts == 1 else names[i:i + 1]):
            writer.add_tensor(name, torch.randn(rows, 64).numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path.parent


def phi3(folder: Path, rows: int = 192, **config) -> Path:
    return model_folder(folder, {"model_type": "phi3", "num_attention_heads": 4, "num_key_value_heads": 4,
                                 **config},
                        {"model.layers.0.self_attn.qkv_proj.weight": torch.randn(rows, 64),
                         "model.layers.0.self_attn.o_proj.weight": torch.randn(64, 64)})


def fp8(folder: Path, block, scale_shape=(1, 1)) -> Path:
    return model_folder(folder, {"model_type": "qwen2", "quantization_config": {"weight_block_size": block}},
                        {Q0: torch.randn(64, 64).to(torch.float8_e4m3fn),
                         Q0 + "_scale_inv": torch.ones(*scale_shape)})


def gguf_dir(tmp: Path, **kwargs) -> Path:
    folder = tmp / "gguf"
    folder.mkdir()
    return gguf_file(folder / "m.gguf", **kwargs)


@case("gguf-hf-named-decoy", "is stored twice", "model.layers.0.self_attn.q_proj.weight", base="same")
def _(post, tmp):
    return gguf_dir(tmp, names=("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"))


@case("gguf-same-tensor-in-two-split-parts", "is stored twice", "m-00002-of-00002.gguf", base="same")
def _(post, tmp):
    return gguf_dir(tmp, names=("blk.0.attn_q.weight", "blk.0.attn_q.weight"), parts=2)


@case("gguf-split-set-missing-a-middle-part", "lacks part m-00002-of-00003.gguf", base="same")
def _(post, tmp):
    folder = gguf_dir(tmp, names=("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"), parts=3)
    (folder / "m-00002-of-00003.gguf").unlink()
    return folder


@case("gguf-head-count-not-dividing-rows", "head count of 3 does not divide the 64 rows", base="same")
def _(post, tmp):
    return gguf_dir(tmp, heads=3)


@case("gguf-head-count-a-string", "num_attention_heads is '4', not a positive integer", base="same")
def _(post, tmp):
    return gguf_dir(tmp, heads="4")


@case("gguf-head-count-zero", "num_attention_heads is 0, not a positive integer", base="same")
def _(post, tmp):
    return gguf_dir(tmp, heads=0)


@case("gguf-head-count-negative", "num_attention_heads is -4, not a positive integer", base="same")
def _(post, tmp):
    return gguf_dir(tmp, heads=-4)


@case("phi3-head-dim-contradicts-fused-qkv", "head_dim 8 make 96 rows of q, k and v", "has 192", base="same")
def _(post, tmp):
    return phi3(tmp / "phi3", head_dim=8)


@case("phi3-heads-a-string", "num_attention_heads is '4', not a positive integer", base="same")
def _(post, tmp):
    return phi3(tmp / "phi3", num_attention_heads="4")


@case("phi3-heads-zero", "num_attention_heads is 0, not a positive integer", base="same")
def _(post, tmp):
    return phi3(tmp / "phi3", num_attention_heads=0)


@case("gpt-neox-heads-not-dividing", "num_attention_heads 5 does not divide", base="same")
def _(post, tmp):
    return model_folder(tmp / "neox", {"model_type": "gpt_neox", "num_attention_heads": 5},
                        {"gpt_neox.layers.0.attention.query_key_value.weight": torch.randn(192, 64)})


@case("gpt-neox-heads-negative", "num_attention_heads is -2, not a positive integer", base="same")
def _(post, tmp):
    return model_folder(tmp / "neox", {"model_type": "gpt_neox", "num_attention_heads": -2},
                        {"gpt_neox.layers.0.attention.query_key_value.weight": torch.randn(192, 64)})


@case("fp8-block-size-contradicts-scale-grid", "weight_block_size [32, 32] implies a 2 x 2 scale grid",
      "its scale is 1 x 1", base="same")
def _(post, tmp):
    return fp8(tmp / "fp8", [32, 32])


@case("fp8-block-size-zero", "weight_block_size is [0, 128], not two positive integers", base="same")
def _(post, tmp):
    return fp8(tmp / "fp8", [0, 128])


@case("fp8-block-size-strings", "weight_block_size is ['128', '128']", base="same")
def _(post, tmp):
    return fp8(tmp / "fp8", ["128", "128"])


@case("bin-integer-keys", "holds a tensor under the key 0 (int), not a tensor name")
def _(post, tmp):
    folder = tmp / "intkeys"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    torch.save({0: torch.zeros(4, 4), Q0: torch.zeros(64, 64)}, folder / "pytorch_model.bin")
    return folder


@case("bin-sparse-tensor", f"tensor '{Q0}' is a torch.sparse_coo tensor; only dense tensors")
def _(post, tmp):
    folder = tmp / "sparse"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    torch.save({Q0: torch.eye(64).to_sparse()}, folder / "pytorch_model.bin")
    return folder


@case("index-shard-a-symlink-loop", "too many levels of symbolic links")
def _(post, tmp):
    shard = post / shard_of(post, Q0)
    shard.unlink()
    shard.symlink_to(shard.name)
    return post


@case("adapter-rank-contradicts-r", "adapter_config.json says r = 8 for 'model.layers.0.self_attn.q_proj'",
      "have rank 2")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", r=8)


@case("adapter-target-module-absent", "target module 'qq_proj' is adapted nowhere", "adapter_config.json")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", target_modules=["q_proj", "qq_proj"])


@case("adapter-alpha-nan", "lora_alpha 'nan' is not a finite number", "adapter_config.json")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", lora_alpha=float("nan"))


@case("adapter-alpha-huge", "lora_alpha '1e+300' is not a finite number", "adapter_config.json")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", lora_alpha=1e300)


@case("adapter-alpha-pattern-backtracks", "takes too long to match", "adapter_config.json")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", alpha_pattern={"(.|..)*j(?<=k)": 8})


@case("adapter-alpha-pattern-too-long", "is not a pattern of at most 512 characters")
def _(post, tmp):
    return adapter_folder(tmp / "adapter", alpha_pattern={"q" * 600: 8})


@case("path-component-over-name-max", "File name too long")
def _(post, tmp):
    return tmp / ("x" * 300) / "model"


@case("markup-in-a-path", "[/]broken[bold]", "path does not exist")
def _(post, tmp):
    return tmp / "[/]broken[bold]"


@case("ansi-escape-in-a-path", "\\x1b[31mred", "path does not exist")
def _(post, tmp):
    return tmp / "\x1b[31mred"


@case("ansi-escape-in-a-tensor-name", "\\x1b[2J", "is stored twice")
def _(post, tmp):
    folder = tmp / "ansi"
    folder.mkdir()
    shutil.copy(post / "config.json", folder)
    save_file({"w\x1b[2J.weight": torch.zeros(2, 2)}, folder / "a.safetensors")
    save_file({"w\x1b[2J.weight": torch.zeros(2, 2)}, folder / "b.safetensors")
    return folder


@pytest.mark.parametrize("name", list(CASES))
def test_bad_checkpoint_is_one_line(name, planted, tmp_path):
    build, fragments, base = CASES[name]
    post = build(shutil.copytree(planted[1], tmp_path / "post"), tmp_path)
    if base == "adapter":
        base, post = post, planted[1]
    elif base == "same":
        base = post
    line = compare_fails(base or planted[0], post, tmp_path / "out")
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert "weights_only=False" not in line
    assert not (tmp_path / "pwned").exists()  # no pickled code ever ran
    assert not (tmp_path / "out" / "metrics.parquet").exists()


def test_every_case_names_what_is_wrong():
    """A case that expected no words would pass on any one-line refusal: each names its fault."""
    vague = [name for name, (_, fragments, _) in CASES.items() if not fragments or min(map(len, fragments)) < 4]
    assert vague == []


def test_hub_id_offline_is_one_line(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    line = compare_fails(planted[0], "nobody/no-such-model@v1", tmp_path / "out")
    assert "cannot fetch hub id 'nobody/no-such-model' at revision 'v1'" in line


@pytest.mark.slow
def test_legacy_non_zip_bin_loads_with_weights_only(planted, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(planted[1] / "config.json", legacy)
    torch.save(all_tensors(planted[1]), legacy / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    ckpt = open_checkpoint(legacy)
    assert ckpt.format == "torch-bin" and torch.equal(ckpt.read(Q0), all_tensors(planted[1])[Q0])
    for out, post in (("a", legacy), ("b", planted[1])):
        result = runner.invoke(app, ["compare", str(planted[0]), str(post), "-o", str(tmp_path / out), "-q",
                                     "--no-report"])  # the tables are compared: no report needed
        assert result.exit_code == 0, result.output
    a, b = (pd.read_parquet(tmp_path / o / "metrics.parquet").drop(columns="post") for o in "ab")
    pd.testing.assert_frame_equal(a, b)


def test_hub_snapshot_links_to_blobs_are_allowed(planted, tmp_path):
    """The HF cache links snapshot files to ../../blobs: that is not an escape."""
    repo = tmp_path / "models--lab--tiny"
    snapshot = repo / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in planted[1].iterdir():
        shutil.copy(file, repo / "blobs" / file.name)
        (snapshot / file.name).symlink_to(Path("../../blobs") / file.name)
    ckpt = open_checkpoint(snapshot)
    assert torch.equal(ckpt.read(Q0), open_checkpoint(planted[1]).read(Q0))


def test_a_path_with_a_nul_byte_is_one_line():
    with pytest.raises(SourceError) as err:
        open_checkpoint("a\x00b")
    assert "a\x00b" in str(err.value) and "\n" not in str(err.value)


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(SourceError, match=r"model.safetensors is not a regular file \(a FIFO\)"):
        open_checkpoint(tmp_path / "model.safetensors")
