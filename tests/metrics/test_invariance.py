"""SPEC: every metric is invariant under the gauge of the SVD (common signs, degenerate blocks)."""

import math

import numpy as np
import pytest
import torch

from orthoscope.kernels import SVD, svd
from orthoscope.lab.planted import near_identity_rotation
from orthoscope.metrics import a_fro, one_svd_form, overlaps
from orthoscope.metrics.columns import Angles, PairingDraws, Rotation, Scaling, Symmetry
from orthoscope.metrics.nulls import SignDraws
from tests.helpers import orthonormal


def degenerate_pair(seed: int):
    """Base and post whose spectra have an exactly degenerate block at indices 3..6."""
    g = torch.Generator().manual_seed(seed)
    m, n = 48, 32
    S = torch.linspace(5, 1, n, dtype=torch.float64)
    S[3:7] = S[3]
    U = orthonormal(m, n, g)
    V = orthonormal(n, n, g)
    Q = near_identity_rotation(n, 0.03, g)
    U_p = U @ Q + 0.01 * orthonormal(m, n, g)
    U_p = torch.linalg.qr(U_p)[0] * torch.sign(torch.diag(torch.linalg.qr(U_p)[1]))
    V_p = V @ near_identity_rotation(n, 0.03, g) @ Q
    base = SVD(U, S, V)
    post = SVD(U_p, 1.1 * S, V_p)
    return base, post, g


def symmetry_metrics(D: torch.Tensor, s_b: torch.Tensor, a: float) -> dict:
    """The symmetry stage and p_pair (sign draws seeded 0)."""
    symmetry = Symmetry(D, s_b, a)
    return {**symmetry.row(), **PairingDraws(symmetry, SignDraws(np.random.default_rng(0))).row()}


def all_metrics(base: SVD, post: SVD) -> dict:
    """Every column of the full route, D from the Q form, and the sign-free ones from the exact dW as well."""
    W_p = post.U @ torch.diag(post.S) @ post.V.T
    W_b = base.U @ torch.diag(base.S) @ base.V.T
    Q_U, Q_V = overlaps(base.U, post.U), overlaps(base.V, post.V)
    row = {"a_fro": a_fro(base.S, post.S), **Scaling(base.S, post.S).row()}
    a = row["a_fro"]
    row.update(Rotation(Q_U, Q_V, post.S, base.S).row())
    row.update(Angles((base.U, base.V), (post.U, post.V)).row())
    D_q = (Q_U * post.S) @ Q_V.T - a * torch.diag(base.S)
    row.update(symmetry_metrics(D_q, base.S, a))
    D = one_svd_form(base.U, W_p - W_b, base.V) - (a - 1) * torch.diag(base.S)
    one_svd = symmetry_metrics(D, base.S, a)
    row.update({f"{name}_one_svd": value for name, value in one_svd.items()})
    return row


def test_one_svd_route_equals_the_q_form():
    """M = U_b^T W_p V_b (one-SVD route) and Q_U S_p Q_V^T (full route) give the same asym and sym_frac."""
    base, post, _ = degenerate_pair(3)
    row = all_metrics(base, post)
    assert row["asym_one_svd"] == pytest.approx(row["asym"], abs=1e-12)
    assert row["sym_frac_one_svd"] == pytest.approx(row["sym_frac"], abs=1e-12)
    for name in ("z_pair", "p_pair", "z_gauss", "sym_frac_pair_null", "sym_frac_top", "z_pair_top"):
        assert row[f"{name}_one_svd"] == pytest.approx(row[name], rel=1e-9), name
    assert 0.01 < row["asym"] < 0.5


def assert_same(a: dict, b: dict) -> None:
    assert all(math.isfinite(v) for v in a.values())  # every column is defined here (no NaN to hide behind)
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-9 if key.startswith("pa_") else 1e-12), key


def flip(X: torch.Tensor, columns: list[int]) -> torch.Tensor:
    X = X.clone()
    X[:, columns] *= -1
    return X


def test_sign_flips_of_post_pairs_change_nothing():
    base, post, _ = degenerate_pair(0)
    flipped = SVD(flip(post.U, [0, 5, 17]), post.S, flip(post.V, [0, 5, 17]))
    assert_same(all_metrics(base, post), all_metrics(base, flipped))


def test_sign_flips_of_base_pairs_change_nothing():
    base, post, _ = degenerate_pair(1)
    flipped = SVD(flip(base.U, [1, 2, 30]), base.S, flip(base.V, [1, 2, 30]))
    assert_same(all_metrics(base, post), all_metrics(flipped, post))


def test_rotation_inside_a_degenerate_post_block_changes_nothing():
    base, post, g = degenerate_pair(2)
    R = orthonormal(4, 4, g)
    U, V = post.U.clone(), post.V.clone()
    U[:, 3:7] = U[:, 3:7] @ R
    V[:, 3:7] = V[:, 3:7] @ R
    reference = all_metrics(base, post)
    rotated = all_metrics(base, SVD(U, post.S, V))
    assert_same(reference, rotated)
    assert reference["rot"] > 0.01


def test_the_gauge_matters_without_the_fix():
    """The test above can fail: a one-sided block rotation does change the metrics."""
    base, post, g = degenerate_pair(3)
    R = orthonormal(4, 4, g)
    U = post.U.clone()
    U[:, 3:7] = U[:, 3:7] @ R
    assert all_metrics(base, SVD(U, post.S, post.V))["incons"] > all_metrics(base, post)["incons"] + 1e-3


def test_svd_of_a_wide_matrix_returns_factors_of_that_matrix():
    W = torch.randn(20, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    f = svd(W)
    assert f.U.shape == (20, 20) and f.V.shape == (50, 20)
    assert torch.allclose(f.U @ torch.diag(f.S) @ f.V.T, W, atol=1e-12)
    assert torch.allclose(f.S, torch.linalg.svdvals(W), atol=1e-12)
