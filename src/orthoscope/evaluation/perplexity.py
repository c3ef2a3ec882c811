"""Perplexity of a causal LM on text, in non-overlapping blocks."""

from __future__ import annotations

import math

import torch

from orthoscope.errors import OrthoscopeError

LOGITS_PER_FORWARD = 2**24
"""Most logits one forward pass may hold (64 MiB in float32): how many blocks are scored at once."""


@torch.no_grad()
def perplexity(model, tokenizer, text: str, block: int = 128) -> float:
    """exp(mean token negative log-likelihood) over blocks of `block` tokens.

    Each block is scored on its own (no context carried over), so the number
    depends only on the model and the text. Full blocks go through the model
    several at a time (as many as `LOGITS_PER_FORWARD` allows for the
    vocabulary: all of a small model's text in one pass), the remainder on its own.
    A text of fewer than two tokens is refused (there is nothing to predict).

    >>> from orthoscope.evaluation import load_model
    >>> from orthoscope.lab.shipped import shipped_family
    >>> model, tok = load_model(shipped_family()["instruct"])
    >>> 1.0 < perplexity(model, tok, "The colour of Zorvin is red.\\n12 + 30 = 42.\\n") < 100.0
    True
    """
    ids = torch.tensor(tokenizer(text)["input_ids"], device=model.device)
    if len(ids) < 2:
        raise OrthoscopeError("the text for perplexity has fewer than two tokens: nothing to predict")
    full = (len(ids) - 1) // block
    inputs, targets = ids[: full * block].view(full, block), ids[1 : full * block + 1].view(full, block)
    rows = max(1, LOGITS_PER_FORWARD // (block * _vocabulary(model)))
    total = sum(_nll(model, inputs[start : start + rows], targets[start : start + rows])
                for start in range(0, full, rows))
    rest = ids[full * block :]
    if len(rest) >= 2:
        total += _nll(model, rest[:-1].unsqueeze(0), rest[1:].unsqueeze(0))
    return math.exp(total / (len(ids) - 1))


def _nll(model, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed negative log-likelihood of `targets` given `inputs` (rows scored independently)."""
    logits = model(input_ids=inputs).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()


def _vocabulary(model) -> int:
    """The width of the model's logits (its output embedding's rows; the config's vocab_size as fallback)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)
