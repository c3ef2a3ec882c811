"""Singular-value scaling: how post-training rescaled the spectrum."""

from __future__ import annotations

import math

import torch

RHO_FLOOR = 1e-6


def ratios(s_b: torch.Tensor, s_p: torch.Tensor) -> torch.Tensor:
    """rho_i = s_p,i / s_b,i over indices with s_b,i > 1e-6 * s_b,1.

    Indices where the post matrix is rank-deficient (s_p,i <= 1e-6 * s_p,1) are
    dropped too, so log(rho) stays finite: rho covers the nonzero part of both.
    """
    s_b, s_p = s_b.double(), s_p.double()
    keep = (s_b > RHO_FLOOR * s_b[0]) & (s_p > RHO_FLOOR * s_p[0])
    return s_p[keep] / s_b[keep]


def a_geo(rho: torch.Tensor) -> float:
    """a_geo = exp(mean(log rho_i)): the geometric-mean scaling factor."""
    return math.exp(torch.log(rho).mean().item())


def a_fro(s_b: torch.Tensor, s_p: torch.Tensor) -> float:
    """a_fro = ||W_p||_F / ||W_b||_F = ||s_p||_2 / ||s_b||_2."""
    return (torch.linalg.vector_norm(s_p.double()) / torch.linalg.vector_norm(s_b.double())).item()


def dispersion(rho: torch.Tensor) -> float:
    """disp = std(log rho_i) (population std): 0 for a perfectly uniform scaling."""
    return torch.log(rho).std(correction=0).item() if rho.numel() > 1 else 0.0


def fit_resid(s_b: torch.Tensor, s_p: torch.Tensor, a: float) -> float:
    """fit_resid = ||s_p - a s_b|| / ||s_p||: misfit of one uniform factor."""
    s_b, s_p = s_b.double(), s_p.double()
    return (torch.linalg.vector_norm(s_p - a * s_b) / torch.linalg.vector_norm(s_p)).item()


def scaling_fit(s_b: torch.Tensor, s_p: torch.Tensor) -> tuple[float, float, float]:
    """(a_geo, disp, fit_resid) of two spectra: the scaling claim's three numbers in one call.

    >>> s_b = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    >>> tuple(round(x, 12) for x in scaling_fit(s_b, 1.5 * s_b))
    (1.5, 0.0, 0.0)
    """
    rho = ratios(s_b, s_p)
    a = a_geo(rho)
    return a, dispersion(rho), fit_resid(s_b, s_p, a)


def binned_ratios(s_b: torch.Tensor, s_p: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Geometric mean of rho_i within `bins` equal index-quantile bins (SVSM curves).

    Bin j holds indices i with floor(i * bins / r) = j; a bin with no valid index
    (r < bins, or a rank-deficient tail) is NaN.
    """
    s_b, s_p = s_b.double().cpu(), s_p.double().cpu()
    r = s_b.numel()
    keep = (s_b > RHO_FLOOR * s_b[0]) & (s_p > RHO_FLOOR * s_p[0])
    log_rho = torch.where(keep, torch.log(s_p / torch.where(keep, s_b, 1.0)), 0.0)
    which = torch.arange(r) * bins // r
    total = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, log_rho)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, keep.double())
    return torch.where(count > 0, torch.exp(total / count.clamp(min=1)), torch.nan)
