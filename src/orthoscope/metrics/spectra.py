"""Summaries of one spectrum or one pair of subspaces."""

from __future__ import annotations

import torch


def stable_rank(s: torch.Tensor) -> float:
    """stable rank = ||W||_F^2 / ||W||_2^2 = sum_i s_i^2 / s_1^2 (0 for W = 0)."""
    s = s.double()
    return (s.square().sum() / s[0].square()).item() if s[0] > 0 else 0.0


def effective_rank(s: torch.Tensor) -> float:
    """effective rank = exp(H(p)), p_i = s_i / sum_j s_j (Roy & Vetterli 2007)."""
    s = s.double()
    total = s.sum()
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return torch.exp(-(p * torch.log(p)).sum()).item()


def principal_angles(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between span(X) and span(Y).

    X, Y have orthonormal columns (e.g. the top-k singular vectors); the cosines
    are the singular values of X^T Y.
    """
    cos = torch.linalg.svdvals(X.T @ Y).clamp(max=1.0)
    return torch.arccos(cos)
