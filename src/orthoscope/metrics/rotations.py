"""Rotations of the singular vectors and whether the left and right ones agree.

A singular pair is defined up to a common sign (and a common rotation inside an
exactly degenerate block), which acts on the same columns of Q_U and Q_V; every
function here is invariant under (Q_U, Q_V) -> (Q_U R, Q_V R), or fixes the gauge
explicitly with `fix_gauge` first.
"""

from __future__ import annotations

import math

import torch

from orthoscope.metrics.scaling import RHO_FLOOR

# Singular values at or below RANK_RTOL * s_1 span the null space (numerical rank: those above it), the
# same rule as scaling's; its singular vectors are any basis of it, so columns reading them are undefined.
RANK_RTOL = RHO_FLOOR
# Post singular values equal within GAUGE_RTOL * s_p,1 form one degenerate block for `fix_gauge`
# in `rot`. The same tolerance in every precision (a float32 SVD resolves singular values to
# about 1e-7 s_1), so the blocks, and rot, do not depend on the working dtype.
GAUGE_RTOL = 1e-5


def overlaps(U_b: torch.Tensor, U_p: torch.Tensor) -> torch.Tensor:
    """Q = X_b^T X_p (r x r): Q_U from left vectors, Q_V from right vectors."""
    return U_b.T @ U_p


def inconsistency(Q_U: torch.Tensor, Q_V: torch.Tensor) -> float:
    """incons = ||Q_U - Q_V||_F / (2 sqrt r), in [0, 1]; 0 when both sides rotate alike."""
    return inconsistency_of(Q_U - Q_V)


def inconsistency_of(difference: torch.Tensor) -> float:
    """incons = ||Q_U - Q_V||_F / (2 sqrt r) from the difference Q_U - Q_V (`inconsistency`, for a caller that
    holds the difference already)."""
    return (torch.linalg.matrix_norm(difference) / (2 * math.sqrt(difference.shape[1]))).item()


def coherence(Q_U: torch.Tensor, Q_V: torch.Tensor) -> float:
    """coherence = tr(Q_U^T Q_V) / r; 1 when Q_U = Q_V is orthogonal."""
    return ((Q_U * Q_V).sum() / Q_U.shape[1]).item()


def fix_gauge(Q_U: torch.Tensor, Q_V: torch.Tensor, s_p: torch.Tensor,
              rtol: float = GAUGE_RTOL) -> tuple[torch.Tensor, torch.Tensor]:
    """Fix the post-side gauge: make each diagonal block of Q_U symmetric PSD.

    For every block of post singular values equal within rtol * s_p,1 (a single
    index when they are distinct) the same orthogonal R_blk = polar(Q_U[blk, blk]^T)
    multiplies the block's columns of Q_U and Q_V. For a single index this is the
    sign convention diag(Q_U) >= 0, flipping the same column of Q_V; for a
    degenerate block it removes the arbitrary rotation the SVD chose inside it.
    """
    degenerate = [(start, stop) for start, stop in _blocks(s_p, rtol) if stop - start > 1]
    single = torch.ones(Q_U.shape[1], dtype=torch.bool, device=Q_U.device)
    for start, stop in degenerate:
        single[start:stop] = False
    # singletons (nearly every index) in one vectorised sign flip; degenerate blocks one by one
    signs = torch.where(single & (torch.diagonal(Q_U) < 0), -1.0, 1.0).to(Q_U.dtype)
    Q_U, Q_V = Q_U * signs, Q_V * signs
    for start, stop in degenerate:
        A, _, Bh = torch.linalg.svd(Q_U[start:stop, start:stop].T)
        R = A @ Bh
        Q_U[:, start:stop] = Q_U[:, start:stop] @ R
        Q_V[:, start:stop] = Q_V[:, start:stop] @ R
    return Q_U, Q_V


def _blocks(s: torch.Tensor, rtol: float) -> list[tuple[int, int]]:
    gaps = (s[:-1] - s[1:]).abs() > rtol * s[0].abs().clamp(min=torch.finfo(s.dtype).tiny)
    cuts = [0] + (torch.nonzero(gaps).flatten() + 1).tolist() + [s.numel()]
    return list(zip(cuts[:-1], cuts[1:]))


def rotation_size(Q_U_fixed: torch.Tensor) -> float:
    """rot = ||Q_U - I||_F / (2 sqrt r) on the gauge-fixed Q_U (see `fix_gauge`).

    >>> rotation_size(torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64))  # ||Q - I||_F = 2
    0.7071067811865475
    """
    r = Q_U_fixed.shape[1]
    shifted = Q_U_fixed.clone()
    shifted.diagonal().sub_(1)  # Q - I without an identity matrix: the same values
    return (torch.linalg.matrix_norm(shifted) / (2 * math.sqrt(r))).item()


def leak(Q: torch.Tensor) -> float:
    """leak = ||Q^T Q - I||_F / sqrt r: how far the post vectors left the base subspace.

    >>> leak(torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=torch.float64))  # Q^T Q - I = diag(0, -0.75)
    0.5303300858899106
    """
    r = Q.shape[1]
    gram = Q.T @ Q
    gram.diagonal().sub_(1)
    return (torch.linalg.matrix_norm(gram) / math.sqrt(r)).item()


