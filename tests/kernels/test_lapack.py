"""kernels.lapack.values_and_top: dsyev's values bit for bit, dsyevr's top vectors to rounding, one reduction."""

import numpy as np
import pytest
import scipy.linalg

from orthoscope.kernels import lapack
from orthoscope.kernels.lapack import values_and_top


def reference(A: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    n = A.shape[0]
    vectors = scipy.linalg.eigh(A, lower=True, subset_by_index=[n - top, n - 1], driver="evr")[1]
    return scipy.linalg.eigh(A, eigvals_only=True, lower=True, driver="ev"), vectors


@pytest.mark.parametrize(("rows", "cols", "decay"), [(300, 128, 0.0), (700, 256, 3.0), (256, 256, 6.0)])
def test_values_exact_and_vectors_to_rounding(rows, cols, decay):
    X = np.random.default_rng(cols).standard_normal((rows, cols)) * np.logspace(0, -decay, cols)
    A = np.asfortranarray(X.T @ X)
    values, vectors = values_and_top(A, 10)
    ref_values, ref_vectors = reference(A, 10)
    assert np.array_equal(values, ref_values)  # the same reduction and dsterf as dsyev: bit for bit
    assert vectors.shape == (cols, 10)
    np.testing.assert_allclose(np.abs((vectors * ref_vectors).sum(0)), 1.0, atol=1e-12)  # a sign apart
    np.testing.assert_allclose(A @ vectors, vectors * ref_values[-10:], atol=1e-9 * ref_values[-1])


def test_split_tridiagonal_sorted_ascending():
    """A block-diagonal matrix splits the tridiagonal form: dstebz orders by block, the result by value."""
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((30, 30)) for _ in range(2)]
    A = scipy.linalg.block_diag(blocks[0] @ blocks[0].T, 4 * blocks[1] @ blocks[1].T)
    values, vectors = values_and_top(np.asfortranarray(A), 6)
    ref_values, ref_vectors = reference(A, 6)
    assert np.array_equal(values, ref_values)
    np.testing.assert_allclose(np.abs((vectors * ref_vectors).sum(0)), 1.0, atol=1e-10)


def test_out_of_range_entries_left_to_eigh():
    A = np.eye(4) * 1e150
    assert values_and_top(A, 2) is None
    assert values_and_top(np.zeros((3, 3)), 1) is None


def test_one_by_one_left_to_eigh():
    """A 1 x 1 Gram (of a matrix with one row or one column, e.g. Qwen2-MoE's shared_expert_gate, 1 x hidden) has
    no off-diagonal for dsterf: eigh takes it."""
    assert values_and_top(np.array([[4.0]]), 1) is None


@pytest.fixture
def fresh_dormtr():
    lapack._dormtr.cache_clear()
    yield
    lapack._dormtr.cache_clear()


def test_a_scipy_without_dormtr_left_to_eigh(monkeypatch, fresh_dormtr):
    import scipy.linalg.cython_lapack as cython_lapack

    X = np.random.default_rng(2).standard_normal((20, 8))
    A = np.asfortranarray(X.T @ X)
    assert values_and_top(A, 2) is not None
    monkeypatch.setattr(cython_lapack, "__pyx_capi__", {})
    lapack._dormtr.cache_clear()
    assert lapack._dormtr() is None and values_and_top(A, 2) is None


def test_other_errors_of_the_reflectors_raise(monkeypatch):
    def broken(*args):
        raise ValueError("not a missing capsule")

    monkeypatch.setattr(lapack, "_dormtr", lambda: broken)
    with pytest.raises(ValueError, match="not a missing capsule"):
        values_and_top(np.diag([3.0, 2.0, 1.0]) + 0.1, 1)
