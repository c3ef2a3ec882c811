"""The Gaussian null drawn in the base frame (metrics.gaussian_null.null_frame) has the distribution of
the explicit W_null = a W_b + G, ||G||_F fixed: same algebra for one draw, same law over draws."""

import numpy as np
import pytest
import torch

from orthoscope import metrics as m
from orthoscope.kernels import svd
from orthoscope.metrics.columns import Update
from orthoscope.pipeline.measure import gaussian_null
from orthoscope.pipeline.operands import Base
from tests.helpers import orthonormal


def explicit_null(W_b: torch.Tensor, a: float, size: float, g: torch.Generator) -> tuple[float, ...]:
    """incons_null, pa_mean_u_null, a_geo_null, disp_null, fit_resid_null of one explicit draw (scaling in numpy)."""
    G = torch.randn(tuple(W_b.shape), generator=g, dtype=torch.float64)
    f, null = svd(W_b), svd(a * W_b + G * (size / torch.linalg.matrix_norm(G)))
    k = min(64, f.S.numel())
    angles = torch.rad2deg(m.principal_angles(f.U[:, :k], null.U[:, :k]))
    s_b, s_n = f.S.numpy(), null.S.numpy()
    log_rho = np.log(s_n / s_b)
    a_geo = float(np.exp(log_rho.mean()))
    return (m.inconsistency(m.overlaps(f.U, null.U), m.overlaps(f.V, null.V)), angles.mean().item(),
            a_geo, float(log_rho.std()), float(np.linalg.norm(s_n - a_geo * s_b) / np.linalg.norm(s_n)))


@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (18, 12), (12, 12)])
def test_base_frame_null_has_the_law_of_the_explicit_null(shape):
    g = torch.Generator().manual_seed(0)
    r = min(shape)
    S_b = torch.diag(torch.linspace(3, 1, r, dtype=torch.float64))
    W_b = orthonormal(shape[0], r, g) @ S_b @ orthonormal(shape[1], r, g).T
    a, size, draws = 1.1, 0.8, 400
    W_p = a * W_b + size * torch.randn(shape, generator=g, dtype=torch.float64) / (shape[0] * shape[1]) ** 0.5
    base = Base(W_b, svd(W_b), W_b)
    dW = W_p - W_b
    resid = torch.linalg.matrix_norm(dW - (a - 1) * W_b).item()
    nb2, cross, nd2 = m.norms(W_b, dW)
    update = Update(dW, 0, dW.numel(), a - 1, 0.0, nd2=nd2, nb2=nb2, cross=cross)
    assert update.resid_norm() == pytest.approx(resid, rel=1e-12)
    framed = np.array([[v for v in gaussian_null(base, update, torch.Generator().manual_seed(i)).row().values()]
                       for i in range(draws)])
    explicit = np.array([explicit_null(W_b, a, resid, torch.Generator().manual_seed(10_000 + i)) for i in range(draws)])
    for column in range(5):  # incons_null, pa_mean_u_null, a_geo_null, disp_null, fit_resid_null
        x, y = framed[:, column], explicit[:, column]
        se = np.sqrt(x.var() / draws + y.var() / draws)
        assert abs(x.mean() - y.mean()) < 4 * se + 1e-9, (column, x.mean(), y.mean(), se)
        assert x.std() == pytest.approx(y.std(), rel=0.2, abs=1e-9)
