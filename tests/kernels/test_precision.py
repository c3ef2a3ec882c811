"""`--precision auto` uses float32 only for metrics shown here to agree with float64 within 1e-4
(relative to the value when it exceeds 1: z-scores and stable ranks)."""

import pytest
import torch

from orthoscope.kernels.precision import F32_SAFE, resolve_precision
from orthoscope.errors import OrthoscopeError
from orthoscope.lab.planted import near_identity_rotation
from orthoscope.pipeline.measure import METRIC_COLUMNS, ONE_SVD_METRICS, METRIC_SETS, measure, prepare_base

from tests.helpers import orthonormal

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def llm_like_pair():
    """An LLM-like pair: power-law head, dense tail, consistent rotation plus noise."""
    g = torch.Generator().manual_seed(1)
    m, n = 768, 512
    U = orthonormal(m, n, g)
    V = orthonormal(n, n, g)
    S = 20 * torch.arange(1, n + 1, dtype=torch.float64) ** -0.6 + 0.5
    Q = near_identity_rotation(n, 0.002, g)
    W_b = U @ torch.diag(S) @ V.T
    W_p = U @ Q @ torch.diag(1.05 * S) @ Q.T @ V.T + 0.002 * torch.randn(m, n, generator=g, dtype=torch.float64)
    return W_b, W_p


@pytest.fixture(scope="module")
def both_precisions(llm_like_pair):
    W_b, W_p = llm_like_pair
    asked = METRIC_SETS["all"] | METRIC_SETS["delta"]
    return {dt: measure(prepare_base(W_b, dt, CPU), W_p, "llm-like", 0, asked)[0] for dt in (torch.float32, torch.float64)}


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-4 * max(1.0, abs(b))


@pytest.mark.parametrize("metric", sorted(ONE_SVD_METRICS))
def test_one_svd_route_in_f32_agrees_with_the_full_route_in_f64(llm_like_pair, both_precisions, metric):
    """The sign-free route (one f32 SVD, f64 Gram singular values, M = U_b^T W_p V_b) changes no value."""
    W_b, W_p = llm_like_pair
    row, arrays = measure(prepare_base(W_b, torch.float32, CPU), W_p, "llm-like", 0, METRIC_SETS["sign-free"])
    assert close(row[metric], both_precisions[torch.float64][metric])
    assert "Q_U_block" not in arrays and all(row[c] != row[c] for c in ("incons", "rot", "incons_null"))  # NaN


@pytest.mark.parametrize("metric", sorted(F32_SAFE))
def test_f32_safe_metrics_agree_with_f64(both_precisions, metric):
    f32, f64 = both_precisions[torch.float32], both_precisions[torch.float64]
    assert close(f32[metric], f64[metric])


@pytest.mark.parametrize("metric", ["rot", "pa_max_u", "pa_max_v"])
def test_metrics_not_marked_f32_safe_do_differ(both_precisions, metric):
    """Columns the registry keeps off float32 do move by more than the tolerance on this pair
    (the largest principal angle reads the least separated vectors of the top 64)."""
    assert metric not in F32_SAFE
    f32, f64 = both_precisions[torch.float32], both_precisions[torch.float64]
    assert not close(f32[metric], f64[metric])


def test_auto_resolution():
    assert resolve_precision("auto", set(METRIC_COLUMNS)) == torch.float64
    assert resolve_precision("auto", {"a_geo", "sym_frac", "incons"}) == torch.float32
    assert resolve_precision("f32", set(METRIC_COLUMNS)) == torch.float32
    with pytest.raises(OrthoscopeError, match="unknown precision 'f16'"):
        resolve_precision("f16", {"a_geo"})
