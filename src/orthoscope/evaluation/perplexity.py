"""Perplexity of a causal LM on text, in non-overlapping blocks."""

from __future__ import annotations

import math

import torch

from orthoscope.errors import OrthoscopeError


@torch.no_grad()
def perplexity(model, tokenizer, text: str, block: int = 128) -> float:
    """exp(mean token negative log-likelihood) over blocks of `block` tokens.

    Each block is scored on its own (no context carried over), so the number
    depends only on the model and the text. A text of fewer than two tokens is
    refused (there is nothing to predict).

    >>> from orthoscope.evaluation import load_model
    >>> from orthoscope.lab.shipped import shipped_family
    >>> model, tok = load_model(shipped_family()["instruct"])
    >>> 1.0 < perplexity(model, tok, "The colour of Zorvin is red.\\n12 + 30 = 42.\\n") < 100.0
    True
    """
    ids = torch.tensor(tokenizer(text)["input_ids"], device=model.device)
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, block):
        chunk = ids[start : start + block + 1]
        if len(chunk) < 2:
            break
        logits = model(input_ids=chunk[:-1].unsqueeze(0)).logits[0]
        total += torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum").item()
        count += len(chunk) - 1
    if count == 0:
        raise OrthoscopeError("the text for perplexity has fewer than two tokens: nothing to predict")
    return math.exp(total / count)
