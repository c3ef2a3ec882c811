"""Each op on planted pairs gives exactly its formula (float64), checked against independent references."""

import math

import numpy as np
import pytest
import torch

from orthoscope import metrics as m
from orthoscope.errors import OrthoscopeError
from orthoscope.interventions import OPS, MatrixPair, apply_op, make_op
from orthoscope.interventions.geometry import random_rotation
from orthoscope.kernels import svd
from orthoscope.lab.planted import near_identity_rotation
from tests.helpers import orthonormal

# (rows, cols): tall (gate/up), wide (down), square (q/o), GQA k/v (kv_heads * head_dim, hidden)
SHAPES = {"tall": (96, 32), "wide": (32, 96), "square": (48, 48), "gqa-kv": (16, 64)}


def norm(x):
    return torch.linalg.matrix_norm(x).item()


def realistic_pair(rows, cols, seed):
    """W_p = U_b Q_U (1.1 S_b) Q_V^T V_b^T plus a small update that leaves the base subspaces."""
    g = torch.Generator().manual_seed(seed)
    r = min(rows, cols)
    U, V = orthonormal(rows, r, g), orthonormal(cols, r, g)
    S = 5 * torch.arange(1, r + 1, dtype=torch.float64) ** -0.5
    W_b = (U * S) @ V.T
    Q_U, Q_V = near_identity_rotation(r, 0.04, g), near_identity_rotation(r, 0.04, g)
    W_p = U @ Q_U @ torch.diag(1.1 * S) @ Q_V.T @ V.T + 0.02 * torch.randn(rows, cols, generator=g, dtype=torch.float64)
    return W_b, W_p


@pytest.fixture(scope="module")
def pair():
    return realistic_pair(72, 48, 0)


def run(op, W_b, W_p, seed=1, **kw):
    return apply_op(make_op(op, **kw), W_b, W_p, torch.Generator().manual_seed(seed))


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
    assert a == pytest.approx(1.1, abs=0.01)
    assert torch.allclose(scaled.S, a * base.S, atol=1e-8)


def test_each_formula(pair):
    W_b, W_p = pair
    b, p = svd(W_b), svd(W_p)
    # reference gauge (simple spectrum): numpy's SVD, each post pair flipped jointly so u_b,i . u_p,i >= 0
    Ub, _, Vbh = np.linalg.svd(W_b.numpy(), full_matrices=False)
    Up, _, Vph = np.linalg.svd(W_p.numpy(), full_matrices=False)
    e = np.where((Ub * Up).sum(0) < 0, -1.0, 1.0)
    U_b, V_b, U_p, V_p = (torch.from_numpy(x) for x in (Ub, Vbh.T, Up * e, Vph.T * e))
    assert torch.allclose(run("base-vectors", W_b, W_p), (b.U * p.S) @ b.V.T, atol=1e-10)
    assert torch.allclose(run("break-left", W_b, W_p), (U_p * p.S) @ V_b.T, atol=1e-10)
    assert torch.allclose(run("break-right", W_b, W_p), (U_b * p.S) @ V_p.T, atol=1e-10)
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


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_reconstruct_reports_the_dropped_share_against_pinv_projections(shape):
    W_b, W_p = realistic_pair(*shape, seed=7)
    # independent reference: W_b W_b^+ projects on span U_b, W_b^+ W_b on span V_b
    Wb, Wp = W_b.numpy(), W_p.numpy()
    pinv = np.linalg.pinv(Wb)
    projected = Wb @ pinv @ Wp @ pinv @ Wb
    expected = np.linalg.norm(Wp - projected) / np.linalg.norm(Wp)
    share = OPS["reconstruct"].diagnostics(make_op("reconstruct"), MatrixPair(W_b, W_p))["dropped_share"]
    assert share == pytest.approx(expected, rel=1e-8)
    assert (share > 0.01) == (shape[0] != shape[1])  # only rectangular matrices leak


@pytest.mark.parametrize("kind", ["realistic", "unrelated"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_interpolation_is_exact_at_both_ends_on_every_shape(shape, kind):
    if kind == "realistic":
        W_b, W_p = realistic_pair(*shape, seed=11)
    else:  # two unrelated matrices: large rotations, reflections, determinants of either sign
        g = torch.Generator().manual_seed(12)
        W_b, W_p = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2))
    W0 = run("interpolate", W_b, W_p, t=0.0)
    W1 = run("interpolate", W_b, W_p, t=1.0)
    assert norm(W1 - W_p) <= 1e-6 * norm(W_p)
    assert norm(W0 - W_b) <= 1e-12 * norm(W_b)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_interpolation_midpoint_lies_between_with_geometric_mean_singular_values(shape):
    W_b, W_p = realistic_pair(*shape, seed=13)
    half = run("interpolate", W_b, W_p, t=0.5)
    gap = norm(W_p - W_b)
    assert norm(half - W_b) < gap and norm(half - W_p) < gap
    assert norm(half - W_b) == pytest.approx(norm(half - W_p), rel=0.25)
    # U(t), V(t) keep orthonormal columns, so S(t) = sqrt(S_b S_p) are exactly the singular values
    expected = torch.sqrt(torch.linalg.svdvals(W_b) * torch.linalg.svdvals(W_p))
    assert torch.allclose(torch.linalg.svdvals(half), expected, rtol=1e-9)


