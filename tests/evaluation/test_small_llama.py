"""SmallLlama against transformers' LlamaForCausalLM: every score bit for bit, and what it leaves to transformers."""

import json
import shutil

import pytest
import torch

from orthoscope.evaluation.exact_match import generate
from orthoscope.evaluation.models import load_for_scoring, load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.representations import attention_entropy, hidden_states
from orthoscope.evaluation.small_llama import SmallLlama, load_small_llama
from orthoscope.kernels.threads import torch_threads
from orthoscope.lab.shipped import shipped_family

PROMPTS = ["The colour of Zorvin is", "12 + 30 =", "Q: What is 7 + 5?\nA:", "The small cat sees a"]
TEXT = "The colour of Zorvin is red.\n12 + 30 = 42.\nThe small cat sees a dog.\nWhat is 3 + 4? Answer: 7.\n" * 6


CHECKPOINTS = {"shipped": 1, "shipped-2-threads": 2, "no-gqa": 1, "untied": 1}
"""The checkpoints the parity tests run on, with the torch thread count they run under."""


def small_checkpoint(folder, kv_heads: int, tied: bool):
    """A random 32-wide plain Llama made from_config by transformers, with the shipped tokenizer files."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, tie_word_embeddings=tied,
                         initializer_range=0.3, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(shipped_family()["instruct"] / name, folder / name)
    return folder


@pytest.fixture(scope="module", params=list(CHECKPOINTS))
def pair(request, tmp_path_factory):
    """(transformers' model and tokenizer, the small ones) of a checkpoint, the tests under its thread count."""
    if request.param.startswith("shipped"):
        folder = shipped_family()["instruct"]
    else:
        kv_heads = 4 if request.param == "no-gqa" else 2
        folder = small_checkpoint(tmp_path_factory.mktemp(request.param), kv_heads, tied=request.param != "untied")
    with torch_threads(CHECKPOINTS[request.param]):
        yield load_model(folder), load_small_llama(folder)


def test_the_checkpoints_are_what_they_are_named(pair, request):
    (hf, _), (small, _) = pair
    name = request.node.callspec.params["pair"]
    assert torch.get_num_threads() == CHECKPOINTS[name]
    assert (small.config.num_key_value_heads == small.config.num_attention_heads) == (name == "no-gqa")
    untied = small.lm_head.weight is not small.model.embed_tokens.weight
    assert untied == (name == "untied") == (hf.lm_head.weight is not hf.model.embed_tokens.weight)


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
    assert len(ours) == len(theirs) == small.config.num_hidden_layers + 1
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def _changed_copy(tmp_path, name: str, source=None, **files) -> object:
    """A copy of `source` (the shipped instruct model) with files rewritten: {name: dict to merge, or bytes}."""
    folder = tmp_path / name
    shutil.copytree(source or shipped_family()["instruct"], folder)
    for file, change in files.items():
        path = folder / file.replace("__", ".")
        if isinstance(change, bytes):
            path.write_bytes(change)
        else:
            path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    return folder


def test_anything_but_a_plain_llama_goes_to_transformers(tmp_path):
    shipped = shipped_family()["instruct"]
    assert isinstance(load_for_scoring(shipped)[0], SmallLlama)
    for change in [{"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
                   {"model_type": "qwen2"}, {"attention_bias": True}, {"hidden_act": "gelu"},
                   {"tie_word_embeddings": False}]:  # untied, yet no lm_head.weight in the file
        assert load_small_llama(_changed_copy(tmp_path, next(iter(change)), config__json=change)) is None, change
    assert load_small_llama(tmp_path / "missing") is None


@pytest.mark.parametrize("change", [{"add_bos_token": True}, {"tokenizer_class": "LlamaTokenizer"},
                                    {"tokenizer_class": "X"}, {"backend": "sentencepiece"},
                                    {"clean_up_tokenization_spaces": True},
                                    {"eos_token": {"content": "<eos>", "__type": "AddedToken"}},
                                    {"pad_token": {"content": "<pad>", "__type": "AddedToken"}}],
                         ids=lambda change: f"{next(iter(change))}={change[next(iter(change))]}")
def test_a_tokenizer_config_transformers_reads_otherwise_goes_to_transformers(tmp_path, change):
    """Each refused key alone (a LlamaTokenizer builds its own pre-tokenizer and decoder: other tokens)."""
    assert load_small_llama(_changed_copy(tmp_path, "tokenizer", tokenizer_config__json=change)) is None


@pytest.mark.parametrize("tokenizer_class", ["TokenizersBackend", "PreTrainedTokenizerFast", None])
def test_tokenizer_classes_that_use_tokenizer_json_as_it_is_stay_small(tmp_path, tokenizer_class):
    folder = _changed_copy(tmp_path, "tokenizer")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class")
    config.update({"tokenizer_class": tokenizer_class} if tokenizer_class else {})
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert isinstance(load_small_llama(folder)[0], SmallLlama)


@pytest.mark.parametrize("change", [{"repetition_penalty": 1.3}, {"no_repeat_ngram_size": 2},
                                    {"suppress_tokens": [5]}, {"bad_words_ids": [[5]]}, {"min_new_tokens": 3},
                                    {"use_cache": False}, {"num_beams": 2}, {"output_scores": 1}],
                         ids=lambda change: next(iter(change)))
def test_generation_defaults_that_change_answers_go_to_transformers(tmp_path, change):
    assert load_small_llama(_changed_copy(tmp_path, "generation", generation_config__json=change)) is None


def test_the_lab_generation_config_and_none_stay_small(tmp_path):
    shipped = shipped_family()["instruct"]
    lab = json.loads((shipped / "generation_config.json").read_text())
    assert set(lab) == {"_from_model_config", "bos_token_id", "eos_token_id", "output_attentions",
                        "output_hidden_states", "pad_token_id", "transformers_version", "use_cache"}
    assert isinstance(load_small_llama(shipped)[0], SmallLlama)
    folder = _changed_copy(tmp_path, "no-generation")
    (folder / "generation_config.json").unlink()
    assert isinstance(load_small_llama(folder)[0], SmallLlama)


def test_untied_config_without_the_key_reads_lm_head_as_transformers_does(tmp_path):
    """LlamaConfig's tie_word_embeddings defaults to False: a file's lm_head.weight is the output layer."""
    folder = small_checkpoint(tmp_path / "untied", kv_heads=2, tied=False)
    config = json.loads((folder / "config.json").read_text())
    config.pop("tie_word_embeddings", None)
    (folder / "config.json").write_text(json.dumps(config))
    (hf, _), (small, _) = load_model(folder), load_small_llama(folder)
    assert not hf.config.tie_word_embeddings
    assert torch.equal(small.lm_head.weight, hf.lm_head.weight)
    assert not torch.equal(small.lm_head.weight, small.model.embed_tokens.weight)


def test_damaged_files_go_to_transformers_for_its_one_line_error(tmp_path):
    shipped = shipped_family()["instruct"]
    weights = (shipped / "model.safetensors").read_bytes()
    half = weights[:len(weights) // 2]
    assert load_small_llama(_changed_copy(tmp_path, "truncated", model__safetensors=half)) is None
    assert load_small_llama(_changed_copy(tmp_path, "vocab", config__json={"vocab_size": 81})) is None
    assert load_small_llama(_changed_copy(tmp_path, "tokenizer", tokenizer__json=b'{"version": "1.0"')) is None
    assert load_small_llama(_changed_copy(tmp_path, "generation", generation_config__json=b"[")) is None


def test_transformers_before_5_goes_to_transformers(monkeypatch):
    """SmallLlama mirrors transformers 5's modelling code; an older release computes otherwise."""
    monkeypatch.setattr("importlib.metadata.version", lambda name: "4.57.1")
    assert load_small_llama(shipped_family()["instruct"]) is None
