"""interpolate's geodesic in the shared gauge (SPEC "Gauge first", `interpolate t`), through its formula, not the
ends that `interpolate` returns bit for bit."""

import math

import pytest
import torch

from orthoscope.interventions import MatrixPair
from orthoscope.interventions.geometry import compose, gauge_fixed, geodesic_factors, geodesic_maps
from orthoscope.kernels import svd
from tests.helpers import orthonormal
from tests.interventions.test_gauge import flipped, rel, with_post
from tests.interventions.test_ops import SHAPES, realistic_pair


def path(pair: MatrixPair, t: float) -> torch.Tensor:
    """W(t) = U(t) diag(sign(t) S_b^(1-t) S_p^t) V(t)^T from the pair's maps (no short cut at the ends)."""
    from orthoscope.interventions.geometry import interpolated_values

    U, V, sign = geodesic_factors(pair.geodesic, t)
    return compose(U, sign * interpolated_values(pair.base.S, pair.post.S, t), V)


def pairs(shape, kind):
    if kind == "realistic":
        return realistic_pair(*shape, seed=11)
    g = torch.Generator().manual_seed(12)  # unrelated: large rotations, reflections, determinants of either sign
    return tuple(torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2))


@pytest.mark.parametrize("kind", ["realistic", "unrelated"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_formula_is_exact_at_both_ends(shape, kind):
    W_b, W_p = pairs(shape, kind)
    pair = MatrixPair(W_b, W_p)
    assert rel(path(pair, 1.0), W_p) <= 1e-6
    assert rel(path(pair, 0.0), W_b) <= 1e-12


@pytest.mark.parametrize("kind", ["realistic", "unrelated"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_path_does_not_depend_on_the_signs_the_svd_hands_over(shape, kind):
    W_b, W_p = pairs(shape, kind)
    reference = MatrixPair(W_b, W_p)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        pair = with_post(W_b, W_p, flipped(reference.post, g))
        assert not torch.equal(pair.post.U, reference.post.U)
        for t in (0.25, 0.5, 0.75):
            assert rel(path(pair, t), path(reference, t)) <= 1e-6, t


def turn(angle: float) -> torch.Tensor:
    """A rotation by `angle` in the plane of the first two of three axes."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_a_pair_the_old_rule_flipped_keeps_the_gauge_representative():
    """u_b . u_p = 0.3 > 0 but v_b . v_p = -0.5: the old rule (flip when the sum is < 0) took (-u_p, -v_p) and
    walked V by -pi/3; the gauge keeps (u_p, v_p), so U turns by acos 0.3 in its plane and V by 2 pi / 3."""
    g = torch.Generator().manual_seed(7)
    Q, V_b = orthonormal(6, 6, g), orthonormal(3, 3, g)
    U_b, n = Q[:, :3], Q[:, 3:5]
    c = torch.tensor([0.3, 0.4], dtype=torch.float64)
    U_p = torch.cat([c * U_b[:, :2] + torch.sqrt(1 - c**2) * n, U_b[:, 2:]], dim=1)
    V_p = V_b @ turn(2 * math.pi / 3)
    S_b, S_p = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64), torch.tensor([3.3, 1.8, 1.2], dtype=torch.float64)
    W_b, W_p = compose(U_b, S_b, V_b), compose(U_p, S_p, V_p)
    pair = MatrixPair(W_b, W_p)
    gauge = gauge_fixed(pair.base, pair.post)
    cos_u, cos_v = (pair.base.U * gauge.U).sum(0), (pair.base.V * gauge.V).sum(0)
    assert torch.allclose(cos_u[:2], c) and torch.allclose(cos_v[:2], torch.tensor([-0.5, -0.5], dtype=torch.float64))
    assert bool(((cos_u + cos_v)[:2] < 0).all())  # where the old rule flipped the pair
    # independent reference: each U column halfway round its plane, V half of 2 pi / 3, S the geometric mean
    half = torch.acos(c) / 2
    U_half = torch.cat([torch.cos(half) * U_b[:, :2] + torch.sin(half) * n, U_b[:, 2:]], dim=1)
    expected = compose(U_half, torch.sqrt(S_b * S_p), V_b @ turn(math.pi / 3))
    assert rel(path(pair, 0.5), expected) <= 1e-9
    old = compose(U_half, torch.sqrt(S_b * S_p), V_b @ turn(-math.pi / 6))  # the old rule's V side (U aside)
    assert rel(old, expected) > 0.3
    U, V, _ = geodesic_factors(pair.geodesic, 0.5)
    assert (pair.base.V[:, 0] @ V[:, 0]).item() == pytest.approx(0.5, abs=1e-9)  # the old rule: cos(pi / 6)


def test_close_but_unequal_values_are_not_rotated_so_the_end_stays_exact():
    """The gauge's 1e-5 s_p,1 blocks (the `rot` column's) would rotate the 5 + 9e-5, 5 pair and move W(1) off W_p;
    the geodesic takes the gauge at rtol 0 (only equal values form a block)."""
    g = torch.Generator().manual_seed(8)
    U_b, V_b, U_p, V_p = orthonormal(20, 8, g), orthonormal(8, 8, g), orthonormal(20, 8, g), orthonormal(8, 8, g)
    S_p = torch.tensor([10.0, 5.0 + 9e-5, 5.0, 3.0, 2.0, 1.5, 1.0, 0.5], dtype=torch.float64)
    W_b, W_p = compose(U_b, torch.linspace(4, 1, 8, dtype=torch.float64), V_b), compose(U_p, S_p, V_p)
    pair = MatrixPair(W_b, W_p)
    shared = gauge_fixed(pair.base, pair.post)  # default tolerance: the pair is one block
    assert rel(compose(shared.U, shared.S, shared.V), W_p) > 1e-6
    assert rel(path(pair, 1.0), W_p) <= 1e-12
    assert rel(path(pair, 0.0), W_b) <= 1e-12


def test_a_swap_of_two_pairs_is_improper_in_the_gauge_and_becomes_a_quarter_turn():
    """The one step beyond the gauge: u_p,1 = u_b,2, u_p,2 = u_b,1 (likewise V) gives diagonal blocks of Q_U at 0
    (any sign is the gauge's) and det Q_U = -1: no real logarithm, so the weakest pair is flipped on both sides."""
    g = torch.Generator().manual_seed(9)
    U_b, V_b = orthonormal(4, 4, g), orthonormal(4, 4, g)
    swap, S = torch.tensor([1, 0, 2, 3]), torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    W_b, W_p = compose(U_b, S, V_b), compose(U_b[:, swap], S, V_b[:, swap])
    pair = MatrixPair(W_b, W_p)
    maps = geodesic_maps(pair.base, pair.post)
    assert not maps.sign_flips
    assert rel(path(pair, 1.0), W_p) <= 1e-12
    U, _, _ = geodesic_factors(maps, 0.5)  # a quarter turn halfway: u_1(1/2) at 45 degrees to u_b,1 and u_b,2
    assert (U_b[:, :2].T @ U[:, 0]).abs().tolist() == pytest.approx([math.sqrt(0.5)] * 2, abs=1e-9)
    assert torch.allclose(svd(path(pair, 0.5)).S, S, atol=1e-9)  # U(t), V(t) stay orthonormal: S(t) = S
