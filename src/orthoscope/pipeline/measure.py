"""One matrix pair -> one table row: the route's SVDs (kernels) feeding the stages that fill the columns.

Each column's record (`orthoscope.metrics.registry`) names the stage that fills it, and each stage
is one class of `orthoscope.metrics.columns`; this module only runs the routes, which decide what
the stages read, and keeps the columns asked for:
- always: the update dW = W_p - W_b formed exactly from the stored tensors (the `update`
  stage); a bit-identical matrix is unchanged and its rotation, angle, symmetry and null
  columns are NaN;
- one-SVD (every asked metric sign-free): the base SVD (cacheable), the post singular values by
  the cheapest exact route, and D = U_b^T dW V_b - (a_fro - 1) S_b (`scaling`, `symmetry`, and
  `pairing-draws` when p_pair is asked for; `post-top` for intruders: the post's top left vectors from
  the Gram its values come from);
- full: the post SVD too, for rotations and principal angles (top-k subspaces refined in float64
  when the SVDs are float32), and the Gaussian null's SVD, drawn in the base frame (at most
  2r x r), when a column of the `gaussian-null` stage is asked for;
- the singular values of dW only when `delta_rank90` is asked for, its randomized top 16 only for
  `delta_top16`; the `quick` set runs no full SVD (the base's is never made).
Columns a route does not compute are NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from orthoscope import metrics as m
from orthoscope.kernels import krylov_values, singular_values, svd, svdvals, values_and_top_left
from orthoscope.kernels.svd import times_f64
from orthoscope.kernels.threads import full_threads
from orthoscope.metrics import registry
from orthoscope.metrics.columns import (
    INTRUDER_K,
    Angles,
    DeltaSpectrum,
    DeltaTop,
    GaussianNull,
    PairingDraws,
    PostTop,
    Rotation,
    Scaling,
    Symmetry,
    Update,
)
from orthoscope.metrics.gaussian_null import null_frame
from orthoscope.metrics.nulls import SignDraws
from orthoscope.metrics.rotations import undefined_vectors
from orthoscope.pipeline.checks import SkipMatrix, check_finite, check_floating
from orthoscope.pipeline.operands import Base, delta_frame, prepare_base, top_factors, update_of
from orthoscope.pipeline.precision import reportable
from orthoscope.pipeline.seeds import matrix_seed, null_generator, pair_rng

RATIO_BINS = 32
BLOCK = 32  # the top-left block of Q_U and Q_V kept for the report's images


def measure(base: Base, W_p: torch.Tensor, name: str, seed: int,
            metrics: frozenset[str] = registry.metric_sets()["all"], floor_fallback: bool = False,
            pair_draws: int | None = None) -> tuple[dict, dict]:
    """The asked metrics of one pair (others NaN), and its spectra for the .npz.

    `pair_draws` caps p_pair's sign draws (`metrics.nulls.pair_tail`; None: the stated-error rule).

    With `floor_fallback` (meant for `--precision auto`), a changed matrix whose update is
    below the working precision's noise floor (float32: rel_delta < 1.2e-4) is measured
    again on a float64 base SVD, so that it is analysed rather than left at the floor.

    Returns (row, arrays): row maps every registry column to a value
    (float, or bool for `changed`/`at_noise_floor`) and `note` to why columns are NaN that the route
    computed (a numerically rank-deficient side: `metrics.rotations.undefined_vectors`; "" if none);
    arrays holds s_base, s_post,
    rho_bins, effective_rank and, on the full route, the top-left blocks of Q_U and Q_V
    (empty for the `quick` set, which runs no full SVD).
    """
    if W_p.shape != base.W.shape:
        raise SkipMatrix(f"shape {tuple(W_p.shape)} differs from base {tuple(base.W.shape)}")
    check_floating(W_p, "post")
    dtype = base.W.dtype
    with full_threads():  # passes over every entry (conversion, checks, dW, float64 norms) gain from every thread
        W = W_p.to(device=base.W.device, dtype=dtype)
        check_finite(W, "post", W_p)
        update = update_of(base, W_p, dtype, W)
    if floor_fallback and dtype != torch.float64 and update.changed and update.at_noise_floor:
        return measure(prepare_base(base.stored, torch.float64, base.W.device), W_p, name, seed, metrics,
                       pair_draws=pair_draws)
    full = registry.needs_post_svd(metrics)
    if not (full and update.changed):
        del W  # only the post SVD needs the working copy; the post's values are read blockwise from W_p
    if not registry.runs_svd(metrics):  # no SVD at all: the stored tensors and a randomized block Krylov of dW
        row, s_p, blocks = {}, None, {}
    elif not update.changed:  # no SVD either: the base's singular values alone
        row, s_p, blocks = unchanged_route(base, full)
    elif full:
        null = null_generator(seed, name) if registry.wanted("gaussian-null", metrics) else None
        row, s_p, blocks = full_route(base, W, W_p, update, _pair_draws(seed, name, metrics, pair_draws), null)
    else:
        row, s_p, blocks = one_svd_route(base, W_p, update, _pair_draws(seed, name, metrics, pair_draws),
                                         registry.wanted("post-top", metrics))
    row.update(update.row())
    row.update(delta_columns(base, update, matrix_seed(seed, name), metrics))
    columns = {c: row.get(c, math.nan) if reportable(c, metrics, dtype) else math.nan for c in registry.COLUMNS}
    families, note = undefined_vectors(base.factors.S, s_p) if update.changed and s_p is not None else ((), "")
    blank = [c for c in registry.COLUMNS if registry.get(c).family in families and not math.isnan(columns[c])]
    columns.update(dict.fromkeys(blank, math.nan), note=note if blank else "")  # a rank-deficient side
    return columns, ({} if s_p is None else spectra_arrays(s_p if not update.changed else base.factors.S, s_p, blocks))


def _pair_draws(seed: int, name: str, metrics: frozenset[str], cap: int | None) -> SignDraws | None:
    """The pairing null's sign draws only when `p_pair` is asked for (they are most of a small matrix's work)."""
    return SignDraws(pair_rng(seed, name), cap) if registry.wanted("pairing-draws", metrics) else None


def spectra_arrays(s_b: torch.Tensor, s_p: torch.Tensor, blocks: dict) -> dict:
    """The .npz arrays of one pair: both spectra, the binned ratios, both effective ranks, the overlap blocks."""
    return {
        "s_base": s_b.double().cpu().numpy(),
        "s_post": s_p.double().cpu().numpy(),
        "rho_bins": m.binned_ratios(s_b.cpu(), s_p.cpu(), RATIO_BINS).numpy(),
        "effective_rank": np.array([m.effective_rank(s_b), m.effective_rank(s_p)]),
        **blocks,
    }


def delta_columns(base: Base, update: Update, seed: int, metrics: frozenset[str]) -> dict:
    """The `delta-svd` and `delta-lowrank` stages, each only when one of its columns is asked for."""
    row = {}
    if registry.wanted("delta-svd", metrics):
        values = svdvals(update.dW, base.W.dtype, base.W.device) if update.changed else None
        row.update(DeltaSpectrum(values).row())
    if registry.wanted("delta-lowrank", metrics):
        with full_threads():  # a few products with dW: a kernel
            row.update(DeltaTop(krylov_values(update.dW, seed) if update.nd2 else None, update.nd2).row())
    return row


def unchanged_route(base: Base, full: bool) -> tuple[dict, torch.Tensor, dict]:
    """dW = 0: the post factors are the base ones; every change-dependent column stays NaN.

    Only the singular values are needed (the scaling columns and the spectra), so no SVD is
    run: a model compared with itself costs one values-only eigensolve per matrix.
    """
    s_b = base.values()
    blocks = {}
    if full:
        eye = torch.eye(s_b.numel(), dtype=s_b.dtype, device=s_b.device)  # in the gauge already
        blocks = overlap_blocks(eye, eye, BLOCK)
    return Scaling(s_b, s_b).row(), s_b, blocks


def one_svd_route(base: Base, W_p: torch.Tensor, update: Update, rng: SignDraws | None,
                  top: bool = False) -> tuple[dict, torch.Tensor, dict]:
    """The base SVD, the post's singular values and D: the scaling and sign-free columns; with `top`,
    intruders from the post's top left vectors (`kernels.values_and_top_left`: no post SVD)."""
    # torch's work (the base SVD, D) before the post's values: scipy's BLAS threads still spin
    # briefly after the eigensolve (kernels.svd.BLAS_SPIN_LOG2_CYCLES), the one-thread work is next
    D = delta_frame(base, update)
    if top:
        s_p, U_top = values_and_top_left(W_p, INTRUDER_K, base.W.device)
    else:
        s_p = singular_values(W_p, base.W.device)
    row = Scaling(base.factors.S, s_p).row()
    row.update(symmetry_columns(D, base.factors.S, update, rng))
    if top:
        row.update(PostTop(times_f64(base.factors.U, U_top, transpose=True)).row())  # U_b^T U_top, r x k
    return row, s_p, {}


