"""The stages that fill the table's columns: one class per stage of the registry, one `@column` per column.

A stage's class is built from what the stage reads (`registry.STAGES`: the update's sums, both
spectra, the overlaps Q_U and Q_V, the top subspaces, D, the Gaussian null's factors, dW's
singular values) and each `@column` member, named like its registry record, computes that
column once from them with the pure functions of `orthoscope.metrics`. `row()` gives every
column of the stage; tests/metrics/test_registry.py checks that each registered column is a
`@column` of exactly the stage its record names, and that no stage fills an unregistered one.

>>> import torch
>>> Scaling(torch.tensor([2.0, 1.0]), torch.tensor([4.0, 2.0])).a_geo
2.0
>>> Scaling.stage, Scaling.columns()[:2]
('scaling', ('a_geo', 'disp'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch

from orthoscope.metrics import delta, nulls, rotations, scaling, spectra

TOP_K = 64  # top block of D (sym_frac_top, z_pair_top) and principal angles
INTRUDER_K = 10
INTRUDER_EPS = 0.5


class column(cached_property):
    """A table column of its stage's class: named like the registry record, computed once."""


class StageColumns:
    """Base of the stage classes: `stage` names the registry stage, `columns()` the `@column` members."""

    stage: ClassVar[str] = ""

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The columns this stage fills, in the order they are declared."""
        return tuple(name for klass in reversed(cls.__mro__) for name, value in vars(klass).items()
                     if isinstance(value, column))

    def row(self) -> dict:
        """Every column of the stage, computed now."""
        return {name: getattr(self, name) for name in self.columns()}


@dataclass
class Update(StageColumns):
    """dW = W_p - W_b, formed exactly, and the columns it gives before any SVD.

    `unchanged` entries of `size` are bit-identical in storage dtype; `floor` is the working dtype's
    noise floor; nd2, nb2, cross are ||dW||_F^2, ||W_b||_F^2 and <W_b, dW>_F in float64.

    >>> u = Update(None, unchanged=1, size=4, a_fro_m1=0.0, floor=1e-3, nd2=4.0, nb2=9.0, cross=0.0)
    >>> u.changed, round(u.rel_delta, 6), u.frac_unchanged, u.resid_norm()
    (True, 0.666667, 0.25, 2.0)
    """

    stage: ClassVar[str] = "update"
    dW: torch.Tensor | None
    unchanged: int
    size: int
    a_fro_m1: float  # a_fro - 1, without cancellation
    floor: float
    nd2: float = 0.0
    nb2: float = 1.0
    cross: float = 0.0

    @column
    def a_fro(self) -> float:
        return 1.0 + self.a_fro_m1  # from the tensors: exact where the spectra round

    @column
    def changed(self) -> bool:
        return self.unchanged < self.size

    @column
    def at_noise_floor(self) -> bool:
        return self.rel_delta < self.floor

    @column
    def rel_delta(self) -> float:
        return math.sqrt(self.nd2 / self.nb2)

    @column
    def frac_unchanged(self) -> float:
        return self.unchanged / self.size

    def resid_norm(self) -> float:
        """||W_p - a_fro W_b||_F = ||dW - (a_fro - 1) W_b||_F, from the three float64 sums (no matrix pass)."""
        a = self.a_fro_m1
        return math.sqrt(max(self.nd2 - 2 * a * self.cross + a * a * self.nb2, 0.0))


@dataclass
class Scaling(StageColumns):
    """The scaling columns from the base and post singular values."""

    stage: ClassVar[str] = "scaling"
    s_b: torch.Tensor
    s_p: torch.Tensor

    @cached_property
    def rho(self) -> torch.Tensor:
        return scaling.ratios(self.s_b, self.s_p)

    @column
    def a_geo(self) -> float:
        return scaling.a_geo(self.rho)

    @column
    def disp(self) -> float:
        return scaling.dispersion(self.rho)

    @column
    def fit_resid(self) -> float:
        return scaling.fit_resid(self.s_b, self.s_p, self.a_geo)

    @column
    def stable_rank_base(self) -> float:
        return spectra.stable_rank(self.s_b)

    @column
    def stable_rank_post(self) -> float:
        return spectra.stable_rank(self.s_p)


class Rotation(StageColumns):
    """Rotation columns from Q_U = U_b^T U_p and Q_V = V_b^T V_p (incons_gap needs the base spectrum `s_b`).

    `square` says which side's vectors are square (no leak possible: its leak is 0 exactly). Arithmetic
    in float64 on the r x r overlaps; the gauge blocks use one tolerance in every precision
    (`metrics.rotations.GAUGE_RTOL`), so float32 factors give the float64 values.
    """

    stage: ClassVar[str] = "rotation"

    def __init__(self, Q_U: torch.Tensor, Q_V: torch.Tensor, s_p: torch.Tensor, s_b: torch.Tensor | None = None,
                 square: tuple[bool, bool] = (False, False)):
        self.raw, self.square = (Q_U, Q_V), square  # r^3 products for the leak, accurate in the factors' dtype
        self.Q_U, self.Q_V, self.s_p, self.s_b = Q_U.double(), Q_V.double(), s_p.double(), s_b

    @cached_property
    def difference(self) -> torch.Tensor:
        """Q_U - Q_V: what incons and incons_gap read."""
        return self.Q_U - self.Q_V

    @column
    def incons(self) -> float:
        return rotations.inconsistency_of(self.difference)

    @column
    def coherence(self) -> float:
        return rotations.coherence(self.Q_U, self.Q_V)

    @cached_property
    def fixed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Q_U and Q_V in the post gauge fixed against the base (`rotations.fix_gauge`): what `rot` and the
        report's images read."""
        return rotations.fix_gauge(self.Q_U, self.Q_V, self.s_p)

    @column
    def rot(self) -> float:
        return rotations.rotation_size(self.fixed[0])

    @column
    def rel_incons(self) -> float:
        return self.incons / self.rot if self.rot > 0 else 0.0

    @column
    def leak_u(self) -> float:
        return 0.0 if self.square[0] else rotations.leak(self.raw[0])

    @column
    def leak_v(self) -> float:
        return 0.0 if self.square[1] else rotations.leak(self.raw[1])

    @column
    def incons_gap(self) -> float:
        return rotations.inconsistency_gap_of(self.difference, self.s_b) if self.s_b is not None else math.nan


