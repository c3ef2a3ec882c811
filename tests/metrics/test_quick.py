"""The `quick` set: triage columns from the stored tensors and a randomized block Krylov of dW, no full SVD."""

import math

import pytest
import torch

import orthoscope
from orthoscope.kernels import krylov_values
from orthoscope.metrics import top_energy
from orthoscope.metrics.registry import metric_sets
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from tests.helpers import count_svds, orthonormal

CPU = torch.device("cpu")
METRIC_SETS = metric_sets()


def exact_top16(dW: torch.Tensor) -> float:
    s = torch.linalg.svdvals(dW.double())
    return (s[:16].square().sum() / s.square().sum()).item()


def updates():
    g = torch.Generator().manual_seed(0)
    m, n = 400, 200
    spectrum = torch.diag(torch.arange(1, n + 1, dtype=torch.float64) ** -0.5)
    power = orthonormal(m, n, g) @ spectrum @ orthonormal(n, n, g).T
    lowrank = torch.randn(m, 8, generator=g, dtype=torch.float64) @ torch.randn(8, n, generator=g, dtype=torch.float64)
    return {"gaussian": torch.randn(m, n, generator=g, dtype=torch.float64), "power-law": power,
            "low-rank+noise": lowrank + 0.5 * torch.randn(m, n, generator=g, dtype=torch.float64)}


@pytest.mark.parametrize("kind", ["gaussian", "power-law", "low-rank+noise"])
def test_top_energy_is_a_lower_bound_within_its_stated_error(kind):
    dW = updates()[kind]
    exact = exact_top16(dW)
    estimate = top_energy(krylov_values(dW, seed=1), dW.square().sum().item())
    assert estimate <= exact + 1e-12
    assert exact - estimate < (0.005 if kind == "gaussian" else 1e-4)
    assert top_energy(krylov_values(dW, seed=1), dW.square().sum().item()) == estimate  # seeded: reproducible


def test_quick_set_runs_no_svd_and_agrees_with_the_default_route(monkeypatch):
    g = torch.Generator().manual_seed(2)
    W_b = torch.randn(120, 60, generator=g, dtype=torch.float64)
    W_p = 1.1 * W_b + 0.05 * torch.randn(120, 60, generator=g, dtype=torch.float64)
    calls = count_svds(monkeypatch)
    row, arrays = measure(prepare_base(W_b, torch.float32, CPU), W_p, "w", 0, METRIC_SETS["quick"])
    assert calls == [] and arrays == {}
    full, _ = measure(prepare_base(W_b, torch.float32, CPU), W_p, "w", 0, METRIC_SETS["all"])
    for name in METRIC_SETS["quick"] - {"delta_top16"}:
        assert row[name] == full[name], name
    assert row["delta_top16"] == pytest.approx(exact_top16(W_p - W_b), abs=0.005)
    assert math.isnan(row["a_geo"]) and math.isnan(row["sym_frac"])


def test_quick_compare_through_the_pipeline(planted, tmp_path, monkeypatch):
    calls = count_svds(monkeypatch)
    table = orthoscope.compare(*planted, tmp_path / "q", metrics="quick", cache=False).table
    assert calls == []
    assert table.delta_top16.between(0, 1).all() and table.rel_delta.gt(0).all() and table.a_geo.isna().all()
