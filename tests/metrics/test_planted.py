"""Planted structures with known answers, measured through the same code compare uses."""

import math

import pytest
import torch

from orthoscope.lab.planted import near_identity_rotation
from orthoscope.metrics import registry
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from tests.helpers import orthonormal

CPU = torch.device("cpu")


def factors(m: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    U = orthonormal(m, n, g)
    V = orthonormal(n, n, g)
    S = 10 * torch.arange(1, n + 1, dtype=torch.float64) ** -0.7 + 0.05
    return U, S, V, g


@pytest.mark.parametrize("shape", [(96, 64), (64, 96), (80, 80)])
def test_planted_consistent_pair_is_recovered_exactly(shape):
    m, n = shape
    r = min(m, n)
    U, S, V, g = factors(max(m, n), r, 0)
    U, V = (U, V) if m >= n else (V, U)
    W_b = U @ torch.diag(S) @ V.T
    Q = near_identity_rotation(r, 0.02, g)
    W_p = U @ Q @ torch.diag(1.1 * S) @ Q.T @ V.T
    row, arrays = measure(prepare_base(W_b, torch.float64, CPU), W_p, "planted", 0)
    assert row["incons"] < 1e-8
    assert row["asym"] < 1e-8
    assert row["sym_frac"] > 1 - 1e-8
    assert row["a_geo"] == pytest.approx(1.1, abs=1e-9)
    assert row["a_fro"] == pytest.approx(1.1, abs=1e-9)
    assert row["disp"] < 1e-9 and row["fit_resid"] < 1e-9
    assert row["coherence"] == pytest.approx(1.0, abs=1e-9)
    assert row["rot"] > 0.01  # a real rotation was planted and is seen
    assert row["leak_u"] < 1e-8 and row["leak_v"] < 1e-8
    rho_bins = arrays["rho_bins"]
    assert rho_bins[~torch.isnan(torch.from_numpy(rho_bins)).numpy()] == pytest.approx(1.1, abs=1e-9)


def test_left_only_rotation_is_inconsistent_and_antisymmetric():
    U, S, V, g = factors(96, 64, 1)
    Q = near_identity_rotation(64, 0.02, g)
    W_b = U @ torch.diag(S) @ V.T
    W_p = U @ Q @ torch.diag(S) @ V.T
    row, _ = measure(prepare_base(W_b, torch.float64, CPU), W_p, "left", 0)
    assert row["rel_incons"] > 0.5
    assert row["sym_frac"] < 0.5
    assert row["asym"] > 0.1


def test_gaussian_perturbation_is_symmetric_only_by_chance():
    g = torch.Generator().manual_seed(2)
    W_b = torch.randn(512, 512, generator=g, dtype=torch.float64)
    W_p = W_b + 0.05 * torch.randn(512, 512, generator=g, dtype=torch.float64)
    row, _ = measure(prepare_base(W_b, torch.float64, CPU), W_p, "noise", 0)
    assert row["sym_frac"] == pytest.approx(0.5, abs=0.05)
    assert row["sym_frac_null"] == pytest.approx(0.5, abs=0.05)
    # small noise looks "consistent" under incons, as SPEC's perturbation argument predicts
    assert row["incons"] < row["rot"]


def test_uniform_scaling_of_a_rank_deficient_matrix_stays_finite():
    U, S, V, _ = factors(64, 32, 3)
    S[20:] = 0
    W_b = U @ torch.diag(S) @ V.T
    row, _ = measure(prepare_base(W_b, torch.float64, CPU), 1.3 * W_b, "lowrank", 0)
    extra = ("delta_rank90", "delta_top16")  # not asked for: NaN
    vectors = {m.name for m in registry.METRICS if m.needs_change}  # past rank 20 the vectors are arbitrary: NaN
    assert all(math.isfinite(v) for k, v in row.items() if k not in (*extra, *vectors, "note"))
    assert all(math.isnan(row[k]) for k in (*extra, *vectors))
    assert row["note"].startswith("base has numerical rank 20 < r = 32")
    assert row["a_geo"] == pytest.approx(1.3, abs=1e-9)
    assert row["disp"] < 1e-9