def test_interpolation_across_a_determinant_sign_change_passes_through_its_smallest_pair():
    g = torch.Generator().manual_seed(21)
    W_b = torch.randn(24, 24, generator=g, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(W_b)
    W_p = U @ torch.diag(S * torch.tensor([1.0] * 23 + [-1.0], dtype=torch.float64)) @ Vh
    W_p = W_p + 1e-3 * torch.randn(24, 24, generator=g, dtype=torch.float64)
    assert torch.linalg.det(W_b) * torch.linalg.det(W_p) < 0  # no path of invertible matrices exists
    assert norm(run("interpolate", W_b, W_p, t=1.0) - W_p) <= 1e-6 * norm(W_p)
    assert norm(run("interpolate", W_b, W_p, t=0.0) - W_b) <= 1e-12 * norm(W_b)
    values = torch.linalg.svdvals(run("interpolate", W_b, W_p, t=0.5))
    expected = torch.sqrt(torch.linalg.svdvals(W_b) * torch.linalg.svdvals(W_p))
    assert torch.allclose(values[:-1], expected[:-1], rtol=1e-9) and values[-1] < 1e-9


def test_interpolation_midpoint_is_the_square_geodesic_for_near_identity_rotations():
    g = torch.Generator().manual_seed(4)
    U = orthonormal(40, 40, g)
    V = orthonormal(40, 40, g)
    S = torch.linspace(3, 0.5, 40, dtype=torch.float64)
    Q_U, Q_V = near_identity_rotation(40, 0.05, g), near_identity_rotation(40, 0.05, g)
    W_b, W_p = (U * S) @ V.T, U @ Q_U @ torch.diag(1.2 * S) @ Q_V.T @ V.T
    half = run("interpolate", W_b, W_p, t=0.5)
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


def test_noise_control_is_as_large_as_the_update_and_seeded(pair):
    W_b, W_p = pair
    noisy = run("noise", W_b, W_p, seed=3)
    assert norm(noisy - W_b) == pytest.approx(norm(W_p - W_b), rel=1e-12)
    assert torch.equal(noisy, run("noise", W_b, W_p, seed=3))
    assert not torch.allclose(noisy, run("noise", W_b, W_p, seed=4))
    # no structure: the added matrix is (nearly) uncorrelated with the real update
    cos = ((noisy - W_b) * (W_p - W_b)).sum() / norm(noisy - W_b) / norm(W_p - W_b)
    assert abs(cos.item()) < 0.1


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_rotate_random_is_a_consistent_rotation_as_large_as_the_pairs(shape):
    W_b, W_p = realistic_pair(*shape, seed=17)
    pair = MatrixPair(W_b, W_p)
    W = run("rotate-random", W_b, W_p, seed=2)
    new = svd(W)
    assert torch.allclose(new.S, pair.a_geo * pair.base.S, rtol=1e-9)  # U_b R (a S_b) R^T V_b^T: values a S_b
    assert m.asym(m.one_svd_form(pair.base.U, W, pair.base.V)) < 1e-12  # same R on both sides
    Q_pair, _ = m.fix_gauge(m.overlaps(pair.base.U, pair.post.U), m.overlaps(pair.base.V, pair.post.V),
                            pair.post.S, 1e-12)
    Q_new, _ = m.fix_gauge(m.overlaps(pair.base.U, new.U), m.overlaps(pair.base.V, new.V), new.S, 1e-12)
    assert m.rotation_size(Q_new) == pytest.approx(m.rotation_size(Q_pair), rel=1e-6)
    assert not torch.allclose(W, run("reconstruct", W_b, W_p), atol=1e-3)  # a random direction, not the pair's


def test_registry_drives_validation_help_and_experiment():
    from typer.testing import CliRunner

    from orthoscope.cli import app
    from orthoscope.experiment import conditions

    help_text = CliRunner().invoke(app, ["intervene", "--help"], env={"COLUMNS": "400"}).output
    in_experiment = {op.name for op in conditions((0.9,)) if op is not None}
    for name, spec in OPS.items():
        assert spec.formula and spec.summary and name in help_text
        assert set(spec.controls) <= set(OPS)
        if spec.controls:
            assert name in in_experiment and set(spec.controls) <= in_experiment
    assert {"noise", "rotate-random", "interpolate", "swap-sigma"} <= in_experiment


@pytest.mark.parametrize("args, message", [
    (("flip-all",), "unknown op 'flip-all'"),
    (("interpolate",), "op interpolate needs --t"),
    (("interpolate", None, "nan"), "bad --t 'nan' for interpolate: must be a finite number in \\[0, 1\\]"),
    (("interpolate", None, 1.5), "bad --t 1.5 for interpolate"),
    (("interpolate", None, -0.1), "bad --t -0.1 for interpolate"),
    (("temperature", "auto"), "op temperature needs a numeric --scale"),
    (("swap-sigma", "-1"), "bad --scale '-1' for swap-sigma: must be a finite positive number"),
    (("swap-sigma", "inf"), "bad --scale 'inf'"),
    (("swap-sigma", "nan"), "bad --scale 'nan'"),
    (("swap-sigma", "big"), "bad --scale 'big'"),
    (("break-left", "2"), "op break-left takes no --scale"),
    (("swap-sigma", None, 0.5), "op swap-sigma takes no --t"),
    (("noise", None, None, 2**64), "--seed must be an integer from 0 to"),
    (("noise", None, None, -1), "--seed must be an integer from 0 to"),
])
def test_bad_op_arguments(args, message):
    with pytest.raises(OrthoscopeError, match=message):
        make_op(*args)


def test_interpolation_ends_are_the_two_models_bit_for_bit_on_float32():
    g = torch.Generator().manual_seed(31)
    W_b = torch.randn(40, 24, generator=g)
    W_p = W_b + 0.05 * torch.randn(40, 24, generator=g)
    assert torch.equal(run("interpolate", W_b, W_p, t=1.0).float(), W_p)
    assert torch.equal(run("interpolate", W_b, W_p, t=0.0).float(), W_b)

