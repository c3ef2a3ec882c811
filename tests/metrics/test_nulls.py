"""Planted updates with known truth, the exact nulls against explicit draws, and the numerics of D."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from orthoscope.lab.planted import consistent_delta, isotropic_delta, magnitude_only_delta, plant_update
from orthoscope.metrics import (
    gauss_mean,
    gauss_tail,
    p_pair,
    pairing,
    pairing_and_sym_frac,
    principal_angles,
    registry,
    sym_frac,
)
from orthoscope.metrics.registry import metric_sets
from orthoscope.pipeline.checks import SkipMatrix
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from tests.helpers import orthonormal

CPU = torch.device("cpu")
METRIC_SETS = metric_sets()
ALL = METRIC_SETS["all"] | METRIC_SETS["delta"]


def base_matrix(m: int = 96, n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    S = 10 * torch.arange(1, n + 1, dtype=torch.float64) ** -0.7 + 0.05
    return orthonormal(m, n, g) @ torch.diag(S) @ orthonormal(n, n, g).T


def run(W_b, W_p, dtype=torch.float64, metrics=ALL, name="m"):
    return measure(prepare_base(W_b, dtype, CPU), W_p, name, 0, metrics)[0]


def reference_D(W_b: torch.Tensor, W_p: torch.Tensor) -> np.ndarray:
    """D = U_b^T (W_p - a_fro W_b) V_b from numpy's own SVD (independent of the pipeline)."""
    Wb, Wp = W_b.numpy(), W_p.numpy()
    U, _, Vh = np.linalg.svd(Wb, full_matrices=False)
    a = np.linalg.norm(Wp) / np.linalg.norm(Wb)
    return U.T @ (Wp - a * Wb) @ Vh.T


def test_consistent_plant_is_far_above_both_nulls():
    W_b = base_matrix()
    row = run(W_b, plant_update(W_b, consistent_delta(64, torch.Generator().manual_seed(1))))
    assert row["changed"] and not row["at_noise_floor"]
    assert row["z_pair"] > 5 and row["z_pair_top"] > 5
    assert row["p_pair"] < 1e-4 and row["p_gauss"] < 1e-6
    assert row["sym_frac"] > 0.95 and row["sym_frac_top"] > 0.95


def test_magnitude_only_plant_beats_the_gaussian_null_but_not_the_pairing_null():
    W_b = base_matrix()
    row = run(W_b, plant_update(W_b, magnitude_only_delta(64, torch.Generator().manual_seed(2))))
    assert row["sym_frac"] > gauss_mean(64) + 0.05 and row["p_gauss"] < 0.01 and row["z_gauss"] > 3
    assert abs(row["z_pair"]) < 3 and row["p_pair"] > 0.01
    assert row["sym_frac_pair_null"] > 0.6  # the diagonal share alone explains sym_frac
    assert abs(row["sym_frac"] - row["sym_frac_pair_null"]) < 0.1


