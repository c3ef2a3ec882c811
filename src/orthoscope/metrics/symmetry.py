"""One-SVD form and the delta-symmetry control (SPEC: One-SVD form, Delta symmetry)."""

from __future__ import annotations

import math

import torch


def one_svd_form(U_b: torch.Tensor, W: torch.Tensor, V_b: torch.Tensor) -> torch.Tensor:
    """M = U_b^T W V_b (r x r); equals Q_U S_p Q_V^T (W = U_p S_p V_p^T)."""
    W = W.to(U_b.dtype)
    # multiply the long side away first: 2 m n r + 2 r^3 flops instead of 4 m n r
    if W.shape[0] >= W.shape[1]:
        return (U_b.T @ W) @ V_b
    return U_b.T @ (W @ V_b)


def asym(M: torch.Tensor) -> float:
    """asym = ||M - M^T||_F / (sqrt 2 ||M||_F); 0 exactly when Q_U = Q_V.

    Invariant under base-side signs and degenerate-block rotations
    (M -> G^T M G). Returns 0 for M = 0.
    """
    norm = torch.linalg.matrix_norm(M)
    if norm == 0:
        return 0.0
    return (torch.linalg.matrix_norm(M - M.T) / (math.sqrt(2) * norm)).item()


def sym_frac(D: torch.Tensor) -> float:
    """sym_frac = ||(D + D^T)/2||_F^2 / ||D||_F^2 with D = U_b^T (W_p - a_fro W_b) V_b.

    In [0, 1]: rotation-invariant noise gives 0.5, a perfectly consistent rotation
    1.0, a one-sided rotation below 0.5. Returns 0.5 for D = 0 (no update: no
    evidence either way).
    """
    total = (D * D).sum()
    if total == 0:
        return 0.5
    sym = (D + D.T) / 2
    return ((sym * sym).sum() / total).item()
