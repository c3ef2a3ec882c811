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


@pytest.mark.parametrize("shape", [(700, 90), (90, 700)])
def test_blocked_gram_accumulation_agrees_with_the_known_spectrum(shape, monkeypatch):
    """The Gram matrix summed over several blocks of SYRK_BLOCK elements (one dsyrk call each) is exact."""
    import sys

    kernel = sys.modules["orthoscope.kernels.svd"]  # the module (`orthoscope.kernels.svd` is also the function)
    monkeypatch.setattr(kernel, "SYRK_BLOCK", 90 * 64)  # 64 rows (columns) a block: 11 blocks
    calls = []
    real = kernel.gram_update  # kernels.lapack's dsyrk, one call per block
    monkeypatch.setattr(kernel, "gram_update", lambda gram, B: calls.append(B.shape) or real(gram, B))
    W, S = spectrum_matrix(*shape, smallest=1e-2, seed=1)
    s = singular_values(W)
    assert calls == [(90, 64)] * 10 + [(90, 60)]
    assert torch.allclose(s, S, rtol=1e-11, atol=0)


@pytest.mark.parametrize("transpose", [False, True])
def test_blocked_float64_product_is_the_product(transpose, monkeypatch):
    """times_f64 converts W a GRAM_BLOCK of elements at a time: several blocks give W B (or W^T B) exactly."""
    import sys

    from orthoscope.kernels.svd import times_f64

    kernel = sys.modules["orthoscope.kernels.svd"]
    monkeypatch.setattr(kernel, "GRAM_BLOCK", 40 * 16)  # 16 rows a block: 7 blocks of 100 rows
    g = torch.Generator().manual_seed(5)
    W = torch.randn(100, 40, generator=g)
    B = torch.randn(40 if not transpose else 100, 3, generator=g, dtype=torch.float64)
    expected = (W.double().T if transpose else W.double()) @ B
    assert torch.allclose(times_f64(W, B, transpose), expected, rtol=1e-13, atol=1e-13)
