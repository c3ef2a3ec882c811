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
    """Principal angles (radians, ascending) between span(X) and span(Y), accurate for small angles.

    X, Y have orthonormal columns (e.g. the top-k singular vectors). The cosines
    are the singular values of X^T Y; small angles are read from their sines,
    the singular values of Y - X X^T Y (as scipy.linalg.subspace_angles does),
    since arccos near 1 loses half the digits. Arithmetic in float64.

    >>> X = torch.eye(3, 1, dtype=torch.float64)
    >>> Y = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64) / 2 ** 0.5
    >>> round(torch.rad2deg(principal_angles(X, Y)).item(), 6)
    45.0
    """
    X, Y = X.double(), Y.double()
    C = X.T @ Y
    cos = torch.linalg.svdvals(C).clamp(max=1.0)
    sin = torch.linalg.svdvals(Y - X @ C).clamp(max=1.0).flip(0)
    return torch.where(cos.square() < 0.5, torch.arccos(cos), torch.arcsin(sin))


def coordinate_angles(Y: torch.Tensor) -> torch.Tensor:
    """`principal_angles(I[:, :k], Y)` for Y m x k (orthonormal columns): the angles between span(Y) and the first
    k coordinate axes, without the products with the identity (X^T Y is Y's first k rows, and Y - X X^T Y is Y
    with those rows zeroed: both exact), so the same numbers bit for bit.

    >>> Y = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64) / 2 ** 0.5
    >>> round(torch.rad2deg(coordinate_angles(Y)).item(), 6)
    45.0
    """
    Y = Y.double()
    k = Y.shape[1]
    cos = torch.linalg.svdvals(Y[:k]).clamp(max=1.0)
    rest = Y.clone()
    rest[:k] = 0.0
    sin = torch.linalg.svdvals(rest).clamp(max=1.0).flip(0)
    return torch.where(cos.square() < 0.5, torch.arccos(cos), torch.arcsin(sin))
