"""Perplexity in batched blocks equals the block-by-block definition, computed independently."""

import importlib
import math

import pytest
import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.perplexity import perplexity

perplexity_module = importlib.import_module("orthoscope.evaluation.perplexity")  # the package exports the function


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def instruct():
    from orthoscope.evaluation import load_model
    from orthoscope.lab.shipped import shipped_family

    return load_model(shipped_family()["instruct"])


@torch.no_grad()
def one_block_at_a_time(model, tokenizer, text: str, block: int) -> float:
    """The definition: each block of `block` predicted tokens scored alone, log-softmax picked by hand."""
    ids = tokenizer(text)["input_ids"]
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, block):
        chunk = torch.tensor(ids[start : start + block + 1])
        log_p = torch.log_softmax(model(input_ids=chunk[:-1].unsqueeze(0)).logits[0].double(), dim=-1)
        nll -= float(log_p[torch.arange(len(chunk) - 1), chunk[1:]].sum())
        count += len(chunk) - 1
    return math.exp(nll / count)


TEXT = "".join(f"The colour of Zorvin is red.\n{a} + {a + 3} = {2 * a + 3}.\n" for a in range(12))


@pytest.mark.parametrize(("block", "rows"), [(32, None), (32, 3), (64, 1), (1000, None)])
def test_batched_blocks_equal_the_block_by_block_definition(instruct, monkeypatch, block, rows):
    """Full blocks and a remainder, in one pass (the lab's vocabulary) or a few rows per pass; one short block."""
    model, tokenizer = instruct
    if rows is not None:
        monkeypatch.setattr(perplexity_module, "LOGITS_PER_FORWARD", rows * block * model.config.vocab_size)
    expected = one_block_at_a_time(model, tokenizer, TEXT, block)
    predicted = len(tokenizer(TEXT)["input_ids"]) - 1
    assert predicted % block != 0 and (predicted > 2 * block or block > predicted)  # a remainder after blocks
    assert perplexity(model, tokenizer, TEXT, block=block) == pytest.approx(expected, rel=1e-5)
    assert expected > 1.5  # a real prediction task, not a constant


def test_fewer_than_two_tokens_is_refused(instruct):
    model, tokenizer = instruct
    with pytest.raises(OrthoscopeError, match="fewer than two tokens"):
        perplexity(model, tokenizer, "a", block=8)
