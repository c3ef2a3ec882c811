"""`orthoscope eval` below the lab: its options, a task suite of any origin, and the one model loader."""

import pytest
import torch

from orthoscope.errors import OrthoscopeError, SourceError
from orthoscope.evaluation import EvalOptions, evaluate_model, load_model
from orthoscope.evaluation.tasks import FixedSuite, Task
from orthoscope.lab.shipped import shipped_family
from orthoscope.lab.tasks import LAB_SUITE, LAB_TASKS


@pytest.mark.parametrize("settings, message", [
    ({}, "nothing to evaluate"),
    ({"tasks": ["lab-arith"]}, "unknown task 'lab-arith' (known: ppl:FILE)"),
    ({"tasks": ["lab-arith"], "suite": LAB_SUITE, "limit": 0}, "bad --limit 0"),
    ({"lm_eval": "arc_easy", "batch_size": 0}, "bad --batch-size 0"),
    ({"lm_eval": " , "}, "nothing to evaluate"),
    ({"tasks": ["ppl:"]}, "ppl: names no file"),
    ({"lm_eval": "arc_easy", "seed": -1}, "--seed must be an integer from 0 to"),
])
def test_each_bad_setting_is_refused_by_the_object(settings, message):
    with pytest.raises(OrthoscopeError) as caught:
        EvalOptions(**settings)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_suite_of_its_own_scores_as_the_labs(tmp_path):
    """The runner knows suites only by their shape: the lab's problems handed over as a fixed suite score
    exactly as the lab's suite does (same problems, same greedy answers, same n and interval)."""
    instruct = shipped_family()["instruct"]
    lab = LAB_SUITE.tasks(instruct, seed=0)["lab-facts"]
    problems = list(lab.problems(10))
    fixed = FixedSuite({"facts": Task(LAB_TASKS["lab-facts"], lambda limit: problems[:limit])})
    mine = evaluate_model(instruct, tasks=["facts"], limit=10, suite=fixed)
    labs = evaluate_model(instruct, EvalOptions(tasks=("lab-facts",), limit=10, suite=LAB_SUITE))
    assert {k.replace("facts", "lab-facts"): v for k, v in mine.items()} == labs
    assert mine["facts:n"] == 10 and 0 < mine["facts"] < 1  # the shipped instruct knows some facts, not all


@pytest.fixture
def gguf_file(tmp_path, monkeypatch):
    """A tiny llama as an F32 .gguf (llama.cpp's layout, with a tokenizer transformers can rebuild)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..sources.test_gguf import gguf, write_gguf

    token_list = gguf.GGUFWriter.add_token_list

    def with_scores(self, tokens):
        token_list(self, tokens)
        self.add_token_scores([0.0] * len(tokens))
        self.add_token_types([1] * len(tokens))

    monkeypatch.setattr(gguf.GGUFWriter, "add_token_list", with_scores)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config).eval()
    (tmp_path / "gguf").mkdir()
    write_gguf(tmp_path / "gguf" / "tiny.gguf", model, config, gguf.GGMLQuantizationType.F32)
    return tmp_path / "gguf" / "tiny.gguf", model


def test_one_loader_reads_a_gguf_file_its_folder_and_what_it_saves(gguf_file, tmp_path):
    path, reference = gguf_file
    for source in (path, path.parent):  # the file, or a folder holding exactly one .gguf
        model, tokenizer = load_model(source)
        assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), model.state_dict().values()))
    model.save_pretrained(tmp_path / "saved")  # the quantization marker is gone: it saves as safetensors
    tokenizer.save_pretrained(tmp_path / "saved")
    again, _ = load_model(tmp_path / "saved")
    assert torch.equal(again.lm_head.weight, reference.lm_head.weight)


def test_the_loader_names_the_option_and_the_source(tmp_path):
    with pytest.raises(SourceError, match=r"^--base no config.json in .* and 0 .gguf files: not a model folder$"):
        load_model(tmp_path, "--base")
    with pytest.raises(SourceError, match="no such file or folder"):
        load_model(tmp_path / "missing")
