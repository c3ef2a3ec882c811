"""The geometry the ops need: the post factors in the base's gauge, matched random rotations, the geodesic.

All functions take and return float64 torch tensors; the geodesic's matrix powers come
from scipy.linalg's real Schur form (`RealSchur`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from orthoscope.kernels import SVD


def gauge_fixed(base: SVD, post: SVD, rtol: float | None = None) -> SVD:
    """The post's thin SVD in the gauge fixed against the base (SPEC "Gauge first"): U_p R, S_p, V_p R.

    R is block-orthogonal over the blocks of post singular values equal within
    `rtol * s_p,1` (default `metrics.rotations.GAUGE_RTOL` = 1e-5, the tolerance of the `rot`
    column, so matched controls get the size the table reports) and makes every
    diagonal block of Q_U = U_b^T U_p R symmetric positive semi-definite: for a
    simple singular value the joint flip of (u_p,i, v_p,i) that gives
    u_b,i . u_p,i >= 0; for a cluster the polar factor of its block of Q_U
    (`metrics.fix_gauge`, the one implementation of the rule). A joint flip leaves
    U_p S_p V_p^T unchanged exactly; a cluster's rotation changes it by at most the
    spread of the cluster's singular values (<= (k - 1) rtol s_p,1 for k values).

    >>> from orthoscope.kernels import svd
    >>> W = torch.diag(torch.tensor([3., 2., 1.], dtype=torch.float64))
    >>> post = svd(W)
    >>> flipped = type(post)(U=-post.U, S=post.S, V=-post.V)   # the same W_p, signs flipped
    >>> fixed = gauge_fixed(svd(W), flipped)
    >>> torch.diagonal(fixed.U.T @ post.U).tolist(), bool(torch.allclose(compose(fixed.U, fixed.S, fixed.V), W))
    ([1.0, 1.0, 1.0], True)
    """
    from orthoscope.metrics.rotations import GAUGE_RTOL, fix_gauge, overlaps

    rows = post.U.shape[0]
    # fix_gauge applies the same R to the columns of its second argument: here both post factors
    _, factors = fix_gauge(overlaps(base.U, post.U), torch.cat([post.U, post.V]), post.S,
                           GAUGE_RTOL if rtol is None else rtol)
    return type(post)(U=factors[:rows], S=post.S, V=factors[rows:])


def sign_flips(base: SVD, post: SVD) -> int:
    """How many post pairs the SVD returned with u_b,i . u_p,i < 0 (what `gauge_fixed` flips for simple values).

    >>> from orthoscope.kernels import svd
    >>> f = svd(torch.eye(3, dtype=torch.float64))
    >>> sign_flips(f, type(f)(U=-f.U, S=f.S, V=-f.V))
    3
    """
    return int((torch.diagonal(base.U.T @ post.U) < 0).sum().item())


def compose(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """U diag(S) V^T.

    >>> compose(torch.eye(2, dtype=torch.float64), torch.tensor([2., 3.], dtype=torch.float64),
    ...         torch.eye(2, dtype=torch.float64)).tolist()
    [[2.0, 0.0], [0.0, 3.0]]
    """
    return (U * S) @ V.T


def random_rotation(r: int, size: float, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal R = expm(theta K), K random skew, with ||R - I||_F / (2 sqrt r) = size.

    With K = Z diag(i lambda) Z^H, ||expm(theta K) - I||_F^2 = sum_j 2 (1 - cos(theta lambda_j)),
    so theta is found by bisection on that closed form (one eigendecomposition, one
    expm). `size` above the largest value reachable on the first monotone stretch
    gives the closest reachable rotation.

    >>> R = random_rotation(6, 0.1, torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(R.T @ R, torch.eye(6, dtype=torch.float64)))
    True
    >>> round(torch.linalg.matrix_norm(R - torch.eye(6, dtype=torch.float64)).item() / (2 * 6 ** 0.5), 9)
    0.1
    """
    A = torch.randn(r, r, generator=generator, dtype=torch.float64)
    K = A - A.T
    K = K / torch.linalg.matrix_norm(K).clamp(min=1e-300)
    if r < 2 or size <= 0:
        return torch.eye(r, dtype=torch.float64)
    lam = torch.linalg.eigvalsh(1j * K.to(torch.complex128)).abs()
    target = (2 * math.sqrt(r) * size) ** 2

    def energy(theta: float) -> float:  # 2 (1 - cos x) as 4 sin^2(x / 2): no cancellation for tiny rotations
        return float((4 * torch.sin(theta * lam / 2) ** 2).sum())

    lo, hi = 0.0, math.pi / float(lam.max())  # energy rises monotonically on [0, pi / max lambda]
    if energy(hi) <= target:
        return torch.linalg.matrix_exp(hi * K)
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if energy(mid) < target else (lo, mid)
    return torch.linalg.matrix_exp((lo + hi) / 2 * K)