def full_route(base: Base, W_p: torch.Tensor, stored_p: torch.Tensor, update: Update,
               rng: SignDraws | None, null: torch.Generator | None) -> tuple[dict, torch.Tensor, dict]:
    """Both SVDs: `W_p` in the working dtype (for the SVD), `stored_p` as stored (for the float64 top subspaces);
    the Gaussian null's SVD too when `null` (its generator) is given."""
    post = svd(W_p, base.W.dtype, base.W.device)
    row = Scaling(base.factors.S, post.S).row()
    square = (W_p.shape[0] == post.S.numel(), W_p.shape[1] == post.S.numel())
    with full_threads():  # products of m x r and r x r factors: kernels
        Q_U, Q_V = m.overlaps(base.factors.U, post.U), m.overlaps(base.factors.V, post.V)
        rotation = Rotation(Q_U, Q_V, post.S, base.factors.S, square)
        row.update(rotation.row())
        row.update(PostTop(Q_U[:, :INTRUDER_K]).row())
        row.update(Angles(base.top(), top_factors(stored_p.to(base.W.device), post)).row())
    row.update(symmetry_columns(delta_frame(base, update), base.factors.S, update, rng))
    if null is not None:
        row.update(gaussian_null(base, update, null).row())
    return row, post.S, overlap_blocks(*rotation.fixed, BLOCK)


