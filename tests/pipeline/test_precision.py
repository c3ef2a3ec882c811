"""`--precision auto` uses float32 only for metrics shown here to agree with float64 within 1e-4
(relative to the value when it exceeds 1: z-scores, stable ranks, angles in degrees; rot within
1e-3) on an LLM-like random pair, the planted pair and the shipped lab family."""

import glob
import math

import pytest
import torch
from safetensors.torch import load_file

from orthoscope.errors import OrthoscopeError
from orthoscope.lab.planted import near_identity_rotation
from orthoscope.metrics.registry import COLUMNS as METRIC_COLUMNS
from orthoscope.metrics.registry import metric_sets
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from orthoscope.pipeline.precision import F32_SAFE, resolve_precision
from tests.helpers import orthonormal

CPU = torch.device("cpu")
METRIC_SETS = metric_sets()


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
    return {dt: measure(prepare_base(W_b, dt, CPU), W_p, "llm-like", 0, asked)[0]
            for dt in (torch.float32, torch.float64)}


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-4 * max(1.0, abs(b))


@pytest.mark.parametrize("metric", sorted(METRIC_SETS["sign-free"]))
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


def test_default_set_is_f32_safe():
    """The default `compare` (every metric) runs on float32 SVDs under `--precision auto`."""
    assert METRIC_SETS["all"] <= F32_SAFE
    assert resolve_precision("auto", METRIC_SETS["all"]) == torch.float32


def tolerance(metric: str) -> float:
    """1e-4; rot 1e-3; p_pair one of its 4096 sign draws more (a draw sitting on T may flip in float32)."""
    return {"rot": 1e-3, "p_pair": 1 / 4096 + 1e-4}.get(metric, 1e-4)


def disagreements(pairs) -> list[str]:
    """Columns of the default set where float32 factors and float64 factors differ by more than the tolerance."""
    bad = []
    for name, W_b, W_p in pairs:
        rows = {dt: measure(prepare_base(W_b, dt, CPU), W_p, name, 0, METRIC_SETS["all"])[0]
                for dt in (torch.float32, torch.float64)}
        for metric in sorted(METRIC_SETS["all"]):
            a, b = rows[torch.float32][metric], rows[torch.float64][metric]
            if isinstance(b, float) and math.isnan(b):
                if not (isinstance(a, float) and math.isnan(a)):
                    bad.append(f"{name} {metric}: f32 {a} f64 NaN")
            elif abs(a - b) >= tolerance(metric) * max(1.0, abs(b)):
                bad.append(f"{name} {metric}: f32 {a} f64 {b}")
    return bad


def folder_matrices(folder) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(glob.glob(f"{folder}/*.safetensors")):
        tensors.update({k: v for k, v in load_file(shard).items() if v.ndim == 2 and "layers." in k})
    return tensors


def test_llm_like_pair_f32_equals_f64_on_the_default_set(llm_like_pair):
    assert disagreements([("llm-like", *llm_like_pair)]) == []


def test_planted_pair_f32_equals_f64_on_the_default_set(planted):
    base, post = (folder_matrices(f) for f in planted)
    assert len(base) >= 7
    assert disagreements([(name, W, post[name]) for name, W in base.items()]) == []


@pytest.mark.parametrize("post", ["instruct", "cot", "control"])
def test_lab_family_f32_equals_f64_on_the_default_set(post):
    from orthoscope.lab.shipped import shipped_family

    family = shipped_family()
    base, other = folder_matrices(family["base"]), folder_matrices(family[post])
    assert len(base) >= 7
    assert disagreements([(name, W, other[name]) for name, W in base.items()]) == []


def test_auto_resolution():
    assert resolve_precision("auto", set(METRIC_COLUMNS)) == torch.float32
    assert resolve_precision("f64", set(METRIC_COLUMNS)) == torch.float64
    assert resolve_precision("auto", {"a_geo", "sym_frac", "incons"}) == torch.float32
    assert resolve_precision("f32", set(METRIC_COLUMNS)) == torch.float32
    with pytest.raises(OrthoscopeError, match="unknown precision 'f16'"):
        resolve_precision("f16", {"a_geo"})
