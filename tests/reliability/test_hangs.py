"""Inputs that would hang or read without end (issue 26): FIFOs and devices where a text file is
expected, /dev/zero as a text, blocks longer than the model's context, adapter patterns that
backtrack without end. Each is one line and exit 2 within seconds (a 60 s alarm fails the case).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.lab.shipped import shipped_family

runner = CliRunner()


def refused_quickly(*args, needles=(), seconds: float = 60) -> str:
    def hung(*_):
        raise TimeoutError(f"orthoscope {' '.join(map(str, args))} hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(int(seconds))
    started = time.time()
    try:
        result = runner.invoke(app, [str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert time.time() - started < seconds
    return lines[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "text.fifo"
    os.mkfifo(path)
    return path


def model() -> str:
    return str(shipped_family()["base"])


@pytest.mark.parametrize("special, kind", [("/dev/zero", "a character device"), ("/dev/null", "a character device"),
                                           ("fifo", "a FIFO"), ("folder", "a folder")])
def test_a_special_file_as_text_is_refused_without_reading_it(tmp_path, fifo, special, kind):
    path = {"fifo": fifo, "folder": tmp_path}.get(special, special)
    family = shipped_family()
    refused_quickly("experiment", family["base"], family["instruct"], "-o", tmp_path / "exp", "-q", "--text", path,
                    needles=("--text", "is not a regular file", kind, str(path)))
    refused_quickly("eval", model(), "--task", f"ppl:{path}", needles=(f"ppl:{path}", kind))
    assert not (tmp_path / "exp").exists()


def test_ppl_with_an_empty_path_names_the_task(tmp_path):
    refused_quickly("eval", model(), "--task", "ppl:", needles=("ppl: names no file",))


def test_a_text_larger_than_a_sample_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    from orthoscope.evaluation import options as evaluation_options

    monkeypatch.setattr(evaluation_options, "MAX_TEXT_BYTES", 1000)
    text = tmp_path / "big.txt"
    text.write_text("word " * 1000)
    refused_quickly("eval", model(), "--task", f"ppl:{text}", needles=("larger than", str(text)))


@pytest.mark.parametrize("block", ["100000", "257"])
def test_lab_block_longer_than_the_context_is_refused(tmp_path, block):
    context = json.loads((shipped_family()["base"] / "config.json").read_text())["max_position_embeddings"]
    assert int(block) > context
    refused_quickly("lab", "--base", model(), "-o", tmp_path / "lab", "--recipe", "control", "--steps", "1",
                    "--block", block, "-q", needles=(f"bad --block {block}", f"({context} tokens)"))


def test_an_adapter_pattern_that_backtracks_is_refused_in_bounded_time(planted, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
        "alpha_pattern": {"q_proj": 4, "(?:(.)|(..))*(?(1)x|y)": 8}}))
    save_file({f"{module}.lora_A.weight": torch.randn(2, 64), f"{module}.lora_B.weight": torch.randn(64, 2)},
              adapter / "adapter_model.safetensors")
    refused_quickly("compare", planted[0], adapter, "-o", tmp_path / "r", "-q", "--no-report",
                    needles=("alpha_pattern key", "takes too long to match"), seconds=30)
