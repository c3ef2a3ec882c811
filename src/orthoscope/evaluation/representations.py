"""Inside the model: attention entropy per layer (the temperature claim) and linear CKA."""

from __future__ import annotations

import torch


def _batch(tokenizer, texts: list[str], max_length: int) -> dict:
    tokenizer.padding_side = "right"
    return tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)


@torch.no_grad()
def attention_entropy(model, tokenizer, texts: list[str], max_length: int = 128) -> list[float]:
    """Mean entropy (nats) of the attention distributions, per layer.

    H = -sum_j p_ij log p_ij for each head and each real (non-pad) query position i,
    averaged. Scaling W_q by a_q and W_k by a_k multiplies the logits by a_q a_k:
    a factor above 1 sharpens attention (lower H), below 1 flattens it. The model's
    attention implementation is switched to eager for this call only.
    """
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # sdpa returns no attention weights
    try:
        enc = _batch(tokenizer, texts, max_length)
        attentions = model(**enc, output_attentions=True).attentions
    finally:  # the model's other uses (generation) keep their attention code path
        model.set_attn_implementation(previous)
    mask = enc["attention_mask"].bool()
    entropies = []
    for layer in attentions:  # (batch, heads, query, key)
        h = -(layer * torch.log(layer.clamp(min=1e-12))).sum(-1)
        entropies.append(h.permute(0, 2, 1)[mask].mean().item())
    return entropies


@torch.no_grad()
def hidden_states(model, tokenizer, texts: list[str], max_length: int = 128) -> list[torch.Tensor]:
    """Per layer (embeddings first), the hidden states of all real tokens: (tokens, hidden)."""
    enc = _batch(tokenizer, texts, max_length)
    states = model(**enc, output_hidden_states=True).hidden_states
    mask = enc["attention_mask"].bool()
    return [s[mask].double() for s in states]


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F), X_c, Y_c column-centred.

    1 for representations equal up to rotation and isotropic scaling; rows of X and
    Y are the same inputs (Kornblith et al. 2019).

    >>> X = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> Q = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    >>> round(linear_cka(X, 3 * X @ Q), 9)
    1.0
    """
    X = X - X.mean(0, keepdim=True)
    Y = Y - Y.mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(Y.T @ X) ** 2
    return (cross / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y))).item()