def test_isotropic_plant_is_null_under_both():
    W_b = base_matrix()
    row = run(W_b, plant_update(W_b, isotropic_delta(64, torch.Generator().manual_seed(3))))
    assert abs(row["z_pair"]) < 3 and abs(row["z_gauss"]) < 3
    assert row["p_pair"] > 0.01 and row["p_gauss"] > 0.01
    assert row["sym_frac"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("metrics", ["all", "sign-free"])
def test_an_unchanged_matrix_has_no_structure(metrics):
    W_b = base_matrix().float()
    row = run(W_b, W_b.clone(), torch.float32, METRIC_SETS[metrics] | {"delta_rank90"})
    assert row["changed"] is False and row["at_noise_floor"] is True
    assert row["rel_delta"] == 0 and row["frac_unchanged"] == 1 and row["delta_rank90"] == 0
    assert row["a_geo"] == 1 and row["a_fro"] == 1 and row["disp"] == 0
    for name in registry.change_columns():
        assert math.isnan(row[name]), name


def test_one_changed_entry_is_seen_exactly_in_bfloat16():
    W_b = base_matrix().to(torch.bfloat16)
    W_p = W_b.clone()
    W_p[3, 5] = W_p[3, 5] * 1.0078125  # one bfloat16 ulp
    row = run(W_b, W_p, torch.float32)
    exact = (W_p.double() - W_b.double()).norm() / W_b.double().norm()
    assert row["changed"] is True and row["frac_unchanged"] == pytest.approx(1 - 1 / W_b.numel())
    assert row["rel_delta"] == pytest.approx(exact.item(), rel=1e-6)
    assert row["at_noise_floor"] is (exact.item() < 1e3 * torch.finfo(torch.float32).eps)
    assert math.isfinite(row["sym_frac"])  # changed: defined, however small


def test_noise_floor_depends_on_the_working_precision():
    W_b = base_matrix()
    W_p = W_b + 1e-6 * W_b.norm() / 80 * torch.randn(W_b.shape, generator=torch.Generator().manual_seed(4),
                                                       dtype=torch.float64)
    assert run(W_b, W_p, torch.float32)["at_noise_floor"] is True
    f64 = run(W_b, W_p, torch.float64)
    assert f64["at_noise_floor"] is False
    # tiny update, yet no catastrophic cancellation: D is noise, so sym_frac is near its null
    assert abs(f64["z_gauss"]) < 4 and abs(f64["z_pair"]) < 4
    # --precision auto's fallback: below float32's floor the matrix is measured on float64 factors
    fallback, _ = measure(prepare_base(W_b, torch.float32, torch.device("cpu")), W_p, "w", 0, floor_fallback=True)
    assert fallback["at_noise_floor"] is False and fallback["z_pair"] == pytest.approx(f64["z_pair"], rel=1e-9)


def test_z_pair_and_both_null_means_match_an_independent_reference():
    W_b = base_matrix(80, 48, 5)
    W_p = plant_update(W_b, isotropic_delta(48, torch.Generator().manual_seed(6))
                       + 0.5 * consistent_delta(48, torch.Generator().manual_seed(7)))
    row = run(W_b, W_p)
    D = reference_D(W_b, W_p)
    O = D - np.diag(np.diag(D))
    A = O * O.T
    assert row["z_pair"] == pytest.approx(A.sum() / math.sqrt(2 * (A**2).sum()), rel=1e-6)
    assert row["sym_frac_pair_null"] == pytest.approx(0.5 + (np.diag(D) ** 2).sum() / (2 * (D**2).sum()), rel=1e-9)
    assert row["sym_frac"] == pytest.approx(((D + D.T) ** 2).sum() / 4 / (D**2).sum(), rel=1e-9)
    assert row["sym_frac_null"] == (48 + 1) / (2 * 48)
    k = 48  # r < 64: the top block is all of D
    assert row["z_pair_top"] == pytest.approx(row["z_pair"], rel=1e-12) and k == D.shape[0]


def test_pairing_null_mean_and_variance_match_monte_carlo():
    g = torch.Generator().manual_seed(8)
    D = torch.randn(12, 12, generator=g, dtype=torch.float64) + 0.7 * torch.diag(torch.randn(12, generator=g))
    stats = pairing(D)
    rng = np.random.default_rng(0)
    e = torch.from_numpy(rng.choice([-1.0, 1.0], size=(40000, 12)))
    flipped = e[:, :, None] * D[None]  # diag(e) D
    values = ((flipped + flipped.transpose(1, 2)) ** 2).sum((1, 2)) / 4 / (D**2).sum()
    T = torch.einsum("ni,ij,nj->n", e, stats.A, e)
    assert values.mean().item() == pytest.approx(stats.null_mean, abs=4 * values.std().item() / 200)
    assert T.mean().item() == pytest.approx(0, abs=4 * math.sqrt(stats.var / 40000))
    assert T.var().item() == pytest.approx(stats.var, rel=0.03)


def test_p_pair_from_draws_matches_exhaustive_enumeration():
    D = torch.randn(8, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    D = D + 0.3 * D.T
    stats = pairing(D)
    A = stats.A.numpy()
    all_e = np.array(list(itertools.product([-1.0, 1.0], repeat=8)))
    exact = np.mean(np.einsum("ni,ij,nj->n", all_e, A, all_e) >= stats.T - 1e-12)
    assert p_pair(stats, np.random.default_rng(1)) == pytest.approx(exact, abs=0.025)


@pytest.fixture(scope="module")
def heavy_tailed_null():
    """A 300 x 300 D concentrated on the leading directions (its e^T A e is far from normal) and
    200k reference draws of e^T A e (torch's generator and float32 products: independent of p_pair's)."""
    g = torch.Generator().manual_seed(10)
    w = torch.arange(1, 301, dtype=torch.float64) ** -0.5
    D = torch.randn(300, 300, generator=g, dtype=torch.float64) * torch.outer(w, w)
    stats = pairing(D + 0.05 * D.T)
    A = stats.A.float()
    draws = []
    for _ in range(10):
        e = torch.randint(0, 2, (20000, 300), generator=g).float() * 2 - 1
        draws.append(((e @ A) * e).sum(1).double())
    return stats, torch.cat(draws).numpy()


def check_against_reference(stats, null, p_target, seed):
    import dataclasses

    from orthoscope.metrics.nulls import pair_tail

    T = float(np.quantile(null, 1 - p_target))
    p_ref = float(np.mean(null >= T))
    se_ref = math.sqrt(p_ref * (1 - p_ref) / null.size)
    tail = pair_tail(dataclasses.replace(stats, T=T), np.random.default_rng(seed))
    combined = math.sqrt(tail.se**2 + se_ref**2)
    assert tail.se <= 0.105 * tail.p  # the stated accuracy in the range that decides BH
    assert abs(tail.p - p_ref) <= 3 * combined, (p_target, tail, p_ref)
    return p_ref, scipy.stats.norm.sf(T / math.sqrt(stats.var))


def test_p_pair_matches_200k_draws_where_the_normal_tail_is_off(heavy_tailed_null):
    stats, null = heavy_tailed_null
    off = []
    for p_target, seed in ((0.03, 1), (3e-3, 2)):
        p_ref, normal = check_against_reference(stats, null, p_target, seed)
        off.append(abs(normal / p_ref - 1))
    assert max(off) > 0.3  # the normal limit (the old p_pair for r > 256) misses by more than 30 %


@pytest.mark.slow
def test_p_pair_matches_200k_draws_near_the_bottom_of_the_range(heavy_tailed_null):
    check_against_reference(*heavy_tailed_null, 3e-4, 3)


def test_p_pair_stops_early_far_from_the_range():
    from orthoscope.metrics.nulls import PAIR_DRAWS, pair_tail

    D = torch.randn(40, 40, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    isotropic = pair_tail(pairing(D), np.random.default_rng(0))
    assert isotropic.draws == PAIR_DRAWS and isotropic.p > 0.05
    consistent = pair_tail(pairing(D + D.T), np.random.default_rng(0))  # T = 2 ||A||_1: beyond every draw
    assert consistent.hits == 0 and consistent.p < 1e-4 and consistent.draws < 70000


def test_p_gauss_is_the_beta_tail_and_matches_explicit_gaussian_draws():
    r, n = 8, 6000
    g = torch.Generator().manual_seed(11)
    explicit = np.array([sym_frac(torch.randn(r, r, generator=g, dtype=torch.float64)) for _ in range(n)])
    a, b = r * (r + 1) / 4, r * (r - 1) / 4
    x = float(np.quantile(explicit, 0.9))
    z, p = gauss_tail(x, r)
    assert p == scipy.stats.beta.sf(x, a, b)
    assert p == pytest.approx((explicit >= x).mean(), abs=0.015)
    assert z == pytest.approx((x - explicit.mean()) / explicit.std(), abs=0.06)
    assert gauss_mean(r) == pytest.approx(explicit.mean(), abs=0.004)


def test_principal_angles_match_scipy():
    g = torch.Generator().manual_seed(12)
    X = orthonormal(50, 6, g)
    Y = torch.linalg.qr(X + 1e-5 * torch.randn(50, 6, generator=g, dtype=torch.float64))[0]
    Y[:, 5] = orthonormal(50, 1, g)[:, 0]
    Y = torch.linalg.qr(Y)[0]
    ours = principal_angles(X, Y).numpy()
    theirs = np.sort(scipy.linalg.subspace_angles(X.numpy(), Y.numpy()))
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-12)
    assert ours[0] < 1e-4  # small angles kept to full accuracy (arccos would lose half the digits)


def test_angles_and_gap_aware_consistency_on_planted_rotations():
    W_b = base_matrix(160, 128)  # r = 128 > k = 64: the top-64 subspaces can turn
    U, S, Vh = torch.linalg.svd(W_b, full_matrices=False)
    from orthoscope.lab.planted import near_identity_rotation

    Q = near_identity_rotation(128, 0.02, torch.Generator().manual_seed(13))
    both = run(W_b, U @ Q @ torch.diag(1.1 * S) @ Q.T @ Vh)
    left = run(W_b, U @ Q @ torch.diag(S) @ Vh)
    assert both["incons_gap"] < 1e-8 and left["incons_gap"] > 1e-3
    assert both["pa_mean_u"] == pytest.approx(both["pa_mean_v"], abs=1e-8) and both["pa_max_u"] > 0.1
    assert left["pa_mean_v"] < 1e-6 < left["pa_mean_u"]
    assert left["pa_mean_u_null"] > 0 and left["incons_null"] > 0
    flat = run(torch.eye(64, dtype=torch.float64), torch.eye(64, dtype=torch.float64) + 1e-3 * W_b[:64, :64])
    assert math.isnan(flat["incons_gap"])  # no well-separated pair


def test_delta_rank90_counts_the_update_rank():
    W_b = base_matrix()
    D = torch.zeros(64, 64, dtype=torch.float64)
    D[0, 1], D[5, 2], D[9, 9] = 1.0, 1.0, 1.0  # three equal singular values
    row = run(W_b, plant_update(W_b, D))
    assert row["delta_rank90"] == 3
    assert math.isnan(run(W_b, plant_update(W_b, D), metrics=METRIC_SETS["all"])["delta_rank90"])


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.complex64])
def test_non_floating_matrices_are_skipped_with_a_reason(dtype):
    W = torch.ones(8, 4, dtype=dtype)
    with pytest.raises(SkipMatrix, match="not a real floating-point type"):
        prepare_base(W, torch.float32, CPU)
    good = prepare_base(torch.randn(8, 4), torch.float32, CPU)
    with pytest.raises(SkipMatrix, match="post matrix has dtype"):
        measure(good, W, "w", 0)


