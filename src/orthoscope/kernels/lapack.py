"""A symmetric matrix's every eigenvalue and its top eigenvectors from one tridiagonal reduction (scipy's LAPACK).

`scipy.linalg.eigh` gives either every eigenvalue (`dsyev`, values only) or a subset with vectors
(`dsyevr`), each after its own reduction to tridiagonal form, the n^3 part of either. `values_and_top`
reduces once (`dsytrd`, blocked as `dsyev` blocks it) and takes from the tridiagonal form the values
(`dsterf`, as `dsyev` does: the same numbers, bit for bit) and the top eigenvalues' vectors by
bisection and inverse iteration (`dstebz`, `dstein`, as `dsyevr` does for a subset), mapped back by
`dormtr`, which scipy wraps only for Cython: it is called here through the function pointer that
`scipy.linalg.cython_lapack` exports. The vectors agree with `dsyevr`'s to rounding (about 1e-15:
its own reduction is blocked otherwise), each eigenvector's sign being arbitrary in both.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

# dsyev scales a matrix whose largest entry lies outside [sqrt(smlnum), sqrt(bignum)]; such a matrix
# takes the two-call path, so that the values stay those of dsyev there too
_SAFE_LOW, _SAFE_HIGH = 1e-145, 1e145


def values_and_top(A: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Every eigenvalue (ascending) of the symmetric `A` (its lower triangle read) and the eigenvectors of
    its `top` largest (n x top, ascending), or None where this route does not apply (the caller then uses
    `scipy.linalg.eigh`): a 1 x 1 `A` (no off-diagonal for dsterf), an entry outside dsyev's unscaled
    range, inverse iteration that did not converge, or a scipy without the `dormtr` pointer.

    >>> X = np.random.default_rng(0).standard_normal((40, 12))
    >>> values, vectors = values_and_top(X.T @ X, 3)
    >>> import scipy.linalg
    >>> bool(np.array_equal(values, scipy.linalg.eigh(X.T @ X, eigvals_only=True, lower=True, driver="ev")))
    True
    >>> reference = scipy.linalg.eigh(X.T @ X, lower=True, subset_by_index=[9, 11], driver="evr")[1]
    >>> bool(np.allclose(np.abs((vectors * reference).sum(0)), 1.0))
    True
    """
    from scipy.linalg import lapack

    n = A.shape[0]
    largest = float(max(A.max(), -A.min())) if A.size else 0.0  # max |A_ij| without an n x n temporary
    dormtr = _dormtr()
    if not (_SAFE_LOW < largest < _SAFE_HIGH) or not 0 < top <= n or n < 2 or dormtr is None:
        return None
    lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])  # the optimal (blocked) workspace, as dsyev's query gives it
    reflectors, d, e, tau, info = lapack.dsytrd(A, lower=1, lwork=lwork)
    if info != 0:
        return None
    values, info = lapack.dsterf(d, e)
    if info != 0:
        return None
    found, w, block, split, info = lapack.dstebz(d, e, 3, 0.0, 0.0, n - top + 1, n, 0.0, b"B")
    if info != 0 or found != top:
        return None
    Z, info = lapack.dstein(d, e, w[:top], block, split)
    if info != 0:
        return None
    Z = np.asfortranarray(Z[:, :top])
    if not _apply_reflectors(dormtr, np.asfortranarray(reflectors), tau, Z):
        return None
    order = np.argsort(w[:top], kind="stable")  # dstebz orders by split block; dsyevr sorts ascending
    return values, Z[:, order]


def _apply_reflectors(dormtr, reflectors: np.ndarray, tau: np.ndarray, Z: np.ndarray) -> bool:
    """Z <- Q Z in place, Q from `dsytrd`'s lower-triangle reflectors (LAPACK's dormtr 'L', 'L', 'N')."""
    n, k = Z.shape
    c = ctypes.c_char
    args = [ctypes.byref(c(b"L")), ctypes.byref(c(b"L")), ctypes.byref(c(b"N")), _int(n), _int(k),
            _ptr(reflectors), _int(n), _ptr(tau), _ptr(Z), _int(n)]
    query, info = np.zeros(1), ctypes.c_int(0)
    dormtr(*args, _ptr(query), _int(-1), ctypes.byref(info))
    lwork = max(int(query[0]), 1)
    work = np.zeros(lwork)
    dormtr(*args, _ptr(work), _int(lwork), ctypes.byref(info))
    return info.value == 0


def _int(value: int):
    return ctypes.byref(ctypes.c_int(value))


def _ptr(array: np.ndarray):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


@functools.cache
def _dormtr():
    """LAPACK's dormtr from the pointer scipy.linalg.cython_lapack exports (the library scipy's other calls use);
    None where that scipy exports none."""
    try:
        import scipy.linalg.cython_lapack as cython_lapack

        capsule = cython_lapack.__pyx_capi__["dormtr"]
    except (ImportError, AttributeError, KeyError):
        return None
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    char, integer, double = (ctypes.POINTER(t) for t in (ctypes.c_char, ctypes.c_int, ctypes.c_double))
    signature = ctypes.CFUNCTYPE(None, char, char, char, integer, integer, double, integer, double, double, integer,
                                 double, integer, integer)
    return signature(pointer(capsule, name(capsule)))
