"""One matrix pair -> one table row: SVDs (kernels) feeding the metrics.

What each column is and which route computes it lives in
`orthoscope.metrics.registry`; this module only runs the routes:
- always: the update dW = W_p - W_b formed exactly from the stored tensors
  (`changed`, `at_noise_floor`, `rel_delta`, `frac_unchanged`); a bit-identical
  matrix is unchanged and its rotation, angle, symmetry and null columns are NaN;
- one-SVD (every asked metric sign-free): the base SVD (cacheable), the post
  singular values by the cheapest exact route, and D = U_b^T dW V_b - (a_fro - 1) S_b
  with everything computed from it (sym_frac, both nulls, the top block);
- full: the post SVD too, for rotations and principal angles (top-k subspaces refined
  in float64 when the SVDs are float32), and the Gaussian null's SVD, drawn in the
  base frame (at most 2r x r), when a null-svd column is asked for;
- the singular values of dW only when `delta_rank90` is asked for, its randomized top
  16 only for `delta_top16`; the `quick` set runs no full SVD (the base's is never made).
Columns a route does not compute are NaN.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from orthoscope import metrics as m
from orthoscope.errors import OrthoscopeError
from orthoscope.kernels import SVD, krylov_values, singular_values, svd, svdvals, top_subspaces
from orthoscope.kernels.precision import F32_SAFE
from orthoscope.kernels.threads import full_threads
from orthoscope.metrics import registry
from orthoscope.metrics.rotations import undefined_vectors
from orthoscope.pipeline.cache import SVDCache

METRIC_COLUMNS = registry.COLUMNS
METRIC_SETS = registry.metric_sets()
ONE_SVD_METRICS = METRIC_SETS["sign-free"]
RATIO_BINS = 32
INTRUDER_K = 10
INTRUDER_EPS = 0.5
BLOCK = 32
TOP_K = 64  # top block of D (sym_frac_top, z_pair_top) and principal angles
SMALL_RANK = 192  # short side up to which `--precision auto` decomposes in float64, on one thread


def resolve_metrics(spec: str | Iterable[str] | None) -> frozenset[str]:
    """`all`, `sign-free` (the one-SVD set), `delta`, `quick` or metric names, as a set of columns.

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
            raise OrthoscopeError(f"unknown metric {name!r} (use {', '.join(METRIC_SETS)} or any of "
                                  f"{', '.join(METRIC_COLUMNS)}; `orthoscope metrics` lists them)")
    if not chosen:
        raise OrthoscopeError("no metrics asked for")
    return frozenset(chosen)


def _routes(metrics: Iterable[str]) -> set[str]:
    return {registry.get(name).route for name in metrics}


def needs_post_svd(metrics: frozenset[str]) -> bool:
    """True unless every metric can come from the one-SVD route.

    >>> needs_post_svd(frozenset({"a_geo", "z_pair"})), needs_post_svd(frozenset({"pa_mean_u"}))
    (False, True)
    """
    return bool(_routes(metrics) & {"post-svd", "null-svd"})


def runs_svd(metrics: frozenset[str]) -> bool:
    """False for the `quick` set and its subsets, which run no full SVD (only products with dW).

    >>> runs_svd(METRIC_SETS["quick"]), runs_svd(METRIC_SETS["sign-free"])
    (False, True)
    """
    return not metrics <= METRIC_SETS["quick"]


def needs_null_svd(metrics: frozenset[str]) -> bool:
    """True if a column of the Gaussian null's SVD (incons_null, pa_mean_u_null) is asked for."""
    return "null-svd" in _routes(metrics)


class SkipMatrix(Exception):
    """This matrix cannot be analysed (the run goes on); the message is the reason."""


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