def orthogonal_power(O: np.ndarray, t: float) -> np.ndarray:
    """O^t = expm(t L) for an orthogonal O, with L its real (skew) principal logarithm; O itself at t = 1.

    One real Schur form O = Z T Z^T (`RealSchur`) gives O^t = Z T^t Z^T block by block.
    (This is scipy's logm followed by expm, without them: 4-6x faster.) `SideMap` keeps that form
    and calls its `power` for every t.

    >>> c, s = math.cos(0.6), math.sin(0.6)
    >>> np.round(orthogonal_power(np.array([[c, -s], [s, c]]), 0.5), 6).tolist() == np.round(
    ...     [[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]], 6).tolist()
    True
    >>> (np.round(orthogonal_power(-np.eye(2), 0.5) @ orthogonal_power(-np.eye(2), 0.5), 12) + 0.0).tolist()
    [[-1.0, 0.0], [0.0, -1.0]]
    """
    k = O.shape[0]
    if k == 0 or t == 1:
        return O.copy()
    if t == 0:
        return np.eye(k, dtype=O.dtype)
    return RealSchur.of(O).power(t)


@dataclasses.dataclass(frozen=True)
class RealSchur:
    """The real Schur form O = Z T Z^T of an orthogonal O, T kept as what it is: 2 x 2 rotations by theta, +1s,
    and -1s paired into rotations by pi (T's off-block entries are rounding). When the count of -1s is odd
    (det O = -1: no real logarithm exists) `improper` keeps O itself and `power` takes the principal
    branch's real part, exact at t = 0 and t = 1 but not orthogonal in between.

    >>> form = RealSchur.of(np.array([[0.0, -1.0], [1.0, 0.0]]))   # a quarter turn
    >>> form.rotations[0][:2], round(form.rotations[0][2], 12), form.ones, form.improper
    ((0, 1), 1.570796326795, (), None)
    >>> np.round(form.power(0.5) @ form.power(0.5), 12).tolist()
    [[0.0, -1.0], [1.0, 0.0]]
    """

    Z: np.ndarray
    rotations: tuple[tuple[int, int, float], ...]
    ones: tuple[int, ...]
    improper: np.ndarray | None

    @classmethod
    def of(cls, O: np.ndarray) -> RealSchur:
        import scipy.linalg

        T, Z = scipy.linalg.schur(O, output="real")
        k = T.shape[0]
        rotations, ones, minus, i = [], [], [], 0
        while i < k:
            if i + 1 < k and abs(T[i + 1, i]) > 1e-12:  # a 2 x 2 rotation block
                theta = math.atan2((T[i + 1, i] - T[i, i + 1]) / 2, (T[i, i] + T[i + 1, i + 1]) / 2)
                rotations.append((i, i + 1, theta))
                i += 2
            else:
                (minus if T[i, i] < 0 else ones).append(i)
                i += 1
        rotations += [(a, b, math.pi) for a, b in zip(minus[::2], minus[1::2])]
        return cls(Z, tuple(rotations), tuple(ones), O.copy() if len(minus) % 2 else None)

    def power(self, t: float) -> np.ndarray:
        """O^t = Z T^t Z^T, T^t rotating each block by t theta."""
        import scipy.linalg

        if self.improper is not None:
            T, Z = scipy.linalg.schur(self.improper.astype(np.complex128), output="complex")
            return np.real((Z * np.diag(T) ** t) @ Z.conj().T)
        P = np.zeros((self.Z.shape[0],) * 2, dtype=self.Z.dtype)
        for a, b, theta in self.rotations:
            c, s = math.cos(t * theta), math.sin(t * theta)
            P[a, a], P[a, b], P[b, a], P[b, b] = c, -s, s, c
        P[self.ones, self.ones] = 1.0
        return (self.Z @ P) @ self.Z.T


