"""One matrix pair -> one table row: SVDs (kernels) feeding the metrics.

Two routes, chosen by the metrics asked for:
- one-SVD (every asked metric in ONE_SVD_METRICS, all sign-free): the base SVD
  (cacheable), the post singular values by the cheapest exact route, and
  M = U_b^T W_p V_b;
- full: the post SVD too, for the rotation metrics, and the Gaussian null's SVD
  when incons_null is asked for.
Columns a route does not compute are NaN.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from orthoscope import metrics as m
from orthoscope.errors import OrthoscopeError
from orthoscope.kernels import SVD, singular_values, svd
from orthoscope.kernels.precision import F32_SAFE
from orthoscope.pipeline.cache import SVDCache

SCALING_COLUMNS = ("a_geo", "a_fro", "disp", "fit_resid", "stable_rank_base", "stable_rank_post")
METRIC_COLUMNS = (
    "a_geo", "a_fro", "disp", "fit_resid",
    "incons", "coherence", "rot", "rel_incons", "leak_u", "leak_v",
    "asym", "sym_frac", "sym_frac_null", "incons_null",
    "intruders", "stable_rank_base", "stable_rank_post",
)
ONE_SVD_METRICS = frozenset(SCALING_COLUMNS + ("asym", "sym_frac", "sym_frac_null"))
METRIC_SETS = {"all": frozenset(METRIC_COLUMNS), "sign-free": ONE_SVD_METRICS}
RATIO_BINS = 32
INTRUDER_K = 10
INTRUDER_EPS = 0.5
BLOCK = 32


def resolve_metrics(spec: str | Iterable[str] | None) -> frozenset[str]:
    """`all`, `sign-free` (the one-SVD set) or metric names, as a set of columns.

    >>> sorted(resolve_metrics("a_geo,sym_frac"))
    ['a_geo', 'sym_frac']
    >>> resolve_metrics("sign-free") <= ONE_SVD_METRICS
    True
    """
    if spec is None:
        return METRIC_SETS["all"]
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for name in filter(None, names):
        if name in METRIC_SETS:
            chosen |= METRIC_SETS[name]
        elif name in METRIC_COLUMNS:
            chosen.add(name)
        else:
            raise OrthoscopeError(f"unknown metric {name!r} (use all, sign-free or any of {', '.join(METRIC_COLUMNS)})")
    if not chosen:
        raise OrthoscopeError("no metrics asked for")
    return frozenset(chosen)


def needs_post_svd(metrics: frozenset[str]) -> bool:
    """True unless every metric can come from the one-SVD route."""
    return not metrics <= ONE_SVD_METRICS


class SkipMatrix(Exception):
    """This matrix cannot be analysed (the run goes on); the message is the reason."""


@dataclass
class Base:
    """A base matrix prepared once and reused for every post model."""

    W: torch.Tensor
    factors: SVD


def check_finite(W: torch.Tensor, side: str) -> None:
    """Raise SkipMatrix for NaN/Inf entries or an all-zero matrix (on `W` as converted: fast dtypes)."""
    if not torch.isfinite(W).all():
        bad = int((~torch.isfinite(W)).sum())
        raise SkipMatrix(f"{bad} NaN/Inf entries in the {side} matrix")
    if not W.any():
        raise SkipMatrix(f"all-zero {side} matrix (no singular subspace to compare)")


def prepare_base(W_b: torch.Tensor, dtype: torch.dtype, device: torch.device,
                 cache: SVDCache | None = None) -> Base:
    """Check `W_b` and decompose it once (or take its factors from `cache`)."""
    W = W_b.to(device=device, dtype=dtype)
    check_finite(W, "base")
    key = cache.key(W_b, dtype) if cache is not None else None
    factors = cache.get(key, device) if cache is not None else None
    if factors is None:
        factors = svd(W, dtype, device)
        if cache is not None:
            cache.put(key, factors)
    return Base(W, factors)


def null_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, matrix name): the same null whatever the order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def measure(base: Base, W_p: torch.Tensor, name: str, seed: int,
            metrics: frozenset[str] = METRIC_SETS["all"]) -> tuple[dict, dict]:
    """The asked metrics of one pair (others NaN), and its spectra for the .npz.

    Returns (row, arrays): row maps every METRIC_COLUMNS entry to a float;
    arrays holds s_base, s_post, rho_bins, effective_rank and, on the full
    route, the top-left blocks of Q_U and Q_V.
    """
    if W_p.shape != base.W.shape:
        raise SkipMatrix(f"shape {tuple(W_p.shape)} differs from base {tuple(base.W.shape)}")
    W_p = W_p.to(device=base.W.device, dtype=base.W.dtype)
    check_finite(W_p, "post")
    generator = null_generator(seed, name)
    if needs_post_svd(metrics):
        row, s_p, blocks = _full_route(base, W_p, generator, "incons_null" in metrics)
    else:
        row, s_p, blocks = _one_svd_route(base, W_p, generator)
    arrays = {
        "s_base": base.factors.S.double().cpu().numpy(),
        "s_post": s_p.double().cpu().numpy(),
        "rho_bins": m.binned_ratios(base.factors.S.cpu(), s_p.cpu(), RATIO_BINS).numpy(),
        "effective_rank": np.array([m.effective_rank(base.factors.S), m.effective_rank(s_p)]),
        **blocks,
    }
    return {c: row.get(c, math.nan) if _reportable(c, metrics, W_p.dtype) else math.nan for c in METRIC_COLUMNS}, arrays


def _reportable(column: str, metrics: frozenset[str], dtype: torch.dtype) -> bool:
    """A column computed on the way is kept unless float32 is not accurate enough for it and nobody asked for it."""
    return column in metrics or dtype == torch.float64 or column in F32_SAFE


def _one_svd_route(base: Base, W_p: torch.Tensor, generator: torch.Generator) -> tuple[dict, torch.Tensor, dict]:
    s_p = singular_values(W_p, W_p.device)
    row = scaling_metrics(base.factors.S, s_p)
    M = m.one_svd_form(base.factors.U, W_p, base.factors.V)
    row.update(symmetry_metrics(M, base.factors.S, row["a_fro"]))
    row["sym_frac_null"] = gaussian_sym_frac(M.shape[0], generator)
    return row, s_p, {}


def _full_route(base: Base, W_p: torch.Tensor, generator: torch.Generator,
                null_svd: bool) -> tuple[dict, torch.Tensor, dict]:
    post = svd(W_p, base.W.dtype, base.W.device)
    row = scaling_metrics(base.factors.S, post.S)
    Q_U, Q_V = m.overlaps(base.factors.U, post.U), m.overlaps(base.factors.V, post.V)
    row.update(rotation_metrics(Q_U, Q_V, post.S))
    # U_b^T W_p V_b = Q_U S_p Q_V^T exactly (W_p = U_p S_p V_p^T): r x r products instead of m x n ones
    row.update(symmetry_metrics((Q_U * post.S) @ Q_V.T, base.factors.S, row["a_fro"]))
    row["sym_frac_null"] = gaussian_sym_frac(Q_U.shape[0], generator)
    if null_svd:
        row["incons_null"] = null_inconsistency(base, W_p, row["a_fro"], generator)
    return row, post.S, overlap_blocks(Q_U, Q_V, BLOCK)


def overlap_blocks(Q_U: torch.Tensor, Q_V: torch.Tensor, k: int) -> dict:
    """Top-left k x k blocks of Q_U and Q_V, signs fixed so that diag(Q_U) >= 0 (for the report's images)."""
    k = min(k, Q_U.shape[1])
    Q_U, Q_V = Q_U[:k, :k], Q_V[:k, :k]
    signs = torch.where(torch.diagonal(Q_U) >= 0, 1.0, -1.0).to(Q_U.dtype)
    return {"Q_U_block": (Q_U * signs).double().cpu().numpy(), "Q_V_block": (Q_V * signs).double().cpu().numpy()}


def scaling_metrics(s_b: torch.Tensor, s_p: torch.Tensor) -> dict:
    rho = m.ratios(s_b, s_p)
    a = m.a_geo(rho)
    return {
        "a_geo": a,
        "a_fro": m.a_fro(s_b, s_p),
        "disp": m.dispersion(rho),
        "fit_resid": m.fit_resid(s_b, s_p, a),
        "stable_rank_base": m.stable_rank(s_b),
        "stable_rank_post": m.stable_rank(s_p),
    }


def _gauge_rtol(dtype: torch.dtype) -> float:
    return 100 * torch.finfo(dtype).eps


def rotation_metrics(Q_U: torch.Tensor, Q_V: torch.Tensor, s_p: torch.Tensor) -> dict:
    fixed_U, _ = m.fix_gauge(Q_U, Q_V, s_p, _gauge_rtol(Q_U.dtype))
    incons, rot = m.inconsistency(Q_U, Q_V), m.rotation_size(fixed_U)
    return {
        "incons": incons,
        "coherence": m.coherence(Q_U, Q_V),
        "rot": rot,
        "rel_incons": incons / rot if rot > 0 else 0.0,
        "leak_u": m.leak(Q_U),
        "leak_v": m.leak(Q_V),
        "intruders": m.intruders(Q_U, INTRUDER_K, INTRUDER_EPS),
    }


def symmetry_metrics(M: torch.Tensor, s_b: torch.Tensor, a_fro: float) -> dict:
    """asym of M = U_b^T W_p V_b, and sym_frac of D = M - a_fro S_b (= U_b^T (W_p - a_fro W_b) V_b)."""
    D = M - a_fro * torch.diag(s_b.to(M.dtype))
    return {"asym": m.asym(M), "sym_frac": m.sym_frac(D)}


def gaussian_sym_frac(r: int, generator: torch.Generator) -> float:
    """sym_frac of the Gaussian null's D = U_b^T G V_b, drawn from its exact distribution.

    U_b and V_b have orthonormal columns, so for i.i.d. Gaussian G the r x r matrix
    Z = U_b^T G V_b is i.i.d. Gaussian. Its symmetric part carries r(r+1)/2 unit
    Gaussian coordinates and its antisymmetric part r(r-1)/2, so
    sym_frac(Z) = X / (X + Y) with X ~ chi2(r(r+1)/2), Y ~ chi2(r(r-1)/2):
    Beta(r(r+1)/4, r(r-1)/4). One draw, whatever the size of the matrix.
    """
    if r < 2:
        return 1.0  # a 1 x 1 D is symmetric
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(r * (r + 1) / 4, r * (r - 1) / 4))


def null_inconsistency(base: Base, W_p: torch.Tensor, a_fro: float, generator: torch.Generator) -> float:
    """incons of the Gaussian null W_null = a_fro W_b + G, ||G||_F = ||W_p - a_fro W_b||_F (a third SVD)."""
    delta_norm = torch.linalg.matrix_norm(W_p - a_fro * base.W)
    G = torch.randn(tuple(base.W.shape), generator=generator, dtype=torch.float64)
    G = (G * (delta_norm.item() / torch.linalg.matrix_norm(G).item())).to(base.W)
    null = svd(a_fro * base.W + G, base.W.dtype, base.W.device)
    return m.inconsistency(m.overlaps(base.factors.U, null.U), m.overlaps(base.factors.V, null.V))