def small(shape: tuple[int, ...] | torch.Size) -> bool:
    """Whether a matrix is small enough for the small-matrix route (short side at most SMALL_RANK).

    There one float64 SVD costs no more than a float32 SVD and its float64 refinement of the
    top subspaces (which for r <= TOP_K + 16 is a second SVD of the whole matrix), and a
    second thread costs more in wake-ups than it saves (docs/benchmarks.md, small-matrix route).

    >>> small((96, 288)), small((192, 576)), small((576, 1536))
    (True, True, False)
    """
    return min(shape) <= SMALL_RANK


def sized_dtype(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, auto: bool) -> torch.dtype:
    """The SVD dtype for one matrix: float64 for a small one under `--precision auto`, else `dtype`.

    Exact in float64 once: no refinement, no floor fallback, the numbers of `--precision f64`.

    >>> sized_dtype((96, 96), torch.float32, True), sized_dtype((896, 896), torch.float32, True)
    (torch.float64, torch.float32)
    >>> sized_dtype((96, 96), torch.float32, False)
    torch.float32
    """
    return torch.float64 if auto and small(shape) else dtype


def check_floating(W: torch.Tensor, side: str) -> None:
    """Raise SkipMatrix for integer, boolean or complex tensors (quantised or not a weight matrix)."""
    if not W.is_floating_point():
        raise SkipMatrix(f"{side} matrix has dtype {str(W.dtype).replace('torch.', '')}, not a real floating-point "
                         "type (quantised or not a weight: not analysed)")


def nonfinite_count(W: torch.Tensor, total: float | None = None) -> int:
    """NaN/Inf entries of `W`; a finite `total` (W's sum, formed here if not given) clears it in one pass.

    NaN and Inf propagate into the sum, so only a sum that is not finite (NaN/Inf entries, or
    a finite matrix whose sum overflows) calls for the per-entry count.

    >>> nonfinite_count(torch.tensor([1.0, float("inf"), float("nan")])), nonfinite_count(torch.ones(3))
    (2, 0)
    """
    total = W.sum().item() if total is None else total
    return 0 if math.isfinite(total) else int((~torch.isfinite(W)).sum())


def check_finite(W: torch.Tensor, side: str, stored: torch.Tensor | None = None) -> None:
    """Raise SkipMatrix for NaN/Inf entries or an all-zero matrix (on `W` as converted: fast dtypes).

    A finite, nonzero sum (one vectorised pass, NaN and Inf propagate) clears the matrix;
    only then is each entry checked (an overflowing sum or a zero sum is not yet a verdict).

    >>> check_finite(torch.tensor([[1.0, -1.0]]), "post")  # sums to 0, yet not all zero
    >>> check_finite(torch.tensor([[1.0, float("nan")]]), "post")
    Traceback (most recent call last):
    ...
    orthoscope.pipeline.measure.SkipMatrix: 1 NaN/Inf entries in the post matrix

    `stored` (the tensor before conversion) tells finite values that overflowed the working
    dtype from NaN/Inf in the checkpoint:

    >>> stored = torch.tensor([[1.0, 1e300]], dtype=torch.float64)
    >>> check_finite(stored.float(), "post", stored)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    orthoscope.pipeline.measure.SkipMatrix: 1 finite entries of the post matrix overflow float32 ...: rerun with ...f64
    """
    total = W.sum().item()
    if math.isfinite(total) and total != 0:
        return
    bad = nonfinite_count(W, total)
    if bad:
        stored_bad = nonfinite_count(stored) if stored is not None and stored.dtype != W.dtype else bad
        if stored_bad < bad:
            largest = float(stored[torch.isfinite(stored)].abs().max())
            raise SkipMatrix(f"{bad - stored_bad} finite entries of the {side} matrix overflow "
                             f"{str(W.dtype).replace('torch.', '')} (largest |value| {largest:.3g}): "
                             f"rerun with --precision f64")
        raise SkipMatrix(f"{bad} NaN/Inf entries in the {side} matrix")
    if not W.any():
        raise SkipMatrix(f"all-zero {side} matrix (no singular subspace to compare)")


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


