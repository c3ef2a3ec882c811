"""kernels.krylov_values: Ritz values of a block Krylov space, lower bounds of the top singular values."""

import torch

from orthoscope.kernels import krylov_values
from tests.helpers import orthonormal


def planted(m: int, n: int, s: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return orthonormal(m, len(s), g) @ torch.diag(s) @ orthonormal(n, len(s), g).T


def test_ritz_values_interlace_and_converge_on_a_decaying_spectrum():
    s = torch.arange(1, 201, dtype=torch.float64) ** -1.0
    A = planted(500, 200, s)
    ritz = krylov_values(A, seed=3, block=16, depth=4)
    assert len(ritz) == 80
    assert (ritz <= s[:80] * (1 + 1e-12)).all()  # Cauchy interlacing: never above the true values
    torch.testing.assert_close(ritz[:16], s[:16], rtol=1e-6, atol=0)  # the top ones converged


def test_wide_matrices_are_read_tall_and_small_ones_exactly():
    s = torch.linspace(3.0, 1.0, 60, dtype=torch.float64)
    A = planted(60, 300, s)  # short side 60 <= 16 * 4: the Krylov space would be everything
    torch.testing.assert_close(krylov_values(A, block=16, depth=3), s, rtol=1e-12, atol=1e-12)
    B = planted(700, 300, torch.linspace(2.0, 1.0, 300, dtype=torch.float64))
    torch.testing.assert_close(krylov_values(B.T, seed=1), krylov_values(B, seed=1), rtol=1e-12, atol=0)


def test_a_low_rank_matrix_whose_blocks_vanish_gives_its_values_and_zeros():
    s = torch.tensor([5.0, 2.0, 0.5], dtype=torch.float64)
    A = planted(400, 300, s)  # rank 3 < block: every later block is rounding noise
    ritz = krylov_values(A, seed=0, block=16, depth=4)
    torch.testing.assert_close(ritz[:3], s, rtol=1e-12, atol=0)
    assert ritz[3:].abs().max() < 1e-12 * 5.0
    zero_rows = torch.zeros(400, 300, dtype=torch.float64)
    zero_rows[:2] = A[:2]  # exact zeros: a Householder QR of a zero block is not orthogonal to the basis
    exact = torch.linalg.svdvals(zero_rows)
    ritz = krylov_values(zero_rows, seed=0, block=16, depth=4)
    assert (ritz[:2] - exact[:2]).abs().max() < 1e-12 * exact[0] and ritz[2:].abs().max() < 1e-12 * exact[0]


def test_seeded_by_its_own_generator():
    A = torch.randn(300, 200, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = krylov_values(A, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched
    assert torch.equal(krylov_values(A, seed=5), first)
    assert not torch.equal(krylov_values(A, seed=6), first)
