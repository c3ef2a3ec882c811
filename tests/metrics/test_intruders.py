"""intruders without the post SVD: the post's top-10 left vectors from its Gram give the full route's counts, and
the planted truth, on planted intruders and near-degenerate top values."""

import math

import pytest
import scipy.linalg
import torch

from orthoscope.metrics.registry import needs_post_svd
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from tests.helpers import count_svds, orthonormal

CPU = torch.device("cpu")
ONE_SVD = frozenset({"intruders", "a_geo"})  # no column that needs the post SVD
FULL = frozenset({"intruders", "incons"})  # incons: the post SVD


def counts(W_b: torch.Tensor, W_p: torch.Tensor, dtype=torch.float64) -> tuple[int, int]:
    """intruders on the one-SVD route (the post's Gram) and on the full route (the post SVD)."""
    base = prepare_base(W_b, dtype, CPU)
    return tuple(int(measure(base, W_p, "m", 0, metrics)[0]["intruders"]) for metrics in (ONE_SVD, FULL))


def planted(m: int, n: int, mix: torch.Tensor, gap: float = 0.0, outside: bool = False, seed: int = 0):
    """A base U_b S V_b^T and a post U_b R S' V_b^T, R = I but `mix` (orthogonal, k x k) on indices 1..k: the
    post's left vector i has |cos| |R_ji| with base vector j. With `gap`, s'_(k+1) = s_k (1 - gap): the last
    mixed vector and the next, the base's own, a hair apart. With `outside` (m > n), post vector 9 is a
    direction outside the base's span (cos 0 with every base vector)."""
    g = torch.Generator().manual_seed(seed)
    r = min(m, n)
    U, V = orthonormal(m, m, g), orthonormal(n, r, g)
    S = 10 * torch.arange(1, r + 1, dtype=torch.float64) ** -0.8
    U_b = U[:, :r]
    R = torch.eye(r, dtype=torch.float64)
    k = mix.shape[0]
    R[1:1 + k, 1:1 + k] = mix
    U_p = U_b @ R
    if outside:
        U_p[:, 9] = U[:, r]
    S_p = S.clone()
    if gap:
        S_p[k + 1] = S_p[k] * (1 - gap)
    return U_b @ torch.diag(S) @ V.T, U_p @ torch.diag(S_p) @ V.T


HADAMARD8 = torch.tensor(scipy.linalg.hadamard(8), dtype=torch.float64) / math.sqrt(8)  # |cos| 0.354 < 0.5


@pytest.mark.parametrize("m, n, outside", [(96, 64, False), (64, 96, False), (64, 64, False), (120, 64, True)])
def test_planted_intruders_are_counted_on_both_routes(m, n, outside):
    W_b, W_p = planted(m, n, HADAMARD8, outside=outside)
    expected = 8 + outside  # vectors 1-8 mixed over 8 base vectors (|cos| 0.35), and 9 outside the base's span
    assert counts(W_b, W_p) == (expected, expected)


def test_a_mix_over_three_base_vectors_is_no_intruder():
    Q, _ = torch.linalg.qr(torch.ones(3, 3, dtype=torch.float64) + torch.eye(3, dtype=torch.float64))
    assert Q.abs().amax(0).min() > 0.55  # each post vector keeps |cos| > 0.55 with some base vector
    W_b, W_p = planted(80, 48, Q)
    assert counts(W_b, W_p) == (0, 0)


@pytest.mark.parametrize("gap, dtype", [(1e-7, torch.float64), (1e-3, torch.float32)])
@pytest.mark.parametrize("m, n", [(96, 64), (64, 96)])
def test_near_degenerate_top_values_give_the_planted_count(gap, dtype, m, n):
    """Post vector 8 (an intruder) and 9 (the base's own) with values `gap` apart: any mix of the two would move
    one count or both; a gap the working precision resolves (float64 1e-7, float32 1e-3) gives both routes 8."""
    W_b, W_p = planted(m, n, HADAMARD8, gap=gap)
    assert counts(W_b, W_p, dtype) == (8, 8)
    W_b, W_p = planted(m, n, torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), gap=gap)
    assert counts(W_b, W_p, dtype) == (0, 0)  # base vectors 1 and 2 swapped: no intruder


def test_the_monitor_set_runs_no_post_svd(monkeypatch):
    from orthoscope.monitor import MONITOR_METRICS

    assert not needs_post_svd(MONITOR_METRICS)
    W_b, W_p = planted(96, 64, HADAMARD8)
    calls = count_svds(monkeypatch)
    row = measure(prepare_base(W_b, torch.float64, CPU), W_p, "m", 0, MONITOR_METRICS)[0]
    assert calls == [(96, 64)] and row["intruders"] == 8  # the base's SVD only
