"""singular_values: the float64 Gram route where it is accurate, svdvals where it is not."""

import pytest
import torch

from orthoscope.kernels import singular_values, svd
from tests.helpers import orthonormal


def spectrum_matrix(m: int, n: int, smallest: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """W = U diag(S) V^T with S log-spaced from 1 down to `smallest` (known singular values)."""
    g = torch.Generator().manual_seed(seed)
    r = min(m, n)
    U = orthonormal(m, r, g)
    V = orthonormal(n, r, g)
    S = torch.logspace(0, torch.log10(torch.tensor(smallest)).item(), r, dtype=torch.float64)
    return U @ torch.diag(S) @ V.T, S


@pytest.mark.parametrize("shape", [(300, 120), (120, 300), (64, 64)])
def test_gram_route_matches_the_known_spectrum(shape):
    W, S = spectrum_matrix(*shape, smallest=1e-3)
    s = singular_values(W.float())  # a float32 matrix still gets float64 values
    assert s.dtype == torch.float64
    assert torch.allclose(s, S, rtol=1e-5, atol=0)  # limited by the f32 rounding of W, not the route
    assert torch.allclose(singular_values(W), S, rtol=1e-9, atol=0)


def test_wide_spectrum_falls_back_to_svdvals(monkeypatch):
    """s_r / s_1 = 1e-9: squaring would lose the small values entirely, so svdvals must be used."""
    W, S = spectrum_matrix(200, 80, smallest=1e-9)
    calls = []
    real = torch.linalg.svdvals
    monkeypatch.setattr(torch.linalg, "svdvals", lambda A: calls.append(A.shape) or real(A))
    s = singular_values(W)
    assert calls == [(200, 80)]
    assert torch.allclose(s, S, rtol=1e-6, atol=0)


def test_gram_route_skips_svdvals_when_accurate(monkeypatch):
    W, _ = spectrum_matrix(200, 80, smallest=1e-2)
    monkeypatch.setattr(torch.linalg, "svdvals", lambda A: pytest.fail("svdvals called"))
    singular_values(W)


def test_zero_matrix():
    assert singular_values(torch.zeros(5, 3)).tolist() == [0.0, 0.0, 0.0]


def test_svd_factors_and_values_agree():
    W, _ = spectrum_matrix(90, 40, smallest=1e-2, seed=3)
    assert torch.allclose(svd(W).S, singular_values(W), rtol=1e-10)


@pytest.mark.parametrize("threads", [1, 2])  # one thread: scipy's dsyrk; several: torch's GEMM for the Gram
@pytest.mark.parametrize("shape", [(700, 90), (90, 700)])  # several row (or column) blocks of GRAM_BLOCK
def test_blocked_gram_routes_agree_with_the_known_spectrum(shape, threads, monkeypatch):
    import sys

    kernel = sys.modules["orthoscope.kernels.svd"]  # the module (`orthoscope.kernels.svd` is also the function)
    monkeypatch.setattr(kernel, "GRAM_BLOCK", 90 * 64)  # 64 rows (columns) a block: 11 blocks
    W, S = spectrum_matrix(*shape, smallest=1e-2, seed=threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        s = singular_values(W)
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(s, S, rtol=1e-11, atol=0)