def null_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, matrix name): the same null whatever the order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def pair_rng(seed: int, name: str) -> np.random.Generator:
    """The sign draws of the pairing null, seeded by (seed, matrix name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


@dataclass
class Update:
    """dW = W_p - W_b, formed exactly, and what it says before any SVD."""

    dW: torch.Tensor
    changed: bool
    a_fro_m1: float  # a_fro - 1, without cancellation
    row: dict
    nd2: float = 0.0  # ||dW||_F^2 in float64
    nb2: float = 1.0  # ||W_b||_F^2 in float64
    cross: float = 0.0  # <W_b, dW>_F in float64

    def resid_norm(self) -> float:
        """||W_p - a_fro W_b||_F = ||dW - (a_fro - 1) W_b||_F, from the three float64 sums (no matrix pass).

        >>> Update(None, True, 0.0, {}, nd2=4.0, nb2=9.0, cross=0.0).resid_norm()
        2.0
        """
        a = self.a_fro_m1
        return math.sqrt(max(self.nd2 - 2 * a * self.cross + a * a * self.nb2, 0.0))


def update_of(base: Base, W_p: torch.Tensor, dtype: torch.dtype, converted: torch.Tensor | None = None) -> Update:
    """The exact update and its columns: changed, at_noise_floor, rel_delta, frac_unchanged.

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
    rel = math.sqrt(nd2 / nb2)
    row = {"changed": changed, "at_noise_floor": rel < m.noise_floor(dtype), "rel_delta": rel,
           "frac_unchanged": unchanged / same.numel()}
    return Update(dW, changed, m.a_fro_minus_one_from(nb2, cross, nd2) if changed else 0.0, row, nd2, nb2, cross)


