"""A symmetric matrix's every eigenvalue and its top eigenvectors from one tridiagonal reduction (scipy's LAPACK).

`scipy.linalg.eigh` gives either every eigenvalue (`dsyev`, values only) or a subset with vectors
(`dsyevr`), each after its own reduction to tridiagonal form, the n^3 part of either. `values_and_top`
reduces once (`dsytrd`, blocked as `dsyev` blocks it) and takes from the tridiagonal form the values
(`dsterf`, as `dsyev` does: the same numbers, bit for bit) and the top eigenvalues' vectors by
bisection and inverse iteration (`dstebz`, `dstein`, as `dsyevr` does for a subset), mapped back by
`dormtr`. The vectors agree with `dsyevr`'s to rounding (about 1e-15: its own reduction is blocked
otherwise), each eigenvector's sign being arbitrary in both. `values_only` is `dsyev`'s values-only solve
and `gram_update` BLAS's `dsyrk`, the calls `kernels.svd` forms and solves a Gram with.

Every routine is the one scipy's wrappers call (the same library, workspace and arguments: the same
numbers, bit for bit), called through the function pointer that `scipy.linalg.cython_lapack` or
`cython_blas` exports (`_routine`), by ctypes, which lets go of Python's GIL for the call: scipy's
f2py wrappers hold it throughout, so that threads running kernels side by side
(`kernels.threads.lanes`) would otherwise take turns.
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
    range, inverse iteration that did not converge, or a scipy that exports no pointer to one of the routines.

    >>> X = np.random.default_rng(0).standard_normal((40, 12))
    >>> values, vectors = values_and_top(X.T @ X, 3)
    >>> import scipy.linalg
    >>> bool(np.array_equal(values, scipy.linalg.eigh(X.T @ X, eigvals_only=True, lower=True, driver="ev")))
    True
    >>> reference = scipy.linalg.eigh(X.T @ X, lower=True, subset_by_index=[9, 11], driver="evr")[1]
    >>> bool(np.allclose(np.abs((vectors * reference).sum(0)), 1.0))
    True
    """
    n = A.shape[0]
    largest = float(max(A.max(), -A.min())) if A.size else 0.0  # max |A_ij| without an n x n temporary
    names = ("dsytrd", "dsterf", "dstebz", "dstein", "dormtr")
    if not (_SAFE_LOW < largest < _SAFE_HIGH) or not 0 < top <= n or n < 2 or None in map(_routine, names):
        return None
    reflectors = np.array(A, dtype=np.float64, order="F")  # dsytrd overwrites it, as it does f2py's copy
    d, e, tau = np.zeros(n), np.zeros(n - 1), np.zeros(n - 1)
    if not _with_workspace("dsytrd", b"L", n, reflectors, n, d, e, tau):  # blocked as dsyev's query blocks it
        return None
    values, off = d.copy(), e.copy()  # dsterf overwrites both; dstebz and dstein read the originals
    info = _info()
    _call("dsterf", n, values, off, info)
    if info[0] != 0:
        return None
    found, splits = _info(), _info()
    w, block, split = np.zeros(n), np.zeros(n, np.intc), np.zeros(n, np.intc)
    _call("dstebz", b"I", b"B", n, 0.0, 0.0, n - top + 1, n, 0.0, d, e, found, splits, w, block, split,
          np.zeros(4 * n), np.zeros(3 * n, np.intc), info)
    if info[0] != 0 or found[0] != top:
        return None
    Z = np.zeros((n, top), order="F")
    _call("dstein", n, d, e, top, w, block, split, Z, n, np.zeros(5 * n), np.zeros(n, np.intc),
          np.zeros(top, np.intc), info)
    if info[0] != 0:
        return None
    if not _with_workspace("dormtr", b"L", b"L", b"N", n, top, reflectors, n, tau, Z, n):  # Z <- Q Z
        return None
    order = np.argsort(w[:top], kind="stable")  # dstebz orders by split block; dsyevr sorts ascending
    return values, Z[:, order]