@dataclass
class PostTop(StageColumns):
    """intruders from `cosines`: U_b^T U_p[:, :k] (r x k), the base left vectors against the post's top k = INTRUDER_K
    (the first k columns of Q_U on the full route; from the post's Gram on the one-SVD route, no post SVD)."""

    stage: ClassVar[str] = "post-top"
    cosines: torch.Tensor

    @column
    def intruders(self) -> int:
        return rotations.intruders(self.cosines.double(), INTRUDER_K, INTRUDER_EPS)


def angles_deg(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Principal angles (degrees) between the spans of the first k = min(TOP_K, columns) columns of X and Y."""
    k = min(TOP_K, X.shape[1])
    return torch.rad2deg(spectra.principal_angles(X[:, :k], Y[:, :k]))


class Angles(StageColumns):
    """Mean and max principal angles (degrees) between the top-k left (u) and right (v) subspaces, k = min(r, 64).

    `base` and `post` are (U[:, :k], V[:, :k]), float64-accurate subspaces.
    """

    stage: ClassVar[str] = "angles"

    def __init__(self, base: tuple[torch.Tensor, torch.Tensor], post: tuple[torch.Tensor, torch.Tensor]):
        self.u, self.v = angles_deg(base[0], post[0]), angles_deg(base[1], post[1])

    @column
    def pa_mean_u(self) -> float:
        return self.u.mean().item()

    @column
    def pa_max_u(self) -> float:
        return self.u.max().item()

    @column
    def pa_mean_v(self) -> float:
        return self.v.mean().item()

    @column
    def pa_max_v(self) -> float:
        return self.v.max().item()


class Symmetry(StageColumns):
    """Columns read from D = U_b^T (W_p - a_fro W_b) V_b: asym, sym_frac, the nulls' closed forms, the top block.

    asym of M = U_b^T W_p V_b = D + a_fro S_b uses M - M^T = D - D^T (S_b is diagonal).
    """

    stage: ClassVar[str] = "symmetry"

    def __init__(self, D: torch.Tensor, s_b: torch.Tensor, a_fro: float):
        self.D, self.s_b, self.a_fro = D.double(), s_b, a_fro
        self.r = self.D.shape[0]
        self.pair, self.value = nulls.pairing_and_sym_frac(self.D)

    @cached_property
    def top(self) -> tuple[nulls.Pairing, float]:
        k = min(self.r, TOP_K)
        return nulls.pairing_and_sym_frac(self.D[:k, :k])

    @cached_property
    def gauss(self) -> tuple[float, float]:
        return nulls.gauss_tail(self.value, self.r)

    @column
    def asym(self) -> float:
        D, pair = self.D, self.pair
        # ||M||^2 = ||D + a_fro S_b||^2: the off-diagonal of D plus the shifted diagonal (no cancellation)
        M_norm = math.sqrt(max(pair.norm2 - pair.diag2, 0.0)
                           + (torch.diagonal(D) + self.a_fro * self.s_b.to(D)).square().sum().item())
        return (torch.linalg.matrix_norm(D - D.T).item() / (math.sqrt(2) * M_norm)) if M_norm > 0 else 0.0

    @column
    def sym_frac(self) -> float:
        return self.value

    @column
    def sym_frac_top(self) -> float:
        return self.top[1]

    @column
    def sym_frac_null(self) -> float:
        return nulls.gauss_mean(self.r)

    @column
    def sym_frac_pair_null(self) -> float:
        return self.pair.null_mean

    @column
    def z_pair(self) -> float:
        return self.pair.z

    @column
    def z_gauss(self) -> float:
        return self.gauss[0]

    @column
    def p_gauss(self) -> float:
        return self.gauss[1]

    @column
    def z_pair_top(self) -> float:
        return self.top[0].z


@dataclass
class PairingDraws(StageColumns):
    """p_pair: the pairing null's tail at D's statistic, by sign draws (`draws`: their generator and cap)."""

    stage: ClassVar[str] = "pairing-draws"
    symmetry: Symmetry
    draws: nulls.SignDraws

    @column
    def p_pair(self) -> float:
        return nulls.p_pair(self.symmetry.pair, self.draws.rng, cap=self.draws.cap)


class GaussianNull(StageColumns):
    """incons, pa_mean_u and the scaling fit of the Gaussian null, from the SVD U_N S_N V_N^T of its base frame
    N (`gaussian_null.null_frame`, at most 2r x r): Q_U = U_N[:r], Q_V = V_N (left and right swap for a wide W)."""

    stage: ClassVar[str] = "gaussian-null"

    def __init__(self, s_b: torch.Tensor, U_N: torch.Tensor, S_N: torch.Tensor, V_N: torch.Tensor, wide: bool):
        r = V_N.shape[0]
        Q_left, Q_right = U_N[:r], V_N  # overlaps with the base's vectors on the tall side
        self.Q_U, self.Q_V = (Q_right, Q_left) if wide else (Q_left, Q_right)
        self.U_null = V_N if wide else U_N  # the null's left vectors of W in base coordinates
        self.fit = Scaling(s_b, S_N)  # the scaling stage's own columns, on the null's spectrum

    @column
    def incons_null(self) -> float:
        return rotations.inconsistency(self.Q_U, self.Q_V)

    @column
    def pa_mean_u_null(self) -> float:
        k = min(TOP_K, self.U_null.shape[1])  # the base's top-k left vectors are the first k axes of its frame
        return torch.rad2deg(spectra.coordinate_angles(self.U_null[:, :k])).mean().item()

    @column
    def a_geo_null(self) -> float:
        return self.fit.a_geo

    @column
    def disp_null(self) -> float:
        return self.fit.disp

    @column
    def fit_resid_null(self) -> float:
        return self.fit.fit_resid


@dataclass
class DeltaSpectrum(StageColumns):
    """delta_rank90 from the singular values of dW (None: dW = 0, rank 0)."""

    stage: ClassVar[str] = "delta-svd"
    values: torch.Tensor | None

    @column
    def delta_rank90(self) -> int:
        return delta.rank90(self.values) if self.values is not None else 0


@dataclass
class DeltaTop(StageColumns):
    """delta_top16 from dW's top Ritz values (randomized block Krylov) and ||dW||_F^2."""

    stage: ClassVar[str] = "delta-lowrank"
    ritz: torch.Tensor | None
    nd2: float

    @column
    def delta_top16(self) -> float:
        return delta.top_energy(self.ritz, self.nd2)


STAGE_CLASSES: tuple[type[StageColumns], ...] = (Update, Scaling, Symmetry, PairingDraws, PostTop, Rotation, Angles,
                                                 GaussianNull, DeltaSpectrum, DeltaTop)