def measure(base: Base, W_p: torch.Tensor, name: str, seed: int,
            metrics: frozenset[str] = METRIC_SETS["all"], floor_fallback: bool = False) -> tuple[dict, dict]:
    """The asked metrics of one pair (others NaN), and its spectra for the .npz.

    With `floor_fallback` (meant for `--precision auto`), a changed matrix whose update is
    below the working precision's noise floor (float32: rel_delta < 1.2e-4) is measured
    again on a float64 base SVD, so that it is analysed rather than left at the floor.

    Returns (row, arrays): row maps every METRIC_COLUMNS entry to a value
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
    if floor_fallback and dtype != torch.float64 and update.changed and update.row["at_noise_floor"]:
        return measure(prepare_base(base.stored, torch.float64, base.W.device), W_p, name, seed, metrics)
    full = needs_post_svd(metrics)
    if not (full and update.changed):
        del W  # only the post SVD needs the working copy; the post's values are read blockwise from W_p
    if not runs_svd(metrics):  # no SVD at all: the stored tensors and a randomized block Krylov of dW
        row, s_p, blocks = {}, None, {}
    elif not update.changed:  # no SVD either: the base's singular values alone
        row, s_p, blocks = _unchanged_route(base, full)
    elif full:
        draws = _pair_draws(seed, name, metrics)
        row, s_p, blocks = _full_route(base, W, W_p, update, null_generator(seed, name), draws,
                                       needs_null_svd(metrics))
    else:
        row, s_p, blocks = _one_svd_route(base, W_p, update, _pair_draws(seed, name, metrics))
    row.update(update.row)
    row["a_fro"] = 1.0 + update.a_fro_m1  # from the tensors: exact where the spectra round
    if "delta-svd" in _routes(metrics):
        row["delta_rank90"] = m.rank90(svdvals(update.dW, dtype, base.W.device)) if update.changed else 0
    if "delta-lowrank" in _routes(metrics):
        with full_threads():  # a few products with dW: a kernel
            ritz = krylov_values(update.dW, seed * 1_000_003 + zlib.crc32(name.encode())) if update.nd2 else None
            row["delta_top16"] = m.top_energy(ritz, update.nd2)
    columns = {c: row.get(c, math.nan) if _reportable(c, metrics, dtype) else math.nan for c in METRIC_COLUMNS}
    families, note = undefined_vectors(base.factors.S, s_p) if update.changed and s_p is not None else ((), "")
    blank = [c for c in registry.COLUMNS if registry.get(c).family in families and not math.isnan(columns[c])]
    columns.update(dict.fromkeys(blank, math.nan), note=note if blank else "")  # a rank-deficient side
    if s_p is None:
        return columns, {}
    s_b = s_p if not update.changed else base.factors.S
    arrays = {
        "s_base": s_b.double().cpu().numpy(),
        "s_post": s_p.double().cpu().numpy(),
        "rho_bins": m.binned_ratios(s_b.cpu(), s_p.cpu(), RATIO_BINS).numpy(),
        "effective_rank": np.array([m.effective_rank(s_b), m.effective_rank(s_p)]),
        **blocks,
    }
    return columns, arrays


def _pair_draws(seed: int, name: str, metrics: frozenset[str]) -> np.random.Generator | None:
    """The pairing null's sign draws only when `p_pair` is asked for (they are most of a small matrix's work)."""
    return pair_rng(seed, name) if "p_pair" in metrics else None


def _reportable(column: str, metrics: frozenset[str], dtype: torch.dtype) -> bool:
    """A column computed on the way is kept unless float32 is not accurate enough for it and nobody asked for it."""
    return column in metrics or dtype == torch.float64 or column in F32_SAFE


def _unchanged_route(base: Base, full: bool) -> tuple[dict, torch.Tensor, dict]:
    """dW = 0: the post factors are the base ones; every change-dependent column stays NaN.

    Only the singular values are needed (the scaling columns and the spectra), so no SVD is
    run: a model compared with itself costs one values-only eigensolve per matrix.
    """
    s_b = base.values()
    blocks = {}
    if full:
        eye = torch.eye(s_b.numel(), dtype=s_b.dtype, device=s_b.device)
        blocks = overlap_blocks(eye, eye, BLOCK)
    return scaling_metrics(s_b, s_b), s_b, blocks


def delta_frame(base: Base, update: Update) -> torch.Tensor:
    """D = U_b^T dW V_b - (a_fro - 1) S_b (= U_b^T (W_p - a_fro W_b) V_b without cancellation)."""
    f = base.factors
    with full_threads():  # 2 m n r flops: a kernel
        D = m.one_svd_form(f.U, update.dW, f.V)
    return D - update.a_fro_m1 * torch.diag(f.S.to(D.dtype))


def _one_svd_route(base: Base, W_p: torch.Tensor, update: Update,
                   rng: np.random.Generator | None) -> tuple[dict, torch.Tensor, dict]:
    # torch's work (the base SVD, D) before the post's values: scipy's BLAS threads still spin
    # briefly after the eigensolve (kernels.svd.BLAS_SPIN_LOG2_CYCLES), the one-thread work is next
    D = delta_frame(base, update)
    s_p = singular_values(W_p, base.W.device)
    row = scaling_metrics(base.factors.S, s_p)
    row.update(symmetry_metrics(D, base.factors.S, 1.0 + update.a_fro_m1, rng))
    return row, s_p, {}


def _full_route(base: Base, W_p: torch.Tensor, stored_p: torch.Tensor, update: Update, generator: torch.Generator,
                rng: np.random.Generator | None, null_svd: bool) -> tuple[dict, torch.Tensor, dict]:
    """`W_p` in the working dtype (for the SVD), `stored_p` as stored (for the float64 top subspaces)."""
    post = svd(W_p, base.W.dtype, base.W.device)
    row = scaling_metrics(base.factors.S, post.S)
    square = (W_p.shape[0] == post.S.numel(), W_p.shape[1] == post.S.numel())
    with full_threads():  # products of m x r and r x r factors: kernels
        Q_U, Q_V = m.overlaps(base.factors.U, post.U), m.overlaps(base.factors.V, post.V)
        row.update(rotation_metrics(Q_U, Q_V, post.S, base.factors.S, square))
        row.update(angle_metrics(base.top(), top_factors(stored_p.to(base.W.device), post)))
    row.update(symmetry_metrics(delta_frame(base, update), base.factors.S, 1.0 + update.a_fro_m1, rng))
    if null_svd:
        row.update(null_metrics(base, update, generator))
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


def rotation_metrics(Q_U: torch.Tensor, Q_V: torch.Tensor, s_p: torch.Tensor,
                     s_b: torch.Tensor | None = None, square: tuple[bool, bool] = (False, False)) -> dict:
    """Rotation columns from Q_U = U_b^T U_p and Q_V = V_b^T V_p (incons_gap needs the base spectrum `s_b`).

    `square` says which side's vectors are square (no leak possible). Arithmetic in float64
    on the r x r overlaps; the gauge blocks use one tolerance in every precision
    (`metrics.rotations.GAUGE_RTOL`), so float32 factors give the float64 values.
    """
    # r^3 products, accurate in the factors' dtype; a side whose vectors are square (r = its
    # dimension) cannot leave the base subspace: its leak is 0 exactly (`square` says which)
    leak_u, leak_v = (0.0 if sq else m.leak(Q) for sq, Q in zip(square, (Q_U, Q_V)))
    Q_U, Q_V, s_p = Q_U.double(), Q_V.double(), s_p.double()
    fixed_U, _ = m.fix_gauge(Q_U, Q_V, s_p)
    incons, rot = m.inconsistency(Q_U, Q_V), m.rotation_size(fixed_U)
    return {
        "incons": incons,
        "coherence": m.coherence(Q_U, Q_V),
        "rot": rot,
        "rel_incons": incons / rot if rot > 0 else 0.0,
        "leak_u": leak_u,
        "leak_v": leak_v,
        "intruders": m.intruders(Q_U, INTRUDER_K, INTRUDER_EPS),
        "incons_gap": m.inconsistency_gap(Q_U, Q_V, s_b) if s_b is not None else math.nan,
    }


def _angles_deg(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    k = min(TOP_K, X.shape[1])
    return torch.rad2deg(m.principal_angles(X[:, :k], Y[:, :k]))


def angle_metrics(base: tuple[torch.Tensor, torch.Tensor], post: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Mean and max principal angles (degrees) between the top-k left (u) and right (v) subspaces, k = min(r, 64).

    `base` and `post` are (U[:, :k], V[:, :k]) from `top_factors` (float64-accurate subspaces).
    """
    u, v = _angles_deg(base[0], post[0]), _angles_deg(base[1], post[1])
    return {"pa_mean_u": u.mean().item(), "pa_max_u": u.max().item(),
            "pa_mean_v": v.mean().item(), "pa_max_v": v.max().item()}


