"""The interventions of docs/method.md ("Interventions"), one registered object per op.

Each op builds one new matrix in float64 from a (base, post) pair, W_b = U_b S_b V_b^T
and W_p = U_p S_p V_p^T (thin SVDs). Gauge first: U_p, V_p below are the post factors in
the gauge fixed against the base (`MatrixPair.aligned`, `geometry.gauge_fixed`: the joint
flip of (u_p,i, v_p,i) that makes u_b,i . u_p,i >= 0, a polar rotation inside clusters of
post singular values equal within 1e-5 s_p,1), so Q_U = U_b^T U_p has symmetric PSD
diagonal blocks and no LAPACK sign counts as a rotation. `interpolate` starts from the same
gauge with blocks of equal values only, so that W(1) = W_p exactly (`geometry.geodesic_maps`).

    swap-sigma     U_p (c S_b) V_p^T            c given, or auto = a_geo per matrix
    base-vectors   U_b S_p V_b^T
    break-left     U_p S_p V_b^T
    break-right    U_b S_p V_p^T
    break-random   U_p S_p (V_p R)^T            R random orthogonal, ||R - I||_F = ||Q_U - I||_F
    reconstruct    U_b Q_U (a S_b) Q_U^T V_b^T  Q_U = U_b^T U_p, a = a_geo
    interpolate t  U(t) S(t) V(t)^T             S(t) = S_b^(1-t) S_p^t, U(t), V(t) on the geodesic
    temperature c  U_p (c S_p) V_p^T
    noise          W_b + G                      G Gaussian, ||G||_F = ||W_p - W_b||_F
    rotate-random  U_b R (a S_b) R^T V_b^T      R random orthogonal, ||R - I||_F = ||Q_U - I||_F

An op that is one composition U_x (c S_y) V_z^T is declared as data (`Composition`, registered
once per name); any other is one class here with `@register`. `make_op`, the CLI and the
experiment read the registry.

>>> from orthoscope.interventions.base import OPS
>>> list(OPS)[:3]
['swap-sigma', 'base-vectors', 'break-left']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orthoscope import metrics as m  # lazy: loads each metric's module (and torch) on first use
from orthoscope.interventions.base import A_SCALE, SCALE, MatrixPair, Op, OpSpec, Param, T, register

if TYPE_CHECKING:
    import torch

# The ops' metadata (names, params, formulas) imports without torch, for the CLI's help;
# each `apply` imports the math it needs (torch, `geometry`) when it runs.

INTERPOLATION = (0.0, 0.25, 0.5, 0.75, 1.0)

SCALING = "singular values: the post's vectors with the base's values keep the post's scores"
CONSISTENCY = "rotations: breaking the left/right consistency collapses the model"
FRAMEWORK = "framework: the base subspaces with Q and a rebuild the post model"
GEODESIC = "path: scores along the geodesic from base (t=0) to post (t=1)"
CONTROL = "control: an update of the same size without the claimed structure"


def matched_rotation(pair: MatrixPair, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal R (r x r) with rot(R) equal to rot(Q_U) of the gauge-fixed pair (the `rot` column)."""
    from orthoscope.interventions.geometry import random_rotation

    return random_rotation(pair.post.S.numel(), m.rotation_size(m.overlaps(pair.base.U, pair.aligned.U)), generator)


# MatrixPair's SVDs: the base's, the post's as computed, the post's in the base's gauge
FACTORS = ("base", "post", "aligned")


def once(op: OpSpec, grid: tuple[float, ...], seed: int) -> list[Op]:
    """The experiment runs the op once, at its default."""
    return [Op(op.name, None)]


def scale_grid(op: OpSpec, grid: tuple[float, ...], seed: int) -> list[Op]:
    """The experiment runs the op at c = 1, at c = a_geo per matrix (auto) and at every other c of the grid."""
    return [Op(op.name, 1.0), Op(op.name, None)] + [Op(op.name, c) for c in grid if c != 1.0]


def never(op: OpSpec, grid: tuple[float, ...], seed: int) -> list[Op]:
    """The op is not part of the experiment."""
    return []


class Composition(OpSpec):
    """An op that is one composition U_x (c S_y) V_z^T of the pair's SVD factors, declared as data.

    `u`, `s`, `v` name the factors each part comes from (`FACTORS`: `base`, `post` as computed,
    `aligned` = the post's in the base's gauge); c is the op's `scale` (a_geo per matrix when
    auto) if it takes one, else 1. `experiment` lists the op's settings in the experiment table.

    >>> Composition("x", "U_b S_p V_b^T", "", u="base", s="post", v="base").help_line()
    'x: U_b S_p V_b^T'
    """

    def __init__(self, name: str, formula: str, summary: str, *, u: str, s: str, v: str,
                 params: tuple[Param, ...] = (), claim: str = "", controls: tuple[str, ...] = (),
                 experiment: Callable[[OpSpec, tuple[float, ...], int], list[Op]] = never):
        if not {u, s, v} <= set(FACTORS):
            raise ValueError(f"op {name}: factors {u, s, v} not among {FACTORS}")
        self.name, self.formula, self.summary, self.params = name, formula, summary, params
        self.claim, self.controls, self.u, self.s, self.v, self.experiment = claim, controls, u, s, v, experiment

    def conditions(self, grid, seed):
        return self.experiment(self, grid, seed)

    def apply(self, op, pair, generator):
        from orthoscope.interventions.geometry import compose

        values = getattr(pair, self.s).S
        if self.params:  # the scale c: given, or a_geo per matrix (auto)
            values = (pair.a_geo if op.scale is None else op.scale) * values
        return compose(getattr(pair, self.u).U, values, getattr(pair, self.v).V)


