"""kernels.threads: one torch thread between kernels, every thread inside them; scipy's BLAS pool let go."""

import importlib

import pytest
import torch

from orthoscope.kernels import singular_values
from orthoscope.kernels.threads import full_count, full_threads, kernel, light
from tests.helpers import orthonormal

svd_module = importlib.import_module("orthoscope.kernels.svd")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_light_gives_kernels_the_count_it_found(two_threads):
    seen = []

    @kernel
    def probe():
        seen.append((torch.get_num_threads(), full_count()))

    probe()  # outside light(): nothing changes
    with light():
        between = torch.get_num_threads()
        probe()
        after_kernel = torch.get_num_threads()
        with full_threads(), full_threads():  # nested: the inner one leaves the count alone
            nested = torch.get_num_threads()
    assert seen == [(2, 2), (2, 2)]
    assert (between, after_kernel, nested) == (1, 1, 2)
    assert torch.get_num_threads() == 2


def test_light_restores_the_count_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError), light():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_values_after_the_pool_is_let_go_stay_exact(two_threads, monkeypatch):
    """Letting OpenBLAS's workers go after each eigensolve: the next calls start them again, same values."""
    released = []
    real = svd_module._release_blas_threads
    monkeypatch.setattr(svd_module, "_release_blas_threads", lambda threads: (released.append(1), real(threads)))
    s = torch.linspace(3.0, 1.0, 40, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    W = orthonormal(300, 40, g) @ torch.diag(s) @ orthonormal(40, 40, g).T
    with light():
        values = [singular_values(W) for _ in range(3)]
    assert len(released) == 3
    for v in values:
        torch.testing.assert_close(v, s, rtol=1e-12, atol=0)