def symmetry_columns(D: torch.Tensor, s_b: torch.Tensor, update: Update, rng: SignDraws | None) -> dict:
    """The `symmetry` stage on D, and `pairing-draws` (p_pair) when its sign draws `rng` are given."""
    symmetry = Symmetry(D, s_b, update.a_fro)
    row = symmetry.row()
    if rng is not None:
        with full_threads():  # the sign draws are float32 matrix products: a kernel
            row.update(PairingDraws(symmetry, rng).row())
    return row


def gaussian_null(base: Base, update: Update, generator: torch.Generator) -> GaussianNull:
    """The `gaussian-null` stage: W_null = a_fro W_b + G, ||G||_F = ||W_p - a_fro W_b||_F, drawn in the base frame
    (`metrics.gaussian_null`) and decomposed (a third SVD, at most 2r x r)."""
    W, s_b = base.W, base.factors.S
    N = null_frame(s_b.double().cpu(), update.a_fro, update.resid_norm(), max(W.shape), generator)
    null = svd(N, W.dtype, W.device)
    return GaussianNull(s_b, null.U, null.S, null.V, W.shape[0] < W.shape[1])


def overlap_blocks(Q_U: torch.Tensor, Q_V: torch.Tensor, k: int) -> dict:
    """Top-left k x k blocks of Q_U and Q_V in the gauge fixed against the base (`metrics.fix_gauge`, SPEC
    "Gauge first": `Rotation.fixed`), for the report's images."""
    k = min(k, Q_U.shape[1])
    return {"Q_U_block": Q_U[:k, :k].double().cpu().numpy(), "Q_V_block": Q_V[:k, :k].double().cpu().numpy()}