def values_only(A: np.ndarray) -> np.ndarray | None:
    """Every eigenvalue (ascending) of the symmetric `A` (its lower triangle read) by LAPACK's dsyev:
    `scipy.linalg.eigh(A, eigvals_only=True, lower=True, driver="ev")` bit for bit. A Fortran-ordered
    float64 `A` is overwritten (as `overwrite_a=True` lets eigh); None where scipy exports no dsyev pointer.

    >>> X = np.random.default_rng(0).standard_normal((40, 12))
    >>> import scipy.linalg
    >>> bool(np.array_equal(values_only(X.T @ X), scipy.linalg.eigh(X.T @ X, eigvals_only=True, driver="ev")))
    True
    """
    if _routine("dsyev") is None:
        return None
    n = A.shape[0]
    A = np.asfortranarray(A, dtype=np.float64)
    values = np.zeros(n)
    if not _with_workspace("dsyev", b"N", b"L", n, A, max(n, 1), values):
        raise np.linalg.LinAlgError("dsyev did not converge")  # eigh's error for the same matrix
    return values


def gram_update(gram: np.ndarray, B: np.ndarray) -> np.ndarray:
    """`gram` += B B^T in its lower triangle, in place, by BLAS's dsyrk (`gram` n x n and `B` n x k, both
    Fortran-ordered float64): `scipy.linalg.blas.dsyrk(1.0, B, beta=1.0, c=gram, lower=1, overwrite_c=1)`,
    its numbers bit for bit, through scipy's wrapper where scipy exports no dsyrk pointer.

    >>> B = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    >>> gram_update(np.zeros((2, 2), order="F"), B).tolist()
    [[5.0, 0.0], [14.0, 50.0]]
    """
    n, k = B.shape
    if _routine("dsyrk") is None or not (gram.flags.f_contiguous and B.flags.f_contiguous):
        from scipy.linalg import blas

        return blas.dsyrk(1.0, B, beta=1.0, c=gram, trans=0, lower=1, overwrite_c=1)
    _call("dsyrk", b"L", b"N", n, k, 1.0, B, max(n, 1), 1.0, gram, max(n, 1))
    return gram


def _with_workspace(name: str, *args) -> bool:
    """Call `name(*args, work, lwork, info)` with the workspace its own query (lwork = -1) asks for; True where
    info is 0."""
    query, info = np.zeros(1), _info()
    _call(name, *args, query, -1, info)
    if info[0] != 0:
        return False
    lwork = max(int(query[0]), 1)
    _call(name, *args, np.zeros(lwork), lwork, info)
    return info[0] == 0


def _info() -> np.ndarray:
    return np.zeros(1, np.intc)


_SCALARS = {bytes: ctypes.c_char, int: ctypes.c_int, float: ctypes.c_double}


def _call(name: str, *args) -> None:
    """LAPACK's or BLAS's `name` on `args`, Fortran's way (every argument by reference): a numpy array (float64
    or int, Fortran-ordered) by its data, a bytes character, an int or a float by a pointer to a copy. ctypes
    releases the GIL for the call."""
    pointers = []
    for arg in args:
        if isinstance(arg, np.ndarray):
            if arg.dtype not in (np.float64, np.intc) or not arg.flags.f_contiguous:
                raise TypeError(f"{name}: an array argument must be Fortran-ordered float64 or intc")
            pointers.append(ctypes.c_void_p(arg.ctypes.data))
        else:
            pointers.append(ctypes.byref(_SCALARS[type(arg)](arg)))
    _routine(name)(*pointers)


@functools.cache
def _routine(name: str):
    """LAPACK's or BLAS's `name` as a ctypes function of pointers, from the pointer scipy.linalg.cython_lapack
    (or cython_blas) exports: the library scipy's own calls use. None where that scipy exports none."""
    try:
        import scipy.linalg.cython_blas as cython_blas
        import scipy.linalg.cython_lapack as cython_lapack

        capsule = cython_lapack.__pyx_capi__.get(name) or cython_blas.__pyx_capi__[name]
    except (ImportError, AttributeError, KeyError):
        return None
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    count = str(get_name(capsule)).count("*")  # every argument is a pointer: "void (char *, int *, ...)"
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * count)(pointer(capsule, get_name(capsule)))
