"""SmallLlama against transformers' LlamaForCausalLM on the shipped model: every score bit for bit."""

import json
import shutil

import pytest
import torch

from orthoscope.evaluation.exact_match import generate
from orthoscope.evaluation.models import load_for_scoring, load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.representations import attention_entropy, hidden_states
from orthoscope.evaluation.small_llama import SmallLlama, load_small_llama
from orthoscope.lab.shipped import shipped_family

PROMPTS = ["The colour of Zorvin is", "12 + 30 =", "Q: What is 7 + 5?\nA:", "The small cat sees a"]
TEXT = "The colour of Zorvin is red.\n12 + 30 = 42.\nThe small cat sees a dog.\nWhat is 3 + 4? Answer: 7.\n" * 6


@pytest.fixture(scope="module")
def pair(one_torch_thread):
    """(transformers' model and tokenizer, the small ones) of the shipped instruct model."""
    folder = shipped_family()["instruct"]
    return load_model(folder), load_small_llama(folder)


def test_parameters_carry_transformers_names_and_values(pair):
    (hf, _), (small, _) = pair
    theirs, ours = dict(hf.named_parameters()), dict(small.named_parameters())
    assert list(theirs) == list(ours)  # patching addresses the same tensors by the same names
    assert all(torch.equal(theirs[name], ours[name]) for name in theirs)


def test_logits_perplexity_and_tokens_are_identical(pair):
    (hf, hf_tok), (small, tok) = pair
    assert perplexity(small, tok, TEXT, block=16) == perplexity(hf, hf_tok, TEXT, block=16)
    for side in ("left", "right"):
        hf_tok.padding_side = tok.padding_side = side
        ours = tok(PROMPTS, return_tensors="pt", padding=True)
        theirs = hf_tok(PROMPTS, return_tensors="pt", padding=True)
        assert all(torch.equal(ours[key], theirs[key]) for key in ("input_ids", "attention_mask"))
        with torch.no_grad():
            assert torch.equal(small(**ours).logits, hf(**theirs).logits)
    assert tok(TEXT)["input_ids"] == hf_tok(TEXT)["input_ids"]


@pytest.mark.parametrize("prompts", [PROMPTS, PROMPTS[:1]], ids=["padded", "one"])  # the masked and the unmasked path
def test_greedy_generation_is_identical(pair, prompts):
    (hf, hf_tok), (small, tok) = pair
    hf_tok.padding_side = tok.padding_side = "left"
    newline = tok.convert_tokens_to_ids("\n")
    assert newline == hf_tok.convert_tokens_to_ids("\n")
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = hf.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=hf_tok.pad_token_id,
                             eos_token_id=newline)
    ours = small.generate(**enc, max_new_tokens=12, pad_token_id=tok.pad_token_id, eos_token_id=newline)
    assert torch.equal(ours, theirs)
    assert generate(small, tok, prompts, 12) == generate(hf, hf_tok, prompts, 12)


def test_attentions_and_hidden_states_are_identical(pair):
    (hf, hf_tok), (small, tok) = pair
    assert attention_entropy(small, tok, PROMPTS) == attention_entropy(hf, hf_tok, PROMPTS)
    assert small.config._attn_implementation == "sdpa"  # put back after the eager pass
    ours, theirs = hidden_states(small, tok, PROMPTS), hidden_states(hf, hf_tok, PROMPTS)
    assert len(ours) == len(theirs) == 4 and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_anything_but_a_plain_llama_goes_to_transformers(tmp_path):
    shipped = shipped_family()["instruct"]
    assert isinstance(load_for_scoring(shipped)[0], SmallLlama)
    for change in [{"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
                   {"model_type": "qwen2"}, {"attention_bias": True}, {"hidden_act": "gelu"},
                   {"tie_word_embeddings": False}]:  # untied, yet no lm_head.weight in the file
        folder = tmp_path / next(iter(change))
        shutil.copytree(shipped, folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        assert load_small_llama(folder) is None, change
    folder = tmp_path / "tokenizer"
    shutil.copytree(shipped, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "tokenizer_class": "X"}))
    assert load_small_llama(folder) is None
    assert load_small_llama(tmp_path / "missing") is None