def geodesic_factors(maps: GeodesicMaps, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U(t), V(t), sign(t)) on the geodesic `maps` describes (`geodesic_maps`): W(t) = U(t) diag(sign(t) S(t)) V(t)^T.

    Exact at t = 0 (U_b, V_b, +1) and t = 1 (the same product as U_p S_p V_p^T).

    >>> from orthoscope.kernels import svd
    >>> W_b, W_p = torch.eye(3, dtype=torch.float64), torch.diag(torch.tensor([3., 2., 1.], dtype=torch.float64))
    >>> U, V, sign = geodesic_factors(geodesic_maps(svd(W_b), svd(W_p)), 1.0)
    >>> bool(torch.allclose(compose(U, sign * svd(W_p).S, V), W_p))
    True
    """
    sign = torch.ones(maps.rank, dtype=maps.u.B.dtype)
    if maps.sign_flips:
        sign[maps.rank - 1] = 1 - 2 * t
    return maps.u.along(maps.rank, t), maps.v.along(maps.rank, t), sign


@dataclasses.dataclass(frozen=True)
class SideMap:
    """One side of the geodesic: an orthonormal basis B of span[X_b, X_p] (its first r columns X_b) and the real
    Schur form of the proper orthogonal O with B O[:, :r] = X_p, taken once for every t (O itself is not kept:
    the form holds as much)."""

    B: torch.Tensor
    schur: RealSchur | None

    @classmethod
    def of(cls, B: torch.Tensor, O: torch.Tensor) -> SideMap:
        return cls(B, RealSchur.of(O.cpu().numpy()) if O.numel() else None)

    def along(self, r: int, t: float) -> torch.Tensor:
        """B O^t [:, :r]: the first r columns of the basis moved a fraction t of the way (X_b itself at t = 0)."""
        if t == 0 or self.schur is None:
            return self.B[:, :r]
        return self.B @ torch.from_numpy(np.ascontiguousarray(self.schur.power(t)[:, :r])).to(self.B)


@dataclasses.dataclass(frozen=True)
class GeodesicMaps:
    """What `geodesic_factors` needs whatever t: both sides' maps, the rank r, and whether the smallest pair's
    singular value changes sign along the path. `MatrixPair.geodesic` keeps one per pair (the one cache)."""

    u: SideMap
    v: SideMap
    rank: int
    sign_flips: bool


def geodesic_maps(base: SVD, post: SVD, tol: float = 1e-9) -> GeodesicMaps:
    """The t-independent part of the geodesic from W_b to W_p: on each side the orthogonal map of span[X_b, X_p]
    (`orthogonal_map`) taking X_b to X_p, made proper so that its real logarithm exists.

    The post factors are those of the shared gauge (`gauge_fixed`, SPEC "Gauge first":
    u_b,i . u_p,i >= 0 for a simple value), at rtol 0: only exactly equal values form a
    block, since a rotation inside a block of merely close values would move U_p S_p V_p^T
    by their spread and W(1) would no longer be W_p. One step goes beyond the gauge,
    because a real logarithm needs det O = +1 and the gauge does not fix the determinant
    (two near-degenerate pairs that swapped give a block [[0, 1], [1, 0]] with det -1):
    when both sides are improper, or a square side is and the other is rectangular, the
    weakest pair (smallest |u_b,i . u_p,i| + |v_b,i . v_p,i|) is flipped on both sides,
    which leaves W_p unchanged and turns a swap into a quarter turn. A rectangular side
    still improper flips its least aligned completion column instead (X_p untouched). A
    square matrix whose determinant changes sign cannot be joined without passing through
    a singular matrix: the smallest pair is flipped on one side and its singular value
    follows sign(t) = 1 - 2t.

    >>> from orthoscope.kernels import svd
    >>> f = svd(torch.diag(torch.tensor([3., 2., 1.], dtype=torch.float64)))
    >>> flipped = type(f)(U=-f.U, S=f.S, V=-f.V)   # the same matrix: the geodesic to it stays put
    >>> maps = geodesic_maps(f, flipped)
    >>> bool(torch.allclose(geodesic_factors(maps, 0.5)[0], f.U)), maps.sign_flips
    (True, False)
    """
    gauge = gauge_fixed(base, post, rtol=0.0)
    U_b, V_b, U_p, V_p = base.U, base.V, gauge.U, gauge.V
    r = U_b.shape[1]
    (B_u, O_u), (B_v, O_v) = orthogonal_map(U_b, U_p, tol), orthogonal_map(V_b, V_p, tol)
    improper = [bool(torch.linalg.det(O) < 0) for O in (O_u, O_v)]
    square = [O.shape[0] == r for O in (O_u, O_v)]
    flips = False
    if all(improper) or (any(improper) and not all(square) and square[improper.index(True)]):
        weakest = int(torch.argmin((U_b * U_p).sum(0).abs() + (V_b * V_p).sum(0).abs()))
        O_u[:, weakest], O_v[:, weakest] = -O_u[:, weakest], -O_v[:, weakest]
    elif any(improper) and all(square):
        O = (O_u, O_v)[improper.index(True)]
        O[:, r - 1] = -O[:, r - 1]
        flips = True
    _make_proper(O_u, r)
    _make_proper(O_v, r)
    return GeodesicMaps(SideMap.of(B_u, O_u), SideMap.of(B_v, O_v), r, flips)


def orthogonal_map(X_b: torch.Tensor, X_p: torch.Tensor, tol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, O): an orthonormal basis B = [X_b, N] of span[X_b, X_p] and the orthogonal O with B O[:, :r] = X_p."""
    B = torch.cat([X_b, _outside(X_b, X_p, tol)], dim=1)
    P = B.T @ X_p
    O = P if B.shape[1] == X_b.shape[1] else torch.cat([P, _completion(P)], dim=1)
    return B, O.clone()


