"""Gauge first (SPEC, Interventions): the ops see the post factors in the base's gauge, never LAPACK's signs."""

import pytest
import torch

from orthoscope import metrics as m
from orthoscope.interventions import MatrixPair, apply_op, make_op
from orthoscope.interventions.geometry import compose, gauge_fixed, sign_flips
from orthoscope.kernels import SVD, svd
from orthoscope.lab.planted import near_identity_rotation
from tests.helpers import orthonormal

SHAPES = {"tall": (96, 32), "wide": (32, 96), "square": (48, 48)}
MIXING = ("break-left", "break-right", "break-random", "reconstruct", "rotate-random", "swap-sigma")


def rel(A, B):
    return (torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B)).item()


def with_post(W_b, W_p, post):
    """A MatrixPair whose post SVD is `post` (another valid SVD of W_p, e.g. with flipped signs)."""
    pair = MatrixPair(W_b, W_p)
    pair.__dict__["post"] = post
    return pair


def flipped(f: SVD, g: torch.Generator) -> SVD:
    """The same W = U S V^T with half the pairs' signs flipped jointly, chosen at random."""
    e = torch.where(torch.rand(f.S.numel(), generator=g) < 0.5, -1.0, 1.0).to(f.U)
    return SVD(U=f.U * e, S=f.S, V=f.V * e)


def apply(op, pair, seed=1):
    return make_op(op).spec.apply(make_op(op), pair, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_a_tiny_update_with_random_factor_signs_breaks_nothing(shape):
    g = torch.Generator().manual_seed(5)
    r = min(shape)
    W_b = (orthonormal(shape[0], r, g) * torch.linspace(4, 0.5, r, dtype=torch.float64)) @ orthonormal(shape[1], r, g).T
    G = torch.randn(*shape, generator=g, dtype=torch.float64)
    W_p = W_b + 1e-6 * G * torch.linalg.matrix_norm(W_b) / torch.linalg.matrix_norm(G)
    post = flipped(svd(W_p), g)
    pair = with_post(W_b, W_p, post)
    assert sign_flips(pair.base, post) > r // 4  # the SVD handed over many flipped pairs...
    assert rel(compose(post.U, post.S, pair.base.V), W_p) > 0.3  # ...which the old break-left took as rotations
    # W_p itself is unchanged
    assert torch.allclose(compose(pair.aligned.U, pair.aligned.S, pair.aligned.V), W_p, rtol=0, atol=1e-12)
    assert sign_flips(pair.base, pair.aligned) == 0
    for op in ("break-left", "break-right", "reconstruct", "break-random", "rotate-random"):
        assert rel(apply(op, pair), W_p) < 1e-4, op
    assert m.rotation_size(m.overlaps(pair.base.U, pair.aligned.U)) < 1e-5


def test_a_planted_consistent_rotation_still_breaks():
    g = torch.Generator().manual_seed(9)
    r = 40
    U, V = orthonormal(64, r, g), orthonormal(r, r, g)
    S = torch.linspace(3, 0.5, r, dtype=torch.float64)
    Q = near_identity_rotation(r, 0.06, g)
    W_b, W_p = (U * S) @ V.T, U @ Q @ torch.diag(S) @ Q.T @ V.T
    pair = with_post(W_b, W_p, flipped(svd(W_p), g))
    # independent reference: the post pairs are (U Q, V Q) with diag(Q) > 0, so break-left is U Q S V^T
    assert bool((torch.diagonal(Q) > 0).all())
    left = apply("break-left", pair)
    assert torch.allclose(left, U @ Q @ torch.diag(S) @ V.T, atol=1e-9)
    assert torch.allclose(apply("break-right", pair), U @ torch.diag(S) @ Q.T @ V.T, atol=1e-9)
    assert rel(left, W_p) > 0.3
    assert torch.allclose(apply("reconstruct", pair), W_p, atol=1e-9)
    expected_rot = (torch.linalg.matrix_norm(Q - torch.eye(r, dtype=torch.float64)) / (2 * r**0.5)).item()
    R = m.overlaps(pair.base.U, pair.aligned.U)
    assert m.rotation_size(R) == pytest.approx(expected_rot, rel=1e-9)
    rotated = apply("rotate-random", pair, seed=3)
    Q_new = m.overlaps(pair.base.U, svd(rotated).U)
    Q_new = Q_new * torch.where(torch.diagonal(Q_new) < 0, -1.0, 1.0).to(Q_new)
    assert m.rotation_size(Q_new) == pytest.approx(expected_rot, rel=1e-6)


def test_a_degenerate_cluster_is_aligned_by_its_polar_factor():
    g = torch.Generator().manual_seed(2)
    r = 12
    U, V = orthonormal(30, r, g), orthonormal(r, r, g)
    S = torch.tensor([5, 4, 3, 3, 3, 2, 1.5, 1.2, 1, 0.8, 0.5, 0.2], dtype=torch.float64)
    W = (U * S) @ V.T
    turn = torch.eye(r, dtype=torch.float64)
    turn[2:5, 2:5] = orthonormal(3, 3, g)  # another valid SVD: any rotation inside the equal values
    post = SVD(U=U @ turn, S=S, V=V @ turn)
    assert torch.allclose(compose(post.U, post.S, post.V), W, atol=1e-12)
    pair = with_post(W, W, post)
    fixed = gauge_fixed(pair.base, post)
    block = (pair.base.U.T @ fixed.U)[2:5, 2:5]
    assert torch.allclose(block, block.T, atol=1e-10) and torch.linalg.eigvalsh(block).min() > -1e-10
    for op in MIXING:
        assert rel(apply(op, pair), W) < 1e-9, op


def test_the_ops_apply_the_gauge_through_the_public_entry():
    g = torch.Generator().manual_seed(4)
    W_b = torch.randn(20, 16, generator=g, dtype=torch.float64)
    W_p = W_b + 1e-7 * torch.randn(20, 16, generator=g, dtype=torch.float64)
    new = apply_op(make_op("break-left"), W_b, W_p, torch.Generator().manual_seed(0))
    assert rel(new, W_p) < 1e-5
