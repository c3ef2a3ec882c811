"""Fuzzing (issue 26): random byte-level corruptions of safetensors headers, GGUF headers and
run-folder files, each fed to the CLI in-process. Every input ends in exit 0, or exit 2 with one
`error:` line; never exit 1 (a traceback) and never a hang (a per-input alarm).

Seeded and bounded: the same inputs every run, a few hundred in all, tens of seconds.
Set ORTHOSCOPE_FUZZ_ROUNDS to run more of them (e.g. 2000 before a release).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.reliability.in_process import cli

ROUNDS = int(os.environ.get("ORTHOSCOPE_FUZZ_ROUNDS", "100"))  # inputs per kind
SECONDS = 60  # per input: far above what one takes (a tiny model, 1-3 s on a loaded machine), far below a hang
CONFIG = {"model_type": "qwen2", "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_size": 16}
JSON_BYTES = b'{}[]":,-.0123456789eEtrufalsn \\'


def tiny_model(folder: Path, seed: int) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    generator = torch.Generator().manual_seed(seed)
    save_file({f"model.layers.0.self_attn.{p}_proj.weight": torch.randn(rows, 16, generator=generator)
               for p, rows in (("q", 16), ("k", 8))}, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def tiny_gguf(path: Path, seed: int) -> Path:
    gguf = pytest.importorskip("gguf")
    path.parent.mkdir()
    generator = torch.Generator().manual_seed(seed)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_tensor("blk.0.attn_q.weight", torch.randn(16, 16, generator=generator).numpy())
    writer.add_tensor("blk.0.attn_k.weight", torch.randn(8, 16, generator=generator).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def corrupt(data: bytes, end: int, rng: random.Random) -> bytes:
    """One random corruption of `data[:end]` (the header): flipped bits, random or JSON bytes written over,
    bytes inserted or deleted, or a cut."""
    raw = bytearray(data)
    at = rng.randrange(end)
    how = rng.choice(["flip", "overwrite", "json", "insert", "delete", "cut", "length"])
    if how == "flip":
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(end)] ^= 1 << rng.randrange(8)
    elif how == "overwrite":
        raw[at:at + 4] = bytes(rng.randrange(256) for _ in range(4))
    elif how == "json":
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(end)] = rng.choice(JSON_BYTES)
    elif how == "insert":
        raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif how == "delete":
        del raw[at:at + rng.randint(1, 8)]
    elif how == "cut":
        del raw[at:]
    else:  # a length or count field set to something extreme
        raw[at:at + 8] = struct.pack("<Q", rng.choice([0, 1, 2**31, 2**63 - 1, 2**64 - 1, len(data) * 3]))
    return bytes(raw)


def invoke(args: list) -> tuple[int, str]:
    return cli(*args, seconds=SECONDS)


def check(args: list, what: str) -> int:
    code, output = invoke(args)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code in (0, 2), f"{what}: exit {code}\n{output}"
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("error:"), f"{what}: {output}"
    return code


def fuzz(tmp: Path, original: Path, header_end: int, seed: int, command) -> dict[int, int]:
    """ROUNDS corruptions of `original`'s header, each written over a copy and run; returns the exit codes seen."""
    rng = random.Random(seed)
    data = original.read_bytes()
    codes: dict[int, int] = {}
    for i in range(ROUNDS):
        target = tmp / f"case{i}"
        shutil.copytree(original.parent, target)
        bad = corrupt(data, header_end, rng)
        (target / original.name).write_bytes(bad)
        code = check(command(target, i), f"input {i} of seed {seed} ({original.name}: {bad[:96]!r})")
        codes[code] = codes.get(code, 0) + 1
        shutil.rmtree(target)
    return codes


def test_corrupted_safetensors_headers(tmp_path):
    base, post = tiny_model(tmp_path / "base", 0), tiny_model(tmp_path / "post", 1)
    header_end = 8 + struct.unpack("<Q", (post / "model.safetensors").read_bytes()[:8])[0]
    codes = fuzz(tmp_path, post / "model.safetensors", header_end, seed=26,
                 command=lambda folder, i: ["compare", base, folder, "-o", tmp_path / f"out{i}", "-q", "--no-report",
                                            "--no-cache"])
    assert codes.get(2, 0) > ROUNDS // 2  # the corruptions mostly break the header: refused with one line


def test_corrupted_gguf_headers(tmp_path):
    from gguf import GGUFReader

    base, post = tiny_gguf(tmp_path / "base" / "m.gguf", 0), tiny_gguf(tmp_path / "post" / "m.gguf", 1)
    header_end = int(GGUFReader(post, "r").data_offset)
    codes = fuzz(tmp_path, post, header_end, seed=27,
                 command=lambda folder, i: ["compare", base, folder / "m.gguf", "-o", tmp_path / f"out{i}", "-q",
                                            "--no-report", "--no-cache"])
    assert codes.get(2, 0) > ROUNDS // 4


RUN_FILES = ["run.json", "summary.json", "metrics.parquet", "parts/post/model.layers.0.self_attn.q_proj.weight.json"]


def test_corrupted_run_folder_files(tmp_path):
    base, post = tiny_model(tmp_path / "base", 0), tiny_model(tmp_path / "post", 1)
    run = tmp_path / "run"
    assert check(["compare", base, f"post={post}", "-o", run, "-q", "--no-report", "--no-cache"], "the run") == 0
    rng = random.Random(28)
    seen = {0: 0, 2: 0}
    for i in range(ROUNDS):
        name = RUN_FILES[i % len(RUN_FILES)]
        target = shutil.copytree(run, tmp_path / f"case{i}")
        data = (run / name).read_bytes()
        (target / name).write_bytes(corrupt(data, len(data), rng))
        what = f"input {i} ({name})"
        seen[check(["summary", target], what)] += 1
        if name != "summary.json" and name != "metrics.parquet":  # resume reads run.json and the parts
            seen[check(["compare", base, f"post={post}", "-o", target, "-q", "--no-report", "--no-cache"], what)] += 1
        shutil.rmtree(target)
    assert seen[2] > 0 and seen[0] > 0