def _make_proper(O: torch.Tensor, r: int) -> None:
    """det O = +1 by flipping the least aligned completion column (only where O has one)."""
    if O.shape[0] > r and torch.linalg.det(O) < 0:
        j = r + int(torch.argmin(torch.diagonal(O)[r:]))
        O[:, j] = -O[:, j]


def _outside(X_b: torch.Tensor, X_p: torch.Tensor, tol: float) -> torch.Tensor:
    """An orthonormal basis of the part of span X_p outside span X_b (two projection passes)."""
    n, r = X_b.shape
    residual = X_p - X_b @ (X_b.T @ X_p)
    residual = residual - X_b @ (X_b.T @ residual)
    A, s, _ = torch.linalg.svd(residual, full_matrices=False)
    N = A[:, s > tol][:, : n - r]
    if N.shape[1] == 0:
        return N
    N = N - X_b @ (X_b.T @ N)
    return torch.linalg.qr(N)[0]


def _completion(P: torch.Tensor) -> torch.Tensor:
    """k x (k - r) orthonormal columns orthogonal to P (k x r), closest to [0; I]."""
    k, r = P.shape
    M = torch.linalg.qr(P, mode="complete")[0][:, r:]
    A, _, Bh = torch.linalg.svd(M[r:, :].T)
    return M @ (A @ Bh)


def interpolated_values(s_b: torch.Tensor, s_p: torch.Tensor, t: float) -> torch.Tensor:
    """S(t) = S_b^(1-t) S_p^t (exact at t = 0 and 1); linear where either value is zero.

    >>> interpolated_values(torch.tensor([4.0, 0.0]), torch.tensor([1.0, 2.0]), 0.5).tolist()
    [2.0, 1.0]
    """
    geometric = s_b ** (1 - t) * s_p**t
    linear = (1 - t) * s_b + t * s_p
    return torch.where((s_b > 0) & (s_p > 0), geometric, linear)


def dropped_share(U_b: torch.Tensor, V_b: torch.Tensor, W_p: torch.Tensor) -> float:
    """||W_p - P(W_p)||_F / ||W_p||_F with P(W) = U_b U_b^T W V_b V_b^T: what base subspaces cannot hold.

    >>> U = torch.eye(3, 2, dtype=torch.float64)
    >>> W_p = torch.tensor([[1., 0.], [0., 0.], [0., 1.]], dtype=torch.float64)
    >>> round(dropped_share(U, torch.eye(2, dtype=torch.float64), W_p), 12)  # half the energy: 1/sqrt 2
    0.707106781187
    """
    projected = U_b @ (U_b.T @ W_p @ V_b) @ V_b.T
    norm = torch.linalg.matrix_norm(W_p).item()
    return torch.linalg.matrix_norm(W_p - projected).item() / norm if norm > 0 else 0.0