@pytest.mark.parametrize("kind", ["gaussian", "symmetric", "antisymmetric", "diagonal", "zero", "nearly diagonal"])
def test_one_pass_pairing_and_sym_frac_equal_the_definitions(kind):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(50, 50, generator=g, dtype=torch.float64)
    D = {"gaussian": X, "symmetric": X + X.T, "antisymmetric": X - X.T, "diagonal": torch.diag(torch.diagonal(X)),
         "zero": torch.zeros(50, 50, dtype=torch.float64),
         "nearly diagonal": torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64)) + 1e-6 * X}[kind]
    pair, value = pairing_and_sym_frac(D)
    ref = pairing(D)
    assert value == pytest.approx(sym_frac(D), abs=1e-14)
    for field in ("T", "var", "diag_share"):
        a, b = getattr(pair, field), getattr(ref, field)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-300), field
    assert torch.equal(pair.A, ref.A)


def reference_hits(A: np.ndarray, threshold: float, n: int, rng: np.random.Generator) -> int:
    """The draws' comparisons in plain float64 numpy, on the same random bits (the same chunks) as `_hits`."""
    from orthoscope.metrics.nulls import _CHUNK

    r, hits = A.shape[0], 0
    step = max(1, _CHUNK // r)
    for start in range(0, n, step):
        rows = min(step, n - start)
        bits = np.unpackbits(rng.integers(0, 256, size=(rows, (r + 7) // 8), dtype=np.uint8), axis=1, count=r)
        e = bits.astype(np.float64) * 2 - 1
        hits += int((np.einsum("ij,ij->i", e @ A, e) >= threshold).sum())
    return hits


@pytest.mark.parametrize("kind", ["integer (ties)", "heavy", "tiny values", "r = 300", "r = 700"])
def test_float32_draws_decide_every_comparison_as_float64_does(kind):
    from orthoscope.metrics.nulls import _hits

    g = torch.Generator().manual_seed(21)
    r = {"r = 300": 300, "r = 700": 700}.get(kind, 40)  # 700: five blocks of the upper triangle and a part
    D = torch.randn(r, r, generator=g, dtype=torch.float64) * (torch.arange(1, r + 1, dtype=torch.float64) ** -1)
    if kind == "integer (ties)":
        D = torch.randint(-2, 3, (r, r), generator=g).double()
    if kind == "tiny values":
        D = D * 1e-25  # A ~ 1e-50: below float32's range unless scaled
    stats = pairing(D)
    A = stats.A.numpy()
    for z in (0.0, 0.5, 2.0):
        threshold = z * math.sqrt(stats.var) - 1e-12 * math.sqrt(stats.var)
        ours = _hits(stats.A, threshold, 3000, np.random.default_rng(5))
        assert ours == reference_hits(A, threshold, 3000, np.random.default_rng(5)), (kind, z)
        assert 0 < ours < 3000


def test_float32_products_on_the_upper_triangle_stay_within_the_band():
    """The draws' float32 values (A's upper triangle in blocks) against float64 e^T A e: within the stated band."""
    from orthoscope.metrics.nulls import _Draws

    g = torch.Generator().manual_seed(23)
    for r in (3, 128, 129, 520):
        D = torch.randn(r, r, generator=g, dtype=torch.float64) * torch.rand(r, r, generator=g, dtype=torch.float64)
        draws = _Draws(pairing(D).A, 0.0)
        e = torch.randint(0, 2, (400, r), generator=g).float() * 2 - 1
        exact = ((e.double() @ draws.A64) * e.double()).sum(1)
        error = (draws.values(e).double() - exact).abs().max().item()
        assert error <= draws.band, r
        assert error > 0 or r == 3  # the float32 products do round: the band is not vacuous here


def every_value(A: np.ndarray) -> np.ndarray:
    """e^T A e for all 2^r sign vectors e."""
    e = np.array(list(itertools.product([-1.0, 1.0], repeat=A.shape[0])))
    return np.einsum("ni,ij,nj->n", e, A, e)


@pytest.mark.parametrize("kind", ["gaussian", "one direction", "two directions", "consistent"])
def test_pair_bound_is_above_the_exact_tail_at_every_threshold(kind):
    from orthoscope.metrics.nulls import pair_bound

    g = torch.Generator().manual_seed(22)
    X = torch.randn(12, 12, generator=g, dtype=torch.float64)
    u, v = torch.randn(12, 2, generator=g, dtype=torch.float64).T
    D = {"gaussian": X, "one direction": torch.outer(u, u) + 0.1 * X, "consistent": X + X.T,
         "two directions": torch.outer(u, u) - torch.outer(v, v) + 0.05 * X}[kind]
    stats = pairing(D)
    values = every_value(stats.A.numpy())
    for T in np.unique(values[values > 0])[::5]:
        bound = pair_bound(dataclasses.replace(stats, T=float(T)))
        assert np.mean(values >= T - 1e-9) <= bound <= 1, (kind, T)


def test_pair_bound_is_above_200k_draws_and_settles_a_concentrated_update(heavy_tailed_null):
    from orthoscope.metrics.nulls import PAIR_DRAWS, PAIR_P_LOW, pair_bound, pair_tail

    stats, null = heavy_tailed_null
    for q in (0.5, 0.9, 0.99, 0.999, 0.9999):
        T = float(np.quantile(null, q))
        assert pair_bound(dataclasses.replace(stats, T=T)) >= (1 - q) * 0.9, q
    # an update along two directions, consistent on both sides: the draws would need 53k draws to show p < 1e-4
    g = torch.Generator().manual_seed(23)
    u, v = torch.randn(2, 64, generator=g, dtype=torch.float64)
    D = 0.3 * (torch.outer(u, v) + torch.outer(v, u)) + 0.01 * torch.randn(64, 64, generator=g, dtype=torch.float64)
    tail = pair_tail(pairing(D), np.random.default_rng(0))
    assert tail.bounded and tail.draws == PAIR_DRAWS and tail.hits == 0 and tail.p < PAIR_P_LOW
    assert math.isnan(tail.se) and tail.p == pair_bound(pairing(D))
