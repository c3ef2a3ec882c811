"""The Gaussian null W_null = a_fro W_b + G, ||G||_F = ||W_p - a_fro W_b||_F, drawn in the base frame.

Exact in distribution, no m-sized product: on the tall side (m >= n = r),
[U_b U_perp]^T W_null V_b = [[a S_b + Z_1], [Z_2]] with Z = [Z_1; Z_2] i.i.d. Gaussian
(rotation invariance of G), and Z_2 enters the SVD only through its triangular factor R
(Z_2 = Q R; Bartlett: R_ii ~ chi(m - r - i + 1), R_ij ~ N(0, 1) above the diagonal), so the
null's SVD is that of N = [[a S_b + Z_1], [R]], at most 2r x r, with Q_U = U_N[:r], Q_V = V_N
(left and right swap for a wide W). Its columns are `columns.GaussianNull`.
"""

from __future__ import annotations

import numpy as np
import torch


def null_frame(s_b: torch.Tensor, a: float, size: float, long_side: int, generator: torch.Generator) -> torch.Tensor:
    """N = [[a S_b + Z_1], [R]] (float64): the Gaussian null in the base frame, ||[Z_1; R]||_F = `size`.

    Z_1 is r x r Gaussian; R is the triangular factor of the (long_side - r) x r Gaussian Z_2
    (drawn by Bartlett's decomposition when long_side >= 2r, else Z_2 itself).

    >>> N = null_frame(torch.tensor([3.0, 1.0], dtype=torch.float64), 1.0, 0.5, 9, torch.Generator().manual_seed(0))
    >>> expected = torch.eye(4, 2, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    >>> N.shape, round(torch.linalg.matrix_norm(N - expected).item(), 12)
    (torch.Size([4, 2]), 0.5)
    """
    r = s_b.numel()
    p = long_side - r
    Z = torch.empty(r + min(p, r), r, dtype=torch.float64)  # [Z_1; R], filled in place
    _normal(generator, Z[:r])
    R = Z[r:]
    if p >= r:
        _normal(generator, R).triu_(1)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        R.diagonal().copy_(torch.from_numpy(np.sqrt(np.random.default_rng(seed).chisquare(p - np.arange(r)))))
    else:
        _normal(generator, R)
    Z *= size / torch.linalg.matrix_norm(Z).clamp(min=1e-300).item()
    Z.diagonal().add_(a * s_b)  # the top block's diagonal: a S_b + Z_1
    return Z


def _normal(generator: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """`out` (float64) filled with standard normal draws made in float32 (4.5x faster here; a null's draw needs
    no more)."""
    return out.copy_(torch.randn(*out.shape, generator=generator, dtype=torch.float32))
