"""Top singular values of a matrix by randomized block Krylov iteration (no full SVD).

The basis is the block Krylov space K = [A Ω, (A Aᵀ) A Ω, ..., (A Aᵀ)^depth A Ω] of a
seeded Gaussian block Ω (Musco & Musco, "Randomized block Krylov methods for stronger
and faster approximate singular value decomposition", NeurIPS 2015), built one block at a
time with each new block orthogonalized twice against the earlier ones (block Lanczos
with full reorthogonalization). The Ritz values, the singular values of Qᵀ A for the
orthonormal basis Q of K, never exceed the true ones (Cauchy interlacing).

Cost: 2 depth + 2 products of A with `block` columns, all in A's dtype. The products
Aᵀ Y of the iteration are kept, so Qᵀ A needs one product with the last block only,
not a product with the whole basis; the Ritz values are the singular values of that
n x block (depth + 1) matrix.
"""

from __future__ import annotations

import torch

KRYLOV_BLOCK, KRYLOV_DEPTH = 16, 4  # delta_top16's estimator: 80 directions, 10 products


def krylov_values(A: torch.Tensor, seed: int = 0, block: int = KRYLOV_BLOCK, depth: int = KRYLOV_DEPTH) -> torch.Tensor:
    """The block (depth + 1) Ritz values of A (descending), lower bounds of its top singular values.

    Exact (every singular value) when the short side of A is at most block (depth + 1).
    The random block is drawn from its own generator seeded by `seed` (the global RNG is left alone).

    >>> A = torch.diag(torch.tensor([3.0, 1.0] + [0.0] * 98, dtype=torch.float64))
    >>> [round(v, 12) for v in krylov_values(A, block=4, depth=2)[:3].tolist()]
    [3.0, 1.0, 0.0]
    """
    tall = A if A.shape[0] >= A.shape[1] else A.mT
    n = tall.shape[1]
    if n <= block * (depth + 1):
        return torch.linalg.svdvals(tall)
    generator = torch.Generator(device=tall.device).manual_seed(seed)
    Y = _orth(tall @ torch.randn(n, block, generator=generator, dtype=tall.dtype, device=tall.device))
    basis, products = [Y], []
    for _ in range(depth):
        P = tall.mT @ Y
        products.append(P)
        Y = tall @ _orth(P)
        Q = torch.cat(basis, 1)
        for _ in range(2):  # "twice is enough": orthogonal to the earlier blocks to working precision
            Y = Y - Q @ (Q.mT @ Y)
        Y = _orth(Y)
        basis.append(Y)
    products.append(tall.mT @ Y)
    Q = torch.cat(basis, 1)
    gap = (Q.mT @ Q - torch.eye(Q.shape[1], dtype=Q.dtype, device=Q.device)).abs().max().item()
    if gap > 100 * torch.finfo(Q.dtype).eps:  # a block that vanished (A of low rank): orthonormalize afresh
        return torch.linalg.svdvals(tall.mT @ _orth(Q))
    return torch.linalg.svdvals(torch.cat(products, 1))


def _orth(Y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(Y).Q