def intruders(Q_U: torch.Tensor, k: int = 10, eps: float = 0.5) -> int:
    """Count of the top-k post left vectors u_p,i with max_j |u_b,j . u_p,i| < eps.

    Intruder dimensions (Shuttleworth et al. 2024): new directions among the
    leading ones, unlike every base vector. Column i of Q_U holds those cosines.
    """
    k = min(k, Q_U.shape[1])
    return int((Q_U[:, :k].abs().amax(dim=0) < eps).sum().item())


GAP_MIN = 0.05  # relative gap to both neighbours for a pair to count in incons_gap


def separated_pairs(s: torch.Tensor, min_gap: float = GAP_MIN) -> torch.Tensor:
    """Indices i whose relative gap to both neighbours, |s_i - s_j| / s_i, exceeds `min_gap`.

    >>> separated_pairs(torch.tensor([10.0, 5.0, 4.9, 1.0])).tolist()
    [0, 3]
    """
    s = s.double()
    gaps = (s[:-1] - s[1:]).abs()
    inf = torch.full((1,), torch.inf, dtype=s.dtype, device=s.device)
    nearest = torch.minimum(torch.cat([inf, gaps]), torch.cat([gaps, inf]))
    keep = (nearest > min_gap * s.abs()) & (s > 0)
    return torch.nonzero(keep).flatten()


def inconsistency_gap(Q_U: torch.Tensor, Q_V: torch.Tensor, s_b: torch.Tensor, min_gap: float = GAP_MIN) -> float:
    """incons restricted to well-separated pairs: ||Q_U[:, I] - Q_V[:, I]||_F / (2 sqrt |I|).

    I holds the indices whose relative gap in the base spectrum `s_b` to both
    neighbours exceeds `min_gap` (first-order theory amplifies the shared part
    of a rotation by 1 / gap, so small gaps make any update look consistent).
    NaN if no index qualifies.
    """
    return inconsistency_gap_of(Q_U - Q_V, s_b, min_gap)


def inconsistency_gap_of(difference: torch.Tensor, s_b: torch.Tensor, min_gap: float = GAP_MIN) -> float:
    """incons_gap = ||(Q_U - Q_V)[:, I]||_F / (2 sqrt |I|) from the difference Q_U - Q_V, I the well-separated
    indices of `s_b` (`inconsistency_gap`, for a caller that holds the difference `incons` reads too)."""
    idx = separated_pairs(s_b, min_gap).to(difference.device)
    if idx.numel() == 0:
        return math.nan
    return (torch.linalg.matrix_norm(difference[:, idx]) / (2 * math.sqrt(idx.numel()))).item()


def numerical_rank(s: torch.Tensor, rtol: float = RANK_RTOL) -> int:
    """The number of singular values above `rtol * s_1` (`s` descending; 0 for a zero matrix).

    >>> numerical_rank(torch.tensor([3.0, 1.0, 2e-6, 0.0])), numerical_rank(torch.zeros(3))
    (2, 0)
    """
    if s.numel() == 0 or not s[0] > 0:
        return 0
    return int((s.double() > rtol * s[0].double()).sum().item())


def undefined_vectors(s_b: torch.Tensor, s_p: torch.Tensor | None) -> tuple[frozenset[str], str]:
    """Which families of columns are undefined because a side is numerically rank-deficient, and a note.

    A singular value at or below RANK_RTOL * s_1 belongs to the null space, whose singular vectors are
    any orthonormal basis of it, chosen apart on the left and the right: every column that reads the
    base's vectors (rotations, angles, and the symmetry of D = U_b^T dW V_b with its nulls) is undefined
    when the base's numerical rank is below r = min(m, n); the rotations and angles are, when the post's is.
    Returns (families, note); (empty, "") when both ranks are full.

    >>> families, note = undefined_vectors(torch.tensor([2.0, 0.0, 0.0]), torch.tensor([2.0, 0.5, 0.1]))
    >>> sorted(families), note.split(":")[0]
    (['angles', 'nulls', 'rotation', 'symmetry'], 'base has numerical rank 1 < r = 3 (s_i > 1e-6 s_1)')
    >>> undefined_vectors(torch.tensor([2.0, 1.0]), torch.tensor([2.0, 1.0]))
    (frozenset(), '')
    """
    r, rule = s_b.numel(), f"s_i > {RANK_RTOL:.0e} s_1".replace("e-0", "e-")
    rank_b = numerical_rank(s_b)
    if rank_b < r:
        return (frozenset({"rotation", "angles", "symmetry", "nulls"}),
                f"base has numerical rank {rank_b} < r = {r} ({rule}): its singular vectors past {rank_b} "
                "are arbitrary; rotation, angle, symmetry and null columns NaN")
    rank_p = numerical_rank(s_p) if s_p is not None else r
    if rank_p < r:
        return (frozenset({"rotation", "angles"}),
                f"post has numerical rank {rank_p} < r = {r} ({rule}): its singular vectors past {rank_p} "
                "are arbitrary; rotation and angle columns NaN")
    return frozenset(), ""
