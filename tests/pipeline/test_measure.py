"""The report's overlap images are read in the one gauge of SPEC "Gauge first" (`metrics.fix_gauge`)."""

import torch

from orthoscope.lab.planted import near_identity_rotation
from orthoscope.pipeline.measure import measure
from orthoscope.pipeline.operands import prepare_base
from tests.helpers import orthonormal


def test_overlap_blocks_are_gauge_fixed_inside_a_degenerate_cluster():
    """A post whose singular values 3..5 are equal: its SVD picks any basis of that cluster. The stored block
    of Q_U is symmetric positive semi-definite there (a sign rule on the diagonal alone leaves the SVD's turn)."""
    g = torch.Generator().manual_seed(0)
    m, n = 30, 12
    S = torch.linspace(4, 1, n, dtype=torch.float64)
    S[2:5] = S[2]
    U, V = orthonormal(m, n, g), orthonormal(n, n, g)
    W_b = U @ torch.diag(S) @ V.T
    R = near_identity_rotation(n, 0.05, g)
    W_p = 1.01 * (U @ R) @ torch.diag(S) @ (V @ R).T
    _, arrays = measure(prepare_base(W_b, torch.float64, torch.device("cpu")), W_p, "w", 0)
    block = torch.from_numpy(arrays["Q_U_block"])[2:5, 2:5]
    assert torch.allclose(block, block.T, atol=1e-9)
    assert torch.linalg.eigvalsh(block).min() > -1e-9
    assert (torch.diagonal(torch.from_numpy(arrays["Q_U_block"])) > 0).all()
