"""One record per metric column: the single place that says what a column is, which stage fills it and what it costs.

Everything that needs to know about metrics reads this module: the stages of
`pipeline/measure.py` (each fills the columns whose record names it), the float32-safe set of
`pipeline/precision.py`, `--metrics` parsing (`resolve_metrics`), the terminal summary,
`orthoscope metrics` and the README table (a test keeps the README equal to `markdown_table()`).

Routes (what a column needs besides the stored tensors):
- `post-values`: the post tensor and its singular values (no vectors);
- `base-svd`: the base SVD as well (D = U_b^T dW V_b and everything sign-free on it; the post's top-10 left
  vectors from the Gram its singular values come from, for `intruders`);
- `post-svd`: the post SVD (singular vectors: rotations, principal angles);
- `null-svd`: the SVD of the Gaussian null W_null = a_fro W_b + G;
- `delta-svd`: the singular values of dW (only when asked for by name or with the `delta` set);
- `delta-lowrank`: dW's top singular values by randomized block Krylov (asked for by name or `quick`).

Stages (`STAGES`): the steps that fill the columns, one class each in `orthoscope.metrics.columns`
whose `@column` members are named like the records that name the stage.

Named sets: `all` (the default: every column but the delta-svd and delta-lowrank ones),
`sign-free` (the one-SVD route), `delta`, and `quick` (triage of big pairs: the columns
marked quick, read from the stored tensors and a randomized block Krylov of dW, no full SVD).

Adding a metric: one record here and one `@column` on its stage's class in
`orthoscope.metrics.columns` (calling a pure function of `orthoscope.metrics`), one test;
the README table is regenerated from `markdown_table()`.

>>> get("z_pair").route, get("z_pair").stage
('base-svd', 'symmetry')
>>> "delta_rank90" in metric_sets()["all"], "delta_rank90" in metric_sets()["delta"]
(False, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import KW_ONLY, asdict, dataclass
from functools import cache

from orthoscope.errors import OrthoscopeError

ROUTES = ("post-values", "base-svd", "post-svd", "null-svd", "delta-svd", "delta-lowrank")
EXTRA_ROUTES = frozenset({"delta-svd", "delta-lowrank"})  # asked for by name or set, never in `all`
POST_SVD_ROUTES = frozenset({"post-svd", "null-svd"})  # the full route: the post SVD as well
FAMILIES = ("scaling", "spectra", "delta", "rotation", "angles", "symmetry", "nulls")
# families that are NaN on an unchanged matrix (dW = 0): nothing moved, so no structure
CHANGE_FAMILIES = frozenset({"rotation", "angles", "symmetry", "nulls"})
DTYPES = ("float", "int", "bool")


@dataclass(frozen=True)
class Stage:
    """One step of a matrix's measurement. Its columns are the records that name it (`names(stage=...)`);
    its class in `orthoscope.metrics.columns` fills them from what it reads.

    >>> stage("gaussian-null").on_request, stage("rotation").on_request
    (True, False)
    """

    name: str
    on_request: bool = False  # runs only when one of its columns is asked for (else whenever its route runs)


STAGES: tuple[Stage, ...] = (
    Stage("update"),  # the stored tensors: dW formed exactly and three float64 sums
    Stage("scaling"),  # both singular spectra (no singular vectors)
    Stage("symmetry"),  # D = U_b^T dW V_b - (a_fro - 1) S_b (the base SVD)
    Stage("pairing-draws", on_request=True),  # D's pairing statistic and sign draws seeded by (seed, matrix)
    Stage("post-top", on_request=True),  # cosines of the post's top-10 left vectors with the base's (no post SVD)
    Stage("rotation"),  # Q_U = U_b^T U_p, Q_V = V_b^T V_p (both SVDs)
    Stage("angles"),  # the top-k singular subspaces of both matrices, float64-accurate
    Stage("gaussian-null", on_request=True),  # the SVD of the Gaussian null drawn in the base frame
    Stage("delta-svd", on_request=True),  # the singular values of dW
    Stage("delta-lowrank", on_request=True),  # a randomized block Krylov of dW seeded by (seed, matrix)
)
_STAGES = {s.name: s for s in STAGES}


@dataclass(frozen=True)
class Metric:
    """What one column of the metrics table is, and which stage fills it.

    >>> m = get("a_geo")
    >>> (m.family, m.route, m.stage, m.f32_safe, m.dtype, m.summary)
    ('scaling', 'post-values', 'scaling', True, 'float', True)
    """

    name: str
    family: str
    route: str
    f32_safe: bool  # agrees with float64 within 1e-4 on an LLM-like pair (tests/pipeline/test_precision.py)
    dtype: str
    formula: str
    _: KW_ONLY
    stage: str  # the stage that fills it (`STAGES`)
    summary: bool = False  # a column of the terminal summary
    quick: bool = False  # in the `quick` set: needs no full SVD (the stored tensors, a randomized block Krylov of dW)

    def __post_init__(self) -> None:
        if (self.route not in ROUTES or self.family not in FAMILIES or self.dtype not in DTYPES
                or self.stage not in _STAGES):
            raise ValueError(f"bad metric record {self}")

    @property
    def needs_change(self) -> bool:
        """NaN on an unchanged matrix (rotation, angle, symmetry and null columns)."""
        return self.family in CHANGE_FAMILIES


M = Metric
METRICS: tuple[Metric, ...] = (
    # scaling of the singular values
    M("a_geo", "scaling", "post-values", True, "float",
      "exp(mean(log rho_i)), rho_i = s_p,i / s_b,i", stage="scaling", summary=True),
    M("a_fro", "scaling", "post-values", True, "float", "||W_p||_F / ||W_b||_F", stage="update", quick=True),
    M("disp", "scaling", "post-values", True, "float", "std(log rho_i)", stage="scaling", summary=True),
    M("fit_resid", "scaling", "post-values", True, "float", "||s_p - a_geo s_b|| / ||s_p||", stage="scaling"),
    M("stable_rank_base", "spectra", "post-values", True, "float", "||W_b||_F^2 / ||W_b||_2^2", stage="scaling"),
    M("stable_rank_post", "spectra", "post-values", True, "float", "||W_p||_F^2 / ||W_p||_2^2", stage="scaling"),
    # shape of the update dW = W_p - W_b (formed exactly from the stored tensors)
    M("changed", "delta", "post-values", True, "bool",
      "dW != 0 (some entry differs in storage dtype)", stage="update", quick=True),
    M("at_noise_floor", "delta", "post-values", True, "bool",
      "||dW||_F < 1e3 eps(working dtype) ||W_b||_F (unchanged matrices included)", stage="update", quick=True),
    M("rel_delta", "delta", "post-values", True, "float",
      "||dW||_F / ||W_b||_F", stage="update", summary=True, quick=True),
    M("frac_unchanged", "delta", "post-values", True, "float",
      "share of entries bit-identical in storage dtype", stage="update", quick=True),
    M("delta_rank90", "delta", "delta-svd", True, "int",
      "number of singular values of dW holding 90% of ||dW||_F^2 (asked for only)", stage="delta-svd"),
    M("delta_top16", "delta", "delta-lowrank", True, "float",
      "share of ||dW||_F^2 in dW's top 16 singular values by randomized block Krylov (a lower bound, "
      "within 0.005; asked for only)", stage="delta-lowrank", quick=True),
    # rotations of the singular vectors (post SVD)
    M("incons", "rotation", "post-svd", True, "float",
      "||Q_U - Q_V||_F / (2 sqrt r), Q_U = U_b^T U_p, Q_V = V_b^T V_p", stage="rotation", summary=True),
    M("coherence", "rotation", "post-svd", True, "float", "tr(Q_U^T Q_V) / r", stage="rotation"),
    M("rot", "rotation", "post-svd", True, "float",
      "||Q_U - I||_F / (2 sqrt r), gauge-fixed (blocks of s_p within 1e-5 s_p,1)", stage="rotation"),
    M("rel_incons", "rotation", "post-svd", True, "float", "incons / rot", stage="rotation"),
    M("leak_u", "rotation", "post-svd", True, "float", "||Q_U^T Q_U - I||_F / sqrt r", stage="rotation"),
    M("leak_v", "rotation", "post-svd", True, "float", "||Q_V^T Q_V - I||_F / sqrt r", stage="rotation"),
    M("incons_gap", "rotation", "post-svd", True, "float",
      "incons over pairs whose relative gap to both neighbours in s_b exceeds 0.05 (NaN if none)", stage="rotation"),
    M("intruders", "rotation", "base-svd", True, "int",
      "top-10 post left vectors with max_j |cos| to base < 0.5", stage="post-top", summary=True),
    # principal angles between top-k subspaces, k = min(r, 64)
    M("pa_mean_u", "angles", "post-svd", True, "float",
      "mean principal angle (deg) span(U_b[:, :k]) vs span(U_p[:, :k])", stage="angles"),
    M("pa_max_u", "angles", "post-svd", True, "float",
      "max principal angle (deg) span(U_b[:, :k]) vs span(U_p[:, :k])", stage="angles"),
    M("pa_mean_v", "angles", "post-svd", True, "float",
      "mean principal angle (deg) span(V_b[:, :k]) vs span(V_p[:, :k])", stage="angles"),
    M("pa_max_v", "angles", "post-svd", True, "float",
      "max principal angle (deg) span(V_b[:, :k]) vs span(V_p[:, :k])", stage="angles"),
    # symmetry of the update in the base frame, D = U_b^T dW V_b - (a_fro - 1) S_b
    M("asym", "symmetry", "base-svd", True, "float",
      "||M - M^T||_F / (sqrt 2 ||M||_F), M = U_b^T W_p V_b", stage="symmetry", summary=True),
    M("sym_frac", "symmetry", "base-svd", True, "float",
      "||(D + D^T)/2||_F^2 / ||D||_F^2", stage="symmetry", summary=True),
    M("sym_frac_top", "symmetry", "base-svd", True, "float", "sym_frac of D[:k, :k], k = min(r, 64)", stage="symmetry"),
    # nulls: what sym_frac and incons would be without a shared rotation
    M("sym_frac_null", "nulls", "base-svd", True, "float",
      "(r+1)/(2r): mean of sym_frac under a Gaussian update", stage="symmetry", summary=True),
    M("sym_frac_pair_null", "nulls", "base-svd", True, "float",
      "1/2 + sum_i D_ii^2 / (2 ||D||_F^2): mean of sym_frac under sign flips D -> diag(e) D",
      stage="symmetry", summary=True),
    M("z_pair", "nulls", "base-svd", True, "float",
      "T / sqrt(2 ||A||_F^2), A = O o O^T, O = D - diag(D), T = sum(A)", stage="symmetry", summary=True),
    M("p_pair", "nulls", "base-svd", True, "float",
      "P(e^T A e >= T), sequential sign draws: relative s.e. <= 10 % for 1e-4 <= p <= 0.05 (with --pair-draws N: "
      "at most N draws, p >= 1/(N+1))", stage="pairing-draws"),
    M("z_gauss", "nulls", "base-svd", True, "float",
      "(sym_frac - mean) / sd of Beta(r(r+1)/4, r(r-1)/4)", stage="symmetry"),
    M("p_gauss", "nulls", "base-svd", True, "float",
      "upper tail of Beta(r(r+1)/4, r(r-1)/4) at sym_frac", stage="symmetry", summary=True),
    M("z_pair_top", "nulls", "base-svd", True, "float", "z_pair of D[:k, :k], k = min(r, 64)", stage="symmetry"),
    M("incons_null", "nulls", "null-svd", True, "float",
      "incons of W_null = a_fro W_b + G, ||G||_F = ||W_p - a_fro W_b||_F", stage="gaussian-null", summary=True),
    M("pa_mean_u_null", "nulls", "null-svd", True, "float",
      "pa_mean_u of the Gaussian null W_null", stage="gaussian-null"),
    M("a_geo_null", "nulls", "null-svd", True, "float",
      "a_geo of the Gaussian null W_null against W_b", stage="gaussian-null"),
    M("disp_null", "nulls", "null-svd", True, "float",
      "disp of the Gaussian null W_null against W_b", stage="gaussian-null"),
    M("fit_resid_null", "nulls", "null-svd", True, "float",
      "fit_resid of the Gaussian null W_null against W_b", stage="gaussian-null"),
)
del M

_BY_NAME = {metric.name: metric for metric in METRICS}
if len(_BY_NAME) != len(METRICS):
    raise ValueError("duplicate metric names in the registry")

COLUMNS: tuple[str, ...] = tuple(metric.name for metric in METRICS)


def get(name: str) -> Metric:
    """The record of column `name` (KeyError if there is none)."""
    return _BY_NAME[name]


def stage(name: str) -> Stage:
    """The stage record `name` (KeyError if there is none)."""
    return _STAGES[name]


def names(*, route: str | None = None, family: str | None = None, stage: str | None = None) -> tuple[str, ...]:
    """Column names, in table order, optionally of one route, family or stage.

    >>> names(route="null-svd")
    ('incons_null', 'pa_mean_u_null', 'a_geo_null', 'disp_null', 'fit_resid_null')
    >>> names(stage="pairing-draws")
    ('p_pair',)
    """
    return tuple(m.name for m in METRICS
                 if (route is None or m.route == route) and (family is None or m.family == family)
                 and (stage is None or m.stage == stage))


ONE_SVD_ROUTES = frozenset({"post-values", "base-svd"})


def sign_free() -> frozenset[str]:
    """Columns the one-SVD route computes (the base SVD, post singular values, D)."""
    return frozenset(m.name for m in METRICS if m.route in ONE_SVD_ROUTES)


def f32_safe() -> frozenset[str]:
    """Columns that may come from float32 factors (`--precision auto`)."""
    return frozenset(m.name for m in METRICS if m.f32_safe)


@cache
def metric_sets() -> dict[str, frozenset[str]]:
    """Named sets for `--metrics`: `all` (every column but the extra delta SVDs), `sign-free`, `delta`, `quick`.

    >>> sorted(metric_sets()["quick"])
    ['a_fro', 'at_noise_floor', 'changed', 'delta_top16', 'frac_unchanged', 'rel_delta']
    """
    return {
        "all": frozenset(m.name for m in METRICS if m.route not in EXTRA_ROUTES),
        "sign-free": sign_free(),
        "delta": frozenset(names(family="delta")),
        "quick": frozenset(m.name for m in METRICS if m.quick),
    }


def resolve_metrics(spec: str | Iterable[str] | None) -> frozenset[str]:
    """`all`, `sign-free` (the one-SVD set), `delta`, `quick` or metric names, as a set of columns.

    >>> sorted(resolve_metrics("a_geo,sym_frac"))
    ['a_geo', 'sym_frac']
    >>> resolve_metrics("sign-free") == metric_sets()["sign-free"]
    True
    """
    sets = metric_sets()
    if spec is None:
        return sets["all"]
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for name in filter(None, names):
        if name in sets:
            chosen |= sets[name]
        elif name in _BY_NAME:
            chosen.add(name)
        else:
            raise OrthoscopeError(f"unknown metric {name!r} (use {', '.join(sets)} or any of "
                                  f"{', '.join(COLUMNS)}; `orthoscope metrics` lists them)")
    if not chosen:
        raise OrthoscopeError("no metrics asked for")
    return frozenset(chosen)


def needs_post_svd(metrics: Iterable[str]) -> bool:
    """True unless every metric can come from the one-SVD route.

    >>> needs_post_svd({"a_geo", "z_pair"}), needs_post_svd({"pa_mean_u"})
    (False, True)
    """
    return any(_BY_NAME[name].route in POST_SVD_ROUTES for name in metrics)


def runs_svd(metrics: Iterable[str]) -> bool:
    """False for the `quick` set and its subsets, which run no full SVD (only products with dW).

    >>> runs_svd(metric_sets()["quick"]), runs_svd(metric_sets()["sign-free"])
    (False, True)
    """
    return not set(metrics) <= metric_sets()["quick"]


def wanted(stage_name: str, metrics: Iterable[str]) -> bool:
    """Whether a stage whose route runs also runs for `metrics`: always, or (`on_request`) when one of its
    columns is asked for.

    >>> wanted("rotation", {"a_geo"}), wanted("gaussian-null", {"incons"}), wanted("gaussian-null", {"incons_null"})
    (True, False, True)
    """
    return not _STAGES[stage_name].on_request or any(_BY_NAME[name].stage == stage_name for name in metrics)


def summary_columns() -> tuple[str, ...]:
    """Columns of the terminal summary (medians per kind), in table order."""
    return tuple(m.name for m in METRICS if m.summary)


def change_columns() -> tuple[str, ...]:
    """Columns that are NaN on unchanged matrices (their medians are over changed matrices only)."""
    return tuple(m.name for m in METRICS if m.needs_change)


def records() -> list[dict]:
    """Every record as a plain dict (`orthoscope metrics --json`).

    >>> records()[0]["name"], sorted(records()[0])[:4]
    ('a_geo', ['dtype', 'f32_safe', 'family', 'formula'])
    """
    return [asdict(m) for m in METRICS]


def markdown_table() -> str:
    """The README's metric table, one row per column, generated from the registry.

    >>> markdown_table().splitlines()[2].startswith("| `a_geo` | scaling | post-values |")
    True
    """
    lines = ["| column | family | needs | f32 | type | definition |", "|---|---|---|---|---|---|"]
    for m in METRICS:
        formula = m.formula.replace("|", "\\|")
        f32_safe = "yes" if m.f32_safe else "no"
        lines.append(f"| `{m.name}` | {m.family} | {m.route} | {f32_safe} | {m.dtype} | {formula} |")
    return "\n".join(lines)
