"""Thin SVDs, computed on the tall orientation with LAPACK's gesdd (via torch).

Transposing a wide matrix before the SVD is 2.5-4.4x faster on CPU; the factors
are swapped back, so callers always get `W = U diag(S) V^T` for the W they gave.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.kernels.lapack import gram_update, values_and_top, values_only
from orthoscope.kernels.threads import blas_limit, full_count, kernel, torch_threads
from orthoscope.tuning import process_tuned


@dataclass
class SVD:
    """Thin SVD `W = U diag(S) V^T`, singular values descending.

    >>> f = svd(torch.eye(3, 2, dtype=torch.float64))
    >>> f.U.shape, f.S.tolist(), f.V.shape
    (torch.Size([3, 2]), [1.0, 1.0], torch.Size([2, 2]))
    """

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor


def resolve_device(device: str) -> torch.device:
    """`cpu` or `cuda[:i]`; a clear error when CUDA is asked for and absent."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OrthoscopeError(f"device {device!r} was asked for but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise OrthoscopeError(f"unsupported device {device!r} (use cpu or cuda)")
    return dev


@kernel
def svd(W: torch.Tensor, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> SVD:
    """Thin SVD of `W` in `dtype` on `device`, via the tall orientation.

    >>> W = torch.randn(4, 9, dtype=torch.float64)
    >>> f = svd(W)
    >>> torch.allclose(f.U @ torch.diag(f.S) @ f.V.T, W)
    True
    """
    W = W.to(device=device, dtype=dtype)
    if W.shape[0] < W.shape[1]:
        A, S, Bh = torch.linalg.svd(W.T, full_matrices=False)
        return SVD(U=Bh.T, S=S, V=A)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return SVD(U=U, S=S, V=Vh.T)


@kernel
def svdvals(W: torch.Tensor, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """Singular values only (no vectors), descending, via the tall orientation."""
    W = W.to(device=device, dtype=dtype)
    return torch.linalg.svdvals(W.T if W.shape[0] < W.shape[1] else W)


# eigvalsh of the f64 Gram matrix gives s_i with relative error about
# eps_64 * (s_1 / s_i)^2 times a modest factor of the size (forming W^T W adds its own
# rounding): about 1e-6 at this ratio, 1e-4 at worst on large matrices; below it svdvals is used.
GRAM_MIN_RATIO = 1e-5


def singular_values(W: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Singular values of `W` in float64, descending, by the cheapest accurate route.

    The float64 Gram matrix of the small side and a values-only symmetric eigensolve,
    several times cheaper than `svdvals`; when the spectrum spans more than
    1/GRAM_MIN_RATIO, squaring would cost accuracy, so `svdvals` in float64 is used
    instead. `W` may be in any floating dtype (on CPU it is converted a block at a time).

    >>> W = torch.randn(50, 20, dtype=torch.float64)
    >>> torch.allclose(singular_values(W), torch.linalg.svdvals(W))
    True
    >>> W32 = W.T.float()  # any dtype: the values of the matrix as stored, to float64 accuracy
    >>> torch.allclose(singular_values(W32), torch.linalg.svdvals(W32.double()), rtol=1e-12)
    True
    """
    return _spectrum(W, device, 0)[0]


def values_and_top_left(W: torch.Tensor, k: int,
                        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`singular_values(W)` (the same numbers) and the left singular vectors of its k largest values, m x k float64.

    From the same float64 Gram matrix of the small side: a subset eigensolve (LAPACK's syevr, only the
    k eigenvectors asked for) beside the values-only one. For a wide W that Gram is W W^T, whose
    eigenvectors are the left vectors; for a tall W it is W^T W, whose eigenvectors v_i give
    u_i = W v_i / ||W v_i||. An eigenvector of the Gram is off by about n eps_64 s_1^2 / (s_i^2 - s_j^2)
    (j its nearest neighbour), and u_i by at most s_1 / s_i times that: the vectors of a gap that
    float64 resolves, with no SVD of W (docs/method.md, intruders). Each vector's sign is arbitrary.

    >>> W = torch.randn(50, 20, dtype=torch.float64)
    >>> s, U = values_and_top_left(W, 3)
    >>> f = svd(W)
    >>> torch.equal(s, singular_values(W)), torch.allclose((f.U[:, :3] * U).sum(0).abs(), torch.ones(3, dtype=W.dtype))
    (True, True)
    >>> torch.allclose((svd(W.T).U[:, :3] * values_and_top_left(W.T, 3)[1]).sum(0).abs(), torch.ones(3, dtype=W.dtype))
    True
    """
    k = min(k, *W.shape)
    values, vectors = _spectrum(W, device, k)
    if W.shape[0] < W.shape[1]:  # the Gram is W W^T: its eigenvectors are the left vectors
        return values, vectors
    left = times_f64(W.to(vectors.device), vectors)  # W v_i = s_i u_i
    return values, left / torch.linalg.vector_norm(left, dim=0).clamp(min=torch.finfo(torch.float64).tiny)


def _spectrum(W: torch.Tensor, device: torch.device | str, top: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`singular_values(W)` and (`top` > 0) the eigenvectors of the small side's Gram for its `top` largest
    eigenvalues, in descending order (side x top, float64; None for top = 0)."""
    W = W.to(device=device)
    if W.device.type == "cpu":
        gram_values, vectors = _gram_eigen_cpu(W, top)
    else:
        tall = W.double().T if W.shape[0] < W.shape[1] else W.double()
        gram = tall.T @ tall
        if top:  # one eigensolve gives both
            gram_values, every = torch.linalg.eigh(gram)
            vectors = every[:, gram.shape[0] - top:]
        else:
            gram_values, vectors = torch.linalg.eigvalsh(gram), None
    eigenvalues = gram_values.flip(0).clamp(min=0)
    vectors = vectors.flip(1) if vectors is not None else None
    largest = eigenvalues[0]
    if largest == 0 or eigenvalues[-1] < (GRAM_MIN_RATIO ** 2) * largest:
        return svdvals(W, torch.float64, W.device), vectors
    return eigenvalues.sqrt(), vectors


GRAM_BLOCK = 1 << 18  # elements of W converted to float64 at a time (2 MiB)


SYRK_BLOCK = 1 << 20  # elements of W converted to float64 per dsyrk call (8 MiB)


def _gram_eigen_cpu(W: torch.Tensor, top: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eigenvalues (ascending) of the small side's Gram matrix (W^T W, or W W^T for a wide W) in float64, and
    (`top` > 0) the eigenvectors of its `top` largest (side x top, ascending), both from one reduction of the
    Gram to tridiagonal form (`kernels.lapack.values_and_top`: the values of `dsyev`, the vectors of a subset
    solve), else `dsyevr` on a copy beside the values-only solve.

    The Gram matrix is accumulated by BLAS `dsyrk` (half a GEMM's flops) over blocks of W
    converted to float64 (no float64 copy of W), and LAPACK's values-only `dsyev` solves
    it, both scipy's BLAS and LAPACK (called by `kernels.lapack`, which lets go of Python's GIL for
    each call) with as many threads as torch was given. For that
    stretch torch itself runs one thread: its idle OpenMP threads would otherwise spin
    beside the BLAS threads. About half the time of torch's float64 GEMM for the Gram, as
    accurate (the lower triangle, which LAPACK's reduction handles best for spectra decaying
    along the diagonal); docs/benchmarks.md has the figures. In a tuned process
    (`orthoscope.tuning`) OpenBLAS's threads spin only briefly after each call
    (`BLAS_SPIN_LOG2_CYCLES`), leaving the cores to the torch work that follows.

    >>> X = torch.randn(30, 7, dtype=torch.float64)
    >>> torch.allclose(_gram_eigen_cpu(X)[0], torch.linalg.eigvalsh(X.T @ X))
    True
    >>> torch.allclose(_gram_eigen_cpu(X.T)[0], torch.linalg.eigvalsh(X.T @ X))
    True
    """
    eigh, threads = _scipy_lapack()
    W = W.detach()
    rows, cols = W.shape
    wide = rows < cols
    side = rows if wide else cols
    step = max(1, SYRK_BLOCK // side)
    blocks = ((W[:, i:i + step] if wide else W[i:i + step].T) for i in range(0, cols if wide else rows, step))
    workers = full_count()
    with torch_threads(1), blas_limit(threads, workers):
        gram = np.zeros((side, side), dtype=np.float64, order="F")
        for block in blocks:  # gram += B B^T, B = side x step (its transpose is C-ordered: no copy)
            B = block.to(torch.float64).T.contiguous().numpy().T
            gram = gram_update(gram, B)
        both = values_and_top(gram, top) if top else None  # one reduction for the values and the vectors
        if both is not None:
            values, vectors = both
        else:
            vectors = None
            if top:  # before the values-only solve, which overwrites the Gram
                vectors = eigh(gram, lower=True, subset_by_index=[side - top, side - 1], driver="evr",
                               check_finite=False)[1]
            values = values_only(gram)  # dsyev, as eigh(driver="ev") calls it, without holding the GIL
            if values is None:
                values = eigh(gram, eigvals_only=True, lower=True, driver="ev", overwrite_a=True, check_finite=False)
    return torch.from_numpy(values), None if vectors is None else torch.from_numpy(vectors)


@functools.cache
def _scipy_lapack():
    """scipy's eigh, and a controller of its BLAS thread pool (made after scipy is loaded).

    OpenBLAS's wait is shortened here only in a process that opted in (`orthoscope.tuning`).
    """
    import threadpoolctl
    from scipy.linalg import eigh

    controller = threadpoolctl.ThreadpoolController()
    if process_tuned():
        _shorten_blas_spin(controller)
    return eigh, controller


def scipy_blas_controller():
    """The controller of scipy's and numpy's BLAS pools, scipy's LAPACK loaded (and OpenBLAS's wait set, when
    tuned) first: what `kernels.threads.lanes` limits before jobs run side by side."""
    return _scipy_lapack()[1]


def apply_blas_tuning() -> None:
    """Shorten OpenBLAS's wait now if scipy's LAPACK is already loaded (`orthoscope.tune_process` calls it)."""
    if _scipy_lapack.cache_info().currsize:
        _shorten_blas_spin(_scipy_lapack()[1])


# OpenBLAS's workers busy-wait 2^THREAD_TIMEOUT cycles for the next call before they sleep:
# 2^28 (about 0.1 s) by default, long enough to hold a core through the torch work that follows
# the eigensolve. 2^20 cycles (about 0.4 ms) still bridges the gaps between the BLAS calls inside
# one LAPACK routine; at the floor (2^4) every one of them pays a wake-up (docs/benchmarks.md).
BLAS_SPIN_LOG2_CYCLES = 20
_SPIN_SHORTENED = False


def _shorten_blas_spin(controller) -> None:
    """Set the process's OpenBLAS libraries (pthreads builds: scipy's, numpy's) to spin `BLAS_SPIN_LOG2_CYCLES`.

    Unless OPENBLAS_THREAD_TIMEOUT is set: the user's choice stands. OpenBLAS reads its
    variables when it is loaded; `openblas_read_env` reads them again and
    `blas_thread_shutdown_` ends the workers started with the old wait (the next call starts
    new ones). The variable is set only for that read: child processes keep theirs. Once per
    process, from the thread that runs the kernels.
    """
    global _SPIN_SHORTENED
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or _SPIN_SHORTENED:  # the user's choice stands; once only
        return
    _SPIN_SHORTENED = True
    for lib in controller.select(internal_api="openblas").lib_controllers:
        if getattr(lib, "threading_layer", None) != "pthreads":
            continue
        read_env = getattr(lib.dynlib, "openblas_read_env", None)
        shutdown = getattr(lib.dynlib, "blas_thread_shutdown_", None)
        if read_env is None or shutdown is None:
            continue
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_SPIN_LOG2_CYCLES)
        try:
            read_env()
        finally:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
        shutdown()


@kernel
def top_subspaces(W: torch.Tensor, factors: SVD, k: int, extra: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k left and right singular subspaces of `W` to float64 accuracy, from low-precision factors.

    A float32 SVD moves span(U[:, :k]) by about eps_32 ||W|| / (s_k - s_k+1), which is
    large where the spectrum is dense. One Rayleigh-Ritz step in float64 on the
    `k + extra` leading vectors of `factors` brings it to the float64 answer within
    about eps_32 ||W|| / (s_k - s_k+extra+1) (rounding of W itself aside), at the cost of one m x n x (k + extra)
    product and the SVD of an m x (k + extra) matrix (tall orientation). Returns
    (U_k, V_k) with orthonormal float64 columns; exact factors give their own spans back.

    >>> W = torch.randn(60, 40, dtype=torch.float64)
    >>> U, V = top_subspaces(W, svd(W, torch.float32), 5)
    >>> f = svd(W)
    >>> bool(torch.linalg.svdvals(U.T @ f.U[:, :5]).min() > 1 - 1e-12)
    True
    """
    wide = W.shape[0] < W.shape[1]
    right = factors.U if wide else factors.V
    p = min(k + extra, right.shape[1])
    if p == right.shape[1]:  # the refinement would cover the whole matrix: one float64 SVD is the same answer
        exact = svd(W.to(factors.S.device), torch.float64, factors.S.device)
        return exact.U[:, :k], exact.V[:, :k]
    basis = torch.linalg.qr(right[:, :p].double())[0]
    A, _, Zh = torch.linalg.svd(times_f64(W.to(factors.S.device), basis, transpose=wide), full_matrices=False)
    left_k, right_k = A[:, :k], basis @ Zh[:k].T
    return (right_k, left_k) if wide else (left_k, right_k)


@kernel
def times_f64(W: torch.Tensor, B: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """W @ B (or W^T @ B) in float64 for W in any dtype, converting W a block of rows at a time (no float64 copy).

    >>> W, B = torch.randn(7, 5), torch.randn(5, 2, dtype=torch.float64)
    >>> torch.allclose(times_f64(W, B), W.double() @ B), torch.allclose(times_f64(W.T, B, True), W.double() @ B)
    (True, True)
    """
    rows, cols = W.shape
    step = max(1, GRAM_BLOCK // max(cols, 1))
    if transpose:  # W^T B = sum over row blocks of W: W[i]^T B[i]
        out = torch.zeros(cols, B.shape[1], dtype=torch.float64, device=B.device)
        for start in range(0, rows, step):
            out.addmm_(W[start:start + step].to(torch.float64).T, B[start:start + step])
        return out
    out = torch.empty(rows, B.shape[1], dtype=torch.float64, device=B.device)
    for start in range(0, rows, step):
        torch.mm(W[start:start + step].to(torch.float64), B, out=out[start:start + step])
    return out
