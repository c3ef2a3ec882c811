"""Rewrites for speed give the values of the plain formulas they replace, bit for bit, on random inputs."""

import math

import numpy as np
import pytest
import torch

from orthoscope import metrics as m
from orthoscope.kernels import svd
from orthoscope.metrics.columns import Rotation, Update
from orthoscope.metrics.gaussian_null import null_frame
from orthoscope.pipeline.operands import Base, delta_frame


def plain_null_frame(s_b: torch.Tensor, a: float, size: float, long_side: int, g: torch.Generator) -> torch.Tensor:
    """The null's base frame as first written: separate draws, torch.cat and an r x r diag(a S_b)."""
    r, p = s_b.numel(), long_side - s_b.numel()
    Z1 = torch.randn(r, r, generator=g, dtype=torch.float32).double()
    if p >= r:
        R = torch.randn(r, r, generator=g, dtype=torch.float32).double().triu(1)
        seed = int(torch.randint(0, 2**62, (1,), generator=g).item())
        R.diagonal().copy_(torch.from_numpy(np.sqrt(np.random.default_rng(seed).chisquare(p - np.arange(r)))))
    else:
        R = torch.randn(p, r, generator=g, dtype=torch.float32).double()
    Z = torch.cat([Z1, R])
    Z *= size / torch.linalg.matrix_norm(Z).clamp(min=1e-300).item()
    Z[:r] += torch.diag(a * s_b)
    return Z


@pytest.mark.parametrize("long_side", [30, 45, 70])  # p = 0, 0 < p < r, p >= r (Bartlett)
def test_null_frame_is_the_plain_construction(long_side):
    s_b = torch.linspace(3, 0.5, 30, dtype=torch.float64)
    ours = null_frame(s_b, 1.05, 0.7, long_side, torch.Generator().manual_seed(3))
    assert torch.equal(ours, plain_null_frame(s_b, 1.05, 0.7, long_side, torch.Generator().manual_seed(3)))


def test_rotation_columns_are_the_plain_formulas():
    g = torch.Generator().manual_seed(4)
    for rows, r in ((50, 37), (37, 37)):
        U_b, U_p = (torch.linalg.qr(torch.randn(rows, r, generator=g))[0] for _ in range(2))
        V_b, V_p = (torch.linalg.qr(torch.randn(r, r, generator=g))[0] for _ in range(2))
        Q_U, Q_V = m.overlaps(U_b, U_p), m.overlaps(V_b, V_p)
        s_b = torch.sort(torch.rand(r, generator=g, dtype=torch.float64), descending=True).values
        s_p = s_b.clone()
        s_p[3:6] = s_p[3]  # a degenerate block for the gauge
        rotation = Rotation(Q_U, Q_V, s_p, s_b)
        fixed, Q_Ud, Q_Vd = rotation.fixed[0], Q_U.double(), Q_V.double()
        idx = m.separated_pairs(s_b)
        eye, eye64 = torch.eye(r, dtype=torch.float32), torch.eye(r, dtype=torch.float64)
        assert rotation.rot == (torch.linalg.matrix_norm(fixed - eye64) / (2 * math.sqrt(r))).item()
        assert rotation.leak_u == (torch.linalg.matrix_norm(Q_U.T @ Q_U - eye) / math.sqrt(r)).item()
        assert rotation.incons == (torch.linalg.matrix_norm(Q_Ud - Q_Vd) / (2 * math.sqrt(r))).item()
        assert rotation.incons_gap == (torch.linalg.matrix_norm(Q_Ud[:, idx] - Q_Vd[:, idx])
                                       / (2 * math.sqrt(idx.numel()))).item()


def test_delta_frame_is_the_plain_formula():
    g = torch.Generator().manual_seed(5)
    W_b = torch.randn(40, 24, generator=g)
    dW = 1e-3 * torch.randn(40, 24, generator=g)
    factors = svd(W_b, torch.float32)
    update = Update(dW, unchanged=0, size=dW.numel(), a_fro_m1=-3.7e-4, floor=1e-4)
    plain = m.one_svd_form(factors.U, dW, factors.V) - update.a_fro_m1 * torch.diag(factors.S)
    assert torch.equal(delta_frame(Base(W_b, factors), update), plain)


@pytest.mark.parametrize("rows, r", [(140, 70), (70, 70), (100, 70), (90, 40)])  # 2r x r, r x r, between; k < r
def test_null_angles_are_the_plain_formula(rows, r):
    """pa_mean_u_null's angles against the first k axes (no products with the identity) equal
    principal_angles(I[:, :k], U[:, :k]) bit for bit, on float32 factors as the null's SVD gives them."""
    g = torch.Generator().manual_seed(6)
    U = svd(torch.randn(rows, r, generator=g), torch.float32).U
    k = min(64, r)
    eye = torch.eye(rows, k, dtype=U.dtype)
    assert torch.equal(m.coordinate_angles(U[:, :k]), m.principal_angles(eye, U[:, :k]))
