"""One matrix pair -> one table row: SVDs (kernels) feeding the metrics."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from orthoscope import metrics as m
from orthoscope.kernels import SVD, svd

METRIC_COLUMNS = (
    "a_geo", "a_fro", "disp", "fit_resid",
    "incons", "coherence", "rot", "rel_incons", "leak_u", "leak_v",
    "asym", "sym_frac", "sym_frac_null", "incons_null",
    "intruders", "stable_rank_base", "stable_rank_post",
)
RATIO_BINS = 32
INTRUDER_K = 10
INTRUDER_EPS = 0.5
BLOCK = 32


class SkipMatrix(Exception):
    """This matrix cannot be analysed (the run goes on); the message is the reason."""


@dataclass
class Base:
    """A base matrix prepared once and reused for every post model."""

    W: torch.Tensor
    factors: SVD


def check_finite(W: torch.Tensor, side: str) -> None:
    """Raise SkipMatrix for NaN/Inf entries or an all-zero matrix."""
    if not torch.isfinite(W).all():
        bad = int((~torch.isfinite(W)).sum())
        raise SkipMatrix(f"{bad} NaN/Inf entries in the {side} matrix")
    if not W.any():
        raise SkipMatrix(f"all-zero {side} matrix (no singular subspace to compare)")


def prepare_base(W_b: torch.Tensor, dtype: torch.dtype, device: torch.device) -> Base:
    check_finite(W_b, "base")
    W = W_b.to(device=device, dtype=dtype)
    return Base(W, svd(W, dtype, device))


def null_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, matrix name): the same null whatever the order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def measure(base: Base, W_p: torch.Tensor, name: str, seed: int) -> tuple[dict, dict]:
    """All table metrics of one pair, and its spectra for the .npz.

    Returns (row, arrays): row maps METRIC_COLUMNS to floats; arrays holds
    s_base, s_post, rho_bins and the null's singular values.
    """
    check_finite(W_p, "post")
    if W_p.shape != base.W.shape:
        raise SkipMatrix(f"shape {tuple(W_p.shape)} differs from base {tuple(base.W.shape)}")
    W_p = W_p.to(device=base.W.device, dtype=base.W.dtype)
    post = svd(W_p, base.W.dtype, base.W.device)
    row = scaling_metrics(base.factors.S, post.S)
    row.update(rotation_metrics(base.factors, post))
    row.update(symmetry_metrics(base.factors, W_p, row["a_fro"]))
    row.update(_null(base, W_p, row["a_fro"], null_generator(seed, name)))
    arrays = {
        "s_base": base.factors.S.double().cpu().numpy(),
        "s_post": post.S.double().cpu().numpy(),
        "rho_bins": m.binned_ratios(base.factors.S, post.S, RATIO_BINS).numpy(),
        "effective_rank": np.array([m.effective_rank(base.factors.S), m.effective_rank(post.S)]),
        **overlap_blocks(base.factors, post, BLOCK),
    }
    return row, arrays


def overlap_blocks(base: SVD, post: SVD, k: int) -> dict:
    """Top-left k x k blocks of Q_U and Q_V, signs fixed so that diag(Q_U) >= 0 (for the report's images)."""
    k = min(k, base.S.numel())
    Q_U, Q_V = base.U[:, :k].T @ post.U[:, :k], base.V[:, :k].T @ post.V[:, :k]
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


def rotation_metrics(base: SVD, post: SVD) -> dict:
    Q_U, Q_V = m.overlaps(base.U, post.U), m.overlaps(base.V, post.V)
    fixed_U, _ = m.fix_gauge(Q_U, Q_V, post.S, _gauge_rtol(Q_U.dtype))
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


def symmetry_metrics(base: SVD, W_p: torch.Tensor, a_fro: float) -> dict:
    M = m.one_svd_form(base.U, W_p, base.V)
    D = M - a_fro * torch.diag(base.S)
    return {"asym": m.asym(M), "sym_frac": m.sym_frac(D)}


def _null(base: Base, W_p: torch.Tensor, a_fro: float, generator: torch.Generator) -> dict:
    """Gaussian null: W_null = a_fro W_b + G, ||G||_F = ||W_p - a_fro W_b||_F."""
    delta_norm = torch.linalg.matrix_norm(W_p - a_fro * base.W)
    G = torch.randn(base.W.shape, generator=generator, dtype=torch.float64)
    G = (G * (delta_norm.item() / torch.linalg.matrix_norm(G).item())).to(base.W)
    D_null = base.factors.U.T @ G @ base.factors.V
    null = svd(a_fro * base.W + G, base.W.dtype, base.W.device)
    Q_U, Q_V = m.overlaps(base.factors.U, null.U), m.overlaps(base.factors.V, null.V)
    return {"sym_frac_null": m.sym_frac(D_null), "incons_null": m.inconsistency(Q_U, Q_V)}