def symmetry_metrics(D: torch.Tensor, s_b: torch.Tensor, a_fro: float,
                     rng: np.random.Generator | None = None) -> dict:
    """Columns read from D = U_b^T (W_p - a_fro W_b) V_b: asym, sym_frac, both nulls, the top block.

    asym of M = U_b^T W_p V_b = D + a_fro S_b uses M - M^T = D - D^T (S_b is diagonal).
    p_pair needs `rng` (the sign draws); without it p_pair is NaN.
    """
    D = D.double()
    r = D.shape[0]
    pair, value = m.pairing_and_sym_frac(D)
    # ||M||^2 = ||D + a_fro S_b||^2: the off-diagonal of D plus the shifted diagonal (no cancellation)
    M_norm = math.sqrt(max(pair.norm2 - pair.diag2, 0.0)
                       + (torch.diagonal(D) + a_fro * s_b.to(D)).square().sum().item())
    asym = (torch.linalg.matrix_norm(D - D.T).item() / (math.sqrt(2) * M_norm)) if M_norm > 0 else 0.0
    z_gauss, p_gauss = m.gauss_tail(value, r)
    k = min(r, TOP_K)
    top_pair, top_value = m.pairing_and_sym_frac(D[:k, :k])
    return {
        "asym": asym,
        "sym_frac": value,
        "sym_frac_null": m.gauss_mean(r),
        "sym_frac_pair_null": pair.null_mean,
        "z_pair": pair.z,
        "p_pair": m.p_pair(pair, rng) if rng is not None else math.nan,
        "z_gauss": z_gauss,
        "p_gauss": p_gauss,
        "sym_frac_top": top_value,
        "z_pair_top": top_pair.z,
    }


