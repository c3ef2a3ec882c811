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
(`kernels.threads.lanes`) would otherwise take turns. Each pointer is used only where the signature scipy
names it by takes nothing but `char *`, 32-bit `int *` and `double *` arguments (an ILP64 build's are left
to scipy's wrappers), and each call's arguments are checked against that signature first.
"""

from __future__ import annotations

import ctypes
import functools
import numbers
import operator
import re
from collections.abc import Callable
from typing import NamedTuple

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


class _Routine(NamedTuple):
    """A routine's ctypes function (every argument a pointer) and its arguments' kinds, "char", "int" or "double"."""

    function: Callable[..., None]
    kinds: tuple[str, ...]


_INT_RANGE = range(int(np.iinfo(np.intc).min), int(np.iinfo(np.intc).max) + 1)
_ARRAY_KINDS = {np.dtype(np.float64): "double", np.dtype(np.intc): "int"}


def _call(name: str, *args) -> None:
    """LAPACK's or BLAS's `name` on `args`, Fortran's way (every argument by reference): a numpy array (float64
    or intc, Fortran-ordered) by its data, a one-byte bytes character, an integer (a numpy one too) or a float by
    a pointer to a C copy. Each argument's kind, and their count, must be those of the routine's signature
    (TypeError otherwise, before any call). ctypes releases the GIL for the call."""
    routine = _routine(name)
    if routine is None:
        raise LookupError(f"{name}: scipy exports no pointer to it that takes these arguments")
    if len(args) != len(routine.kinds):
        raise TypeError(f"{name} takes {len(routine.kinds)} arguments, {len(args)} given")
    pointers = [_pointer(name, position, arg, kind) for position, (arg, kind) in enumerate(zip(args, routine.kinds))]
    routine.function(*pointers)


def _pointer(name: str, position: int, arg, kind: str):
    """A pointer to `arg` for an argument of C type `kind *`; TypeError where `arg` is not of that kind."""
    if isinstance(arg, np.ndarray):
        if _ARRAY_KINDS.get(arg.dtype) != kind or not arg.flags.f_contiguous:
            raise TypeError(f"{name}: argument {position} must be a Fortran-ordered array of C {kind}")
        return ctypes.c_void_p(arg.ctypes.data)
    if kind == "char" and isinstance(arg, bytes) and len(arg) == 1:
        return ctypes.byref(ctypes.c_char(arg))
    if kind == "int" and isinstance(arg, numbers.Integral) and not isinstance(arg, (bool, np.bool_)):
        value = operator.index(arg)
        if value not in _INT_RANGE:
            raise ValueError(f"{name}: argument {position} is {value}, outside a C int's range (32 bits)")
        return ctypes.byref(ctypes.c_int(value))
    if kind == "double" and isinstance(arg, numbers.Real) and not isinstance(arg, numbers.Integral):
        return ctypes.byref(ctypes.c_double(float(arg)))
    raise TypeError(f"{name}: argument {position} must be a C {kind}, not {arg!r}")


# private prototypes: ctypes.pythonapi's shared PyCapsule_* functions keep whatever types others gave them
_capsule_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))

# the C types of the arguments _call passes; scipy's `d` is cython_lapack's (or cython_blas's) typedef of double
_C_KINDS = {"char", "int", "double"}
_SCIPY_DOUBLE = re.compile(r"__pyx_t_\w*cython_(?:lapack|blas)_d")


def _signature(capsule) -> str:
    """The C signature scipy names the capsule by, e.g. "void (char *, int *, __pyx_t_..._cython_lapack_d *)"."""
    return (_capsule_name(capsule) or b"").decode()


def _kinds(signature: str) -> tuple[str, ...] | None:
    """The kinds ("char", "int", "double") of a `void (T *, ...)` signature's arguments; None where any argument
    is of another type (an ILP64 build's 64-bit integers, say) or not a pointer."""
    match = re.fullmatch(r"void \((.*)\)", signature.strip())
    if match is None:
        return None
    kinds = []
    for argument in match[1].split(","):
        base, star = argument.strip()[:-1].strip(), argument.strip()[-1:]
        kind = "double" if _SCIPY_DOUBLE.fullmatch(base) else base
        if star != "*" or kind not in _C_KINDS:
            return None
        kinds.append(kind)
    return tuple(kinds)


@functools.cache
def _routine(name: str) -> _Routine | None:
    """LAPACK's or BLAS's `name` as a ctypes function of pointers, from the pointer scipy.linalg.cython_lapack
    (or cython_blas) exports: the library scipy's own calls use. None where that scipy exports none, or one
    whose signature takes an argument other than `char *`, `int *` (32 bits) or `double *`."""
    try:
        import scipy.linalg.cython_blas as cython_blas
        import scipy.linalg.cython_lapack as cython_lapack

        capsule = cython_lapack.__pyx_capi__.get(name) or cython_blas.__pyx_capi__[name]
    except (ImportError, AttributeError, KeyError):
        return None
    kinds = _kinds(_signature(capsule))
    if kinds is None:
        return None
    address = _capsule_pointer(capsule, _capsule_name(capsule))
    return _Routine(ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(kinds))(address), kinds)
