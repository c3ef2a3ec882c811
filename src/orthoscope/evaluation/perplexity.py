"""Perplexity of a causal LM on text, in non-overlapping blocks."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def perplexity(model, tokenizer, text: str, block: int = 128) -> float:
    """exp(mean token negative log-likelihood) over blocks of `block` tokens.

    Each block is scored on its own (no context carried over), so the number
    depends only on the model and the text.
    """
    ids = torch.tensor(tokenizer(text)["input_ids"])
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, block):
        chunk = ids[start : start + block + 1]
        if len(chunk) < 2:
            break
        logits = model(input_ids=chunk[:-1].unsqueeze(0)).logits[0]
        total += torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum").item()
        count += len(chunk) - 1
    return math.exp(total / count)