def null_metrics(base: Base, update: Update, generator: torch.Generator) -> dict:
    """incons, pa_mean_u and the scaling fit (a_geo, disp, fit_resid) of the Gaussian null W_null = a_fro W_b + G,
    ||G||_F = ||W_p - a_fro W_b||_F (a third SVD).

    Drawn in the base frame (exact in distribution, no m-sized product): on the tall side
    (m >= n = r), [U_b U_perp]^T W_null V_b = [[a S_b + Z_1], [Z_2]] with Z = [Z_1; Z_2]
    i.i.d. Gaussian (rotation invariance of G), and Z_2 enters the SVD only through its
    triangular factor R (Z_2 = Q R; Bartlett: R_ii ~ chi(m - r - i + 1), R_ij ~ N(0, 1)
    above the diagonal), so the null's SVD is that of N = [[a S_b + Z_1], [R]], at most
    2r x r, with Q_U = U_N[:r], Q_V = V_N (left and right swap for a wide W).
    """
    W = base.W
    N = null_frame(base.factors.S.double().cpu(), 1.0 + update.a_fro_m1, update.resid_norm(), max(W.shape), generator)
    null = svd(N, W.dtype, W.device)
    r = N.shape[1]
    Q_left, Q_right = null.U[:r], null.V  # overlaps with the base's vectors on the tall side
    wide = W.shape[0] < W.shape[1]
    Q_U, Q_V = (Q_right, Q_left) if wide else (Q_left, Q_right)
    k = min(TOP_K, r)
    U_null = null.V if wide else null.U  # the null's left vectors of W in base coordinates
    eye = torch.eye(U_null.shape[0], k, dtype=U_null.dtype, device=U_null.device)
    scaling = dict(zip(("a_geo_null", "disp_null", "fit_resid_null"), m.scaling_fit(base.factors.S, null.S)))
    return {"incons_null": m.inconsistency(Q_U, Q_V),
            "pa_mean_u_null": torch.rad2deg(m.principal_angles(eye, U_null[:, :k])).mean().item(), **scaling}


def null_frame(s_b: torch.Tensor, a: float, size: float, long_side: int, generator: torch.Generator) -> torch.Tensor:
    """N = [[a S_b + Z_1], [R]] (float64): the Gaussian null in the base frame, ||[Z_1; R]||_F = `size`.

    Z_1 is r x r Gaussian; R is the triangular factor of the (long_side - r) x r Gaussian Z_2
    (drawn by Bartlett's decomposition when long_side >= 2r, else Z_2 itself).

    >>> N = null_frame(torch.tensor([3.0, 1.0], dtype=torch.float64), 1.0, 0.5, 9, torch.Generator().manual_seed(0))
    >>> expected = torch.eye(4, 2, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    >>> N.shape, round(torch.linalg.matrix_norm(N - expected).item(), 12)
    (torch.Size([4, 2]), 0.5)
    """
    r = s_b.numel()
    p = long_side - r
    Z1 = _normal(generator, r, r)
    if p >= r:
        R = _normal(generator, r, r).triu(1)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        R.diagonal().copy_(torch.from_numpy(np.sqrt(np.random.default_rng(seed).chisquare(p - np.arange(r)))))
    else:
        R = _normal(generator, p, r)
    Z = torch.cat([Z1, R])
    Z *= size / torch.linalg.matrix_norm(Z).clamp(min=1e-300).item()
    Z[:r] += torch.diag(a * s_b)
    return Z


def _normal(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Standard normal draws as float64, drawn in float32 (4.5x faster here; a null's draw needs no more)."""
    return torch.randn(*shape, generator=generator, dtype=torch.float32).double()
