"""The interventions of SPEC.md, one pure function per op, on SVD factors (float64).

Each op builds one new matrix from the thin SVDs of a base and a post matrix:

    swap-sigma     U_p (c S_b) V_p^T
    base-vectors   U_b S_p V_b^T
    break-left     U_p S_p V_b^T
    break-right    U_b S_p V_p^T
    break-random   U_p S_p (V_p R)^T, R random orthogonal with ||R - I||_F / (2 sqrt r) = rot
    reconstruct    U_b Q_U (a S_b) Q_U^T V_b^T, Q_U = U_b^T U_p, a = a_geo
    interpolate t  U_b Q_U^t S(t) (Q_V^t)^T V_b^T, S(t) = S_b^(1-t) S_p^t, Q^t = expm(t logm Q)
    temperature c  U_p (c S_p) V_p^T
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch

from orthoscope import metrics as m
from orthoscope.kernels import SVD


def _compose(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    return (U * S) @ V.T


def swap_sigma(base: SVD, post: SVD, c: float = 1.0) -> torch.Tensor:
    """U_p (c S_b) V_p^T: the post's vectors with the base's singular values times c."""
    return _compose(post.U, c * base.S, post.V)


def base_vectors(base: SVD, post: SVD) -> torch.Tensor:
    """U_b S_p V_b^T: the rotation removed, the scaling kept."""
    return _compose(base.U, post.S, base.V)


def break_left(base: SVD, post: SVD) -> torch.Tensor:
    """U_p S_p V_b^T: only the left vectors rotated."""
    return _compose(post.U, post.S, base.V)


def break_right(base: SVD, post: SVD) -> torch.Tensor:
    """U_b S_p V_p^T: only the right vectors rotated."""
    return _compose(base.U, post.S, post.V)


def temperature(base: SVD, post: SVD, c: float) -> torch.Tensor:
    """U_p (c S_p) V_p^T = c W_p."""
    return _compose(post.U, c * post.S, post.V)


def random_rotation(r: int, size: float, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal R = expm(theta K) (K random skew) with ||R - I||_F / (2 sqrt r) = size.

    theta is found by bisection; `size` must lie below the largest value reachable
    (about 1/sqrt 2 for a generic K), else the closest reachable rotation is returned.
    """
    A = torch.randn(r, r, generator=generator, dtype=torch.float64)
    K = (A - A.T) / torch.linalg.matrix_norm(A - A.T)

    def rot(theta: float) -> float:
        R = torch.linalg.matrix_exp(theta * K)
        return (torch.linalg.matrix_norm(R - torch.eye(r, dtype=torch.float64)) / (2 * math.sqrt(r))).item()

    lo, hi = 0.0, 1.0
    while rot(hi) < size and hi < 1e4:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rot(mid) < size else (lo, mid)
    return torch.linalg.matrix_exp(hi * K)


def break_random(base: SVD, post: SVD, generator: torch.Generator) -> torch.Tensor:
    """U_p S_p (V_p R)^T with R random, its rotation size matched to the pair's rot."""
    Q_U, Q_V = m.fix_gauge(m.overlaps(base.U, post.U), m.overlaps(base.V, post.V), post.S, 1e-12)
    R = random_rotation(post.S.numel(), m.rotation_size(Q_U), generator).to(post.V)
    return _compose(post.U, post.S, post.V @ R)


def reconstruct(base: SVD, post: SVD, a: float | None = None) -> torch.Tensor:
    """U_b Q_U (a S_b) Q_U^T V_b^T with Q_U = U_b^T U_p and a = a_geo unless given."""
    if a is None:
        a = m.a_geo(m.ratios(base.S, post.S))
    Q_U = m.overlaps(base.U, post.U)
    return base.U @ Q_U @ torch.diag(a * base.S) @ Q_U.T @ base.V.T


def _orthogonal_power(Q: torch.Tensor, t: float) -> torch.Tensor:
    """Q^t = expm(t logm Q) for the nearest orthogonal matrix to Q (its polar factor).

    Computed from the complex Schur form Q = Z diag(lambda) Z^H (Q is normal):
    Q^t = Re(Z diag(lambda^t) Z^H) with the principal branch, so Q^0 = I and Q^1 = Q
    exactly; an eigenvalue at -1 (no real logarithm) follows the principal branch.
    """
    A, _, Bh = torch.linalg.svd(Q)
    polar = (A @ Bh).cpu().numpy()
    T, Z = scipy.linalg.schur(polar, output="complex")
    power = (Z * np.diag(T) ** t) @ Z.conj().T
    return torch.from_numpy(np.ascontiguousarray(np.real(power))).to(Q)


def interpolate(base: SVD, post: SVD, t: float) -> torch.Tensor:
    """U_b Q_U^t S(t) (Q_V^t)^T V_b^T, S(t) = S_b^(1-t) S_p^t: a geodesic from W_b (t=0).

    Q_U, Q_V are taken in the fixed gauge (diag(Q_U) >= 0) so that the path starts
    at the identity. For square matrices t=1 gives W_p exactly. For rectangular ones
    the post vectors of the long side may leave the base subspace (leak_u/leak_v > 0);
    Q is then replaced by its polar factor and t=1 gives W_p projected onto the base
    subspaces, as SPEC's formula implies.
    """
    Q_U, Q_V = m.fix_gauge(m.overlaps(base.U, post.U), m.overlaps(base.V, post.V), post.S, 1e-12)
    keep = base.S > 0
    S_t = torch.where(keep, base.S.clamp(min=1e-300) ** (1 - t) * post.S.clamp(min=1e-300) ** t, post.S * t)
    return base.U @ _orthogonal_power(Q_U, t) @ torch.diag(S_t) @ _orthogonal_power(Q_V, t).T @ base.V.T
