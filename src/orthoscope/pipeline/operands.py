"""What a matrix's stages read: the base prepared once for every post (`Base`), the exact update (`update_of`)
and D, the update in the base frame (`delta_frame`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from orthoscope import metrics as m
from orthoscope.kernels import SVD, singular_values, svd, top_subspaces
from orthoscope.kernels.threads import full_threads
from orthoscope.metrics.columns import TOP_K, Update
from orthoscope.pipeline.cache import SVDCache
from orthoscope.pipeline.checks import check_finite, check_floating


class Base:
    """A base matrix prepared once and reused for every post model.

    `W` is in the working dtype on the working device; `raw` is the tensor as
    stored (its own dtype, on that device), for the exact difference dW, kept only
    when `W` is not an exact copy of it (a float64 tensor analysed in float32). `factors`
    (its SVD) are computed, or read from the cache, on first use: the `quick` set
    never needs them.
    """

    def __init__(self, W: torch.Tensor, factors: SVD | None = None, raw: torch.Tensor | None = None,
                 load: Callable[[], SVD] | None = None):
        self.W, self.raw, self._factors, self._load = W, raw, factors, load
        self._top: tuple[torch.Tensor, torch.Tensor] | None = None
        self._values: torch.Tensor | None = None

    @property
    def factors(self) -> SVD:
        if self._factors is None:
            self._factors = self._load() if self._load is not None else svd(self.W, self.W.dtype, self.W.device)
        return self._factors

    @property
    def stored(self) -> torch.Tensor:
        return self.raw if self.raw is not None else self.W

    def values(self) -> torch.Tensor:
        """The singular values alone (float64, descending), by the values-only route: no SVD, computed once."""
        if self._values is None:
            self._values = singular_values(self.stored, self.W.device)
        return self._values

    def top(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-k left and right subspaces (k = min(r, TOP_K)), float64-accurate; computed once per base."""
        if self._top is None:
            self._top = top_factors(self.stored, self.factors)
        return self._top


def top_factors(W: torch.Tensor, factors: SVD) -> tuple[torch.Tensor, torch.Tensor]:
    """(U[:, :k], V[:, :k]) of `W`, k = min(r, TOP_K): refined in float64 when `factors` are float32."""
    k = min(TOP_K, factors.S.numel())
    if factors.S.dtype == torch.float64:
        return factors.U[:, :k], factors.V[:, :k]
    return top_subspaces(W, factors, k)


def prepare_base(W_b: torch.Tensor, dtype: torch.dtype, device: torch.device,
                 cache: SVDCache | None = None) -> Base:
    """Check `W_b`; its SVD is computed once (or taken from `cache`) when a route first needs it."""
    check_floating(W_b, "base")
    with full_threads():  # conversion and check pass over every entry: faster on every thread
        W = W_b.to(device=device, dtype=dtype)
        check_finite(W, "base", W_b)

    def load() -> SVD:
        key = cache.key(W_b, dtype) if cache is not None else None
        factors = cache.get(key, device) if cache is not None else None
        if factors is None:
            factors = svd(W, dtype, device)
            if cache is not None:
                cache.put(key, factors)
        return factors

    return Base(W, None, None if exact_copy(W_b.dtype, dtype) else W_b.to(device=device), load)


def exact_copy(stored: torch.dtype, dtype: torch.dtype) -> bool:
    """Whether converting a tensor stored as `stored` to `dtype` keeps every value (and distinct bits distinct).

    >>> exact_copy(torch.bfloat16, torch.float32), exact_copy(torch.float64, torch.float32)
    (True, False)
    """
    return torch.promote_types(stored, dtype) == dtype


def update_of(base: Base, W_p: torch.Tensor, dtype: torch.dtype, converted: torch.Tensor | None = None) -> Update:
    """The exact update and its columns: changed, at_noise_floor, rel_delta, frac_unchanged, a_fro.

    `converted` is W_p already in the working dtype: when that dtype is the exact
    difference's (e.g. float32 for bfloat16 weights), dW is formed from it and the
    base's working copy, with no further conversion.
    """
    raw_b = base.stored
    if base.raw is None and converted is not None and exact_copy(W_p.dtype, base.W.dtype) and dtype == base.W.dtype:
        # both working copies are exact (and injective on bits): compare and subtract them directly
        same = m.unchanged_mask(base.W, converted)
        dW = converted - base.W
    else:
        raw_p = W_p.to(raw_b.device)
        same = m.unchanged_mask(raw_b, raw_p)
        dW = m.exact_difference(raw_b, raw_p, dtype)
    unchanged = int(torch.count_nonzero(same))  # 20x faster than a bool sum
    changed = unchanged < same.numel()
    nb2, cross, nd2 = m.norms(raw_b, dW) if changed else (1.0, 0.0, 0.0)
    a_fro_m1 = m.a_fro_minus_one_from(nb2, cross, nd2) if changed else 0.0
    return Update(dW, unchanged, same.numel(), a_fro_m1, m.noise_floor(dtype), nd2, nb2, cross)


def delta_frame(base: Base, update: Update) -> torch.Tensor:
    """D = U_b^T dW V_b - (a_fro - 1) S_b (= U_b^T (W_p - a_fro W_b) V_b without cancellation)."""
    f = base.factors
    with full_threads():  # 2 m n r flops: a kernel
        D = m.one_svd_form(f.U, update.dW, f.V)
    D.diagonal().sub_(update.a_fro_m1 * f.S.to(D.dtype))  # D is a new matrix: in place, no r x r diag(S_b)
    return D