register(Composition("swap-sigma", "U_p (c S_b) V_p^T",
                     "the post's singular vectors with the base's singular values times c",
                     u="aligned", s="base", v="aligned", params=(SCALE,), claim=SCALING, controls=("noise",),
                     experiment=scale_grid))
register(Composition("base-vectors", "U_b S_p V_b^T", "the rotation removed, the scaling kept",
                     u="base", s="post", v="base", claim=CONSISTENCY, controls=("rotate-random", "noise"),
                     experiment=once))
register(Composition("break-left", "U_p S_p V_b^T", "only the left singular vectors rotated",
                     u="aligned", s="post", v="base", claim=CONSISTENCY, controls=("rotate-random", "noise"),
                     experiment=once))
register(Composition("break-right", "U_b S_p V_p^T", "only the right singular vectors rotated",
                     u="base", s="post", v="aligned", claim=CONSISTENCY, controls=("rotate-random", "noise"),
                     experiment=once))


@register
class BreakRandom(OpSpec):
    name = "break-random"
    formula = "U_p S_p (V_p R)^T, R random orthogonal with ||R - I||_F = ||Q_U - I||_F"
    summary = "the right vectors turned by a random rotation as large as the pair's"
    seeded = True
    claim = CONSISTENCY
    controls = ("rotate-random", "noise")

    def conditions(self, grid, seed):
        return [Op(self.name, None, seed=seed)]

    def apply(self, op, pair, generator):
        from orthoscope.interventions.geometry import compose

        R = matched_rotation(pair, generator)
        return compose(pair.aligned.U, pair.post.S, pair.aligned.V @ R)


@register
class Reconstruct(OpSpec):
    name = "reconstruct"
    formula = "U_b Q_U (a S_b) Q_U^T V_b^T, Q_U = U_b^T U_p, a = a_geo"
    summary = "the post model rebuilt from the base subspaces (what leaves them is dropped)"
    params = (A_SCALE,)
    claim = FRAMEWORK
    controls = ("rotate-random",)
    diagnostic_names = ("dropped_share",)

    def conditions(self, grid, seed):
        return [Op(self.name, None)]

    def apply(self, op, pair, generator):
        import torch

        a = pair.a_geo if op.scale is None else op.scale
        Q_U = m.overlaps(pair.base.U, pair.aligned.U)
        return pair.base.U @ Q_U @ torch.diag(a * pair.base.S) @ Q_U.T @ pair.base.V.T

    def diagnostics(self, op, pair):
        from orthoscope.interventions.geometry import dropped_share

        return {"dropped_share": dropped_share(pair.base.U, pair.base.V, pair.W_p)}


@register
class Interpolate(OpSpec):
    name = "interpolate"
    formula = "U(t) S_b^(1-t) S_p^t V(t)^T, U(t), V(t) on the orthogonal geodesic in span[U_b, U_p], span[V_b, V_p]"
    summary = "a geodesic from W_b (t=0) to W_p (t=1), exact at both ends on every shape"
    params = (T,)
    claim = GEODESIC

    def conditions(self, grid, seed):
        return [Op(self.name, None, t=t) for t in INTERPOLATION]

    def apply(self, op, pair, generator):
        from orthoscope.interventions.geometry import compose, geodesic_factors, interpolated_values

        if op.t in (0.0, 1.0):  # the ends are the two models themselves, bit for bit
            return pair.W_b if op.t == 0.0 else pair.W_p
        U, V, sign = geodesic_factors(pair.geodesic, op.t)
        return compose(U, sign * interpolated_values(pair.base.S, pair.post.S, op.t), V)


register(Composition("temperature", "U_p (c S_p) V_p^T", "the post model with every singular value times c (= c W_p)",
                     u="post", s="post", v="post",
                     params=(Param("scale", "the factor c", required=True, low_open=True),)))


@register
class Noise(OpSpec):
    name = "noise"
    formula = "W_b + G, G Gaussian with ||G||_F = ||W_p - W_b||_F"
    summary = "control: an update as large as the real one, without structure"
    seeded = True
    claim = CONTROL

    def conditions(self, grid, seed):
        return [Op(self.name, None, seed=seed)]

    def apply(self, op, pair, generator):
        import torch

        G = torch.randn(pair.W_b.shape, generator=generator, dtype=torch.float64)
        size = torch.linalg.matrix_norm(pair.W_p - pair.W_b)
        return pair.W_b + G * (size / torch.linalg.matrix_norm(G).clamp(min=1e-300))


@register
class RotateRandom(OpSpec):
    name = "rotate-random"
    formula = "U_b R (a S_b) R^T V_b^T, R random orthogonal with ||R - I||_F = ||Q_U - I||_F"
    summary = "control: a consistent rotation as large as the pair's, in a random direction"
    params = (A_SCALE,)
    seeded = True
    claim = CONTROL

    def conditions(self, grid, seed):
        return [Op(self.name, None, seed=seed)]

    def apply(self, op, pair, generator):
        import torch

        a = pair.a_geo if op.scale is None else op.scale
        R = matched_rotation(pair, generator)
        return pair.base.U @ R @ torch.diag(a * pair.base.S) @ R.T @ pair.base.V.T
