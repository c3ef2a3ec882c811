"""Each op on a planted pair gives exactly its formula (float64)."""

import math

import pytest
import torch

from orthoscope import metrics as m
from orthoscope.errors import OrthoscopeError
from orthoscope.interventions import apply_op, make_op
from orthoscope.interventions.ops import random_rotation
from orthoscope.kernels import svd
from orthoscope.lab.planted import near_identity_rotation

from tests.helpers import orthonormal


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    m_, n = 72, 48
    U = orthonormal(m_, n, g)
    V = orthonormal(n, n, g)
    S = 5 * torch.arange(1, n + 1, dtype=torch.float64) ** -0.5
    Q = near_identity_rotation(n, 0.03, g)
    W_b = (U * S) @ V.T
    W_p = U @ Q @ torch.diag(1.1 * S) @ Q.T @ V.T + 1e-3 * torch.randn(m_, n, generator=g, dtype=torch.float64)
    return W_b, W_p


def run(op, W_b, W_p, **kw):
    return apply_op(make_op(op, **kw), W_b, W_p, torch.Generator().manual_seed(1))


def same_subspaces(A, B):
    """Columns equal up to a sign each."""
    return torch.allclose((A * B).sum(0).abs(), torch.ones(A.shape[1], dtype=A.dtype), atol=1e-8)


def test_swap_sigma_gives_back_post_vectors_and_base_values(pair):
    W_b, W_p = pair
    new = svd(run("swap-sigma", W_b, W_p, scale=1.0))
    base, post = svd(W_b), svd(W_p)
    assert torch.allclose(new.S, base.S, atol=1e-8)
    assert same_subspaces(new.U, post.U) and same_subspaces(new.V, post.V)
    scaled = svd(run("swap-sigma", W_b, W_p, scale="auto"))
    a = m.a_geo(m.ratios(base.S, post.S))
    assert a == pytest.approx(1.1, abs=2e-3)
    assert torch.allclose(scaled.S, a * base.S, atol=1e-8)


def test_each_formula(pair):
    W_b, W_p = pair
    b, p = svd(W_b), svd(W_p)
    assert torch.allclose(run("base-vectors", W_b, W_p), (b.U * p.S) @ b.V.T, atol=1e-10)
    assert torch.allclose(run("break-left", W_b, W_p), (p.U * p.S) @ b.V.T, atol=1e-10)
    assert torch.allclose(run("break-right", W_b, W_p), (b.U * p.S) @ p.V.T, atol=1e-10)
    assert torch.allclose(run("temperature", W_b, W_p, scale=0.7), 0.7 * W_p, atol=1e-10)


def test_reconstruct_of_a_planted_consistent_pair_gives_it_back():
    g = torch.Generator().manual_seed(3)
    U = orthonormal(40, 40, g)
    V = orthonormal(40, 40, g)
    S = torch.linspace(3, 0.5, 40, dtype=torch.float64)
    Q = near_identity_rotation(40, 0.05, g)
    W_b = (U * S) @ V.T
    W_p = U @ Q @ torch.diag(1.1 * S) @ Q.T @ V.T
    assert torch.allclose(run("reconstruct", W_b, W_p), W_p, atol=1e-9)


def test_interpolation_ends_at_base_and_post(pair):
    W_b, W_p = pair
    square_b, square_p = W_b[:48], W_p[:48]  # square: the subspaces are kept exactly
    assert torch.allclose(run("interpolate", square_b, square_p, t=0.0), square_b, atol=1e-8)
    assert torch.allclose(run("interpolate", square_b, square_p, t=1.0), square_p, atol=1e-8)



def test_interpolation_midpoint_is_a_geodesic_for_near_identity_rotations():
    g = torch.Generator().manual_seed(4)
    U = orthonormal(40, 40, g)
    V = orthonormal(40, 40, g)
    S = torch.linspace(3, 0.5, 40, dtype=torch.float64)
    Q_U, Q_V = near_identity_rotation(40, 0.05, g), near_identity_rotation(40, 0.05, g)
    W_b, W_p = (U * S) @ V.T, U @ Q_U @ torch.diag(1.2 * S) @ Q_V.T @ V.T
    half = run("interpolate", W_b, W_p, t=0.5)
    assert torch.allclose(svd(half).S, math.sqrt(1.2) * S, atol=1e-10)
    expected = U @ torch.linalg.matrix_exp(0.5 * _log(Q_U)) @ torch.diag(math.sqrt(1.2) * S) \
        @ torch.linalg.matrix_exp(0.5 * _log(Q_V)).T @ V.T
    assert torch.allclose(half, expected, atol=1e-9)


def _log(Q):
    import scipy.linalg

    return torch.from_numpy(scipy.linalg.logm(Q.numpy()).real)


def test_break_random_matches_the_rotation_size(pair):
    W_b, W_p = pair
    b, p = svd(W_b), svd(W_p)
    Q_U, _ = m.fix_gauge(m.overlaps(b.U, p.U), m.overlaps(b.V, p.V), p.S, 1e-12)
    target = m.rotation_size(Q_U)
    R = random_rotation(48, target, torch.Generator().manual_seed(5))
    assert torch.allclose(R.T @ R, torch.eye(48, dtype=torch.float64), atol=1e-10)
    assert m.rotation_size(R) == pytest.approx(target, abs=1e-9)
    broken = svd(run("break-random", W_b, W_p))
    assert torch.allclose(broken.S, p.S, atol=1e-8) and same_subspaces(broken.U, p.U)


@pytest.mark.parametrize("args, message", [
    (("flip-all",), "unknown op 'flip-all'"),
    (("interpolate",), "op interpolate needs --t"),
    (("temperature", "auto"), "op temperature needs a numeric --scale"),
    (("swap-sigma", "-1"), "must be positive"),
    (("swap-sigma", "big"), "bad --scale 'big'"),
])
def test_bad_op_arguments(args, message):
    with pytest.raises(OrthoscopeError, match=message):
        make_op(*args)
