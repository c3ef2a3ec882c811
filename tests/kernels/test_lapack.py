"""kernels.lapack.values_and_top: dsyev's values bit for bit, dsyevr's top vectors to rounding, one reduction."""

import numpy as np
import pytest
import scipy.linalg

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
    """A 1 x 1 Gram (a rank-1 expert router, a 1-wide matrix) has no off-diagonal for dsterf: eigh takes it."""
    assert values_and_top(np.array([[4.0]]), 1) is None
