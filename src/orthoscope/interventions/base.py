"""What an intervention op is: its parameters, its formula, its validation (one object per op).

An `OpSpec` describes one op of docs/method.md ("Interventions"): the
parameters it takes, the formula it applies, the claim of the paper it tests and
the size-matched controls it must be read against. An `Op` is one choice of it:
the op's name and validated arguments. `register` adds an OpSpec to `OPS`;
everything else (`make_op`, the CLI help, the experiment's conditions) reads the
registry, so a new op is one class in `ops.py` and one test.

>>> from orthoscope.interventions.registry import get
>>> spec = get("interpolate")
>>> [p.name for p in spec.params], spec.make(t="0.5").label()
(['t'], 'interpolate@0.5')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from orthoscope.errors import OrthoscopeError

if TYPE_CHECKING:  # the metadata (names, params, formulas, validation) imports without torch
    import torch

    from orthoscope.interventions.geometry import GeodesicMaps
    from orthoscope.kernels import SVD



SMALLEST_NORMAL = 1.1754943508222875e-38
"""float32's smallest normal number: a parameter closer than this to an open lower end is refused."""


@dataclass(frozen=True)
class Param:
    """One numeric parameter of an op (`scale` or `t`), with its range.

    `auto` allows the word "auto" (stored as None: a_geo per matrix); `required`
    ops refuse to run without it; values must be finite and inside [low, high].

    >>> Param("t", "position", required=True, low=0.0, high=1.0).parse("0.25", "interpolate")
    0.25
    >>> Param("t", "position", required=True, low=0.0, high=1.0).parse("nan", "interpolate")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --t 'nan' for interpolate: must be a finite number in [0, 1]
    """

    name: str
    help: str
    required: bool = False
    default: float | None = None
    auto: bool = False
    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    shown_when_auto: bool = True  # label `op@auto` (else just `op` when auto)

    def parse(self, value: str | float | None, op: str) -> float | None:
        """The validated value (None = auto); one-line errors naming --<name> and the op."""
        if value is None:
            if self.required:
                raise OrthoscopeError(f"op {op} needs --{self.name} ({self.help})")
            return self.default
        if isinstance(value, str) and value.strip().lower() == "auto":
            if not self.auto:
                raise OrthoscopeError(f"op {op} needs a numeric --{self.name} ({self.help})")
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OrthoscopeError(f"bad --{self.name} {value!r} for {op}: not a number"
                                  f"{' (or auto for a_geo per matrix)' if self.auto else ''}") from None
        below = number <= self.low if self.low_open else number < self.low
        # an open lower end refuses what float32 weights cannot hold apart from it (1e-320 would write zeros)
        below = below or (self.low_open and 0.0 < abs(number - self.low) < SMALLEST_NORMAL)
        if not math.isfinite(number) or below or number > self.high:
            raise OrthoscopeError(f"bad --{self.name} {value!r} for {op}: must be a {self.describe()}")
        return number

    def describe(self) -> str:
        if self.low == 0.0 and self.low_open and math.isinf(self.high):
            return "finite positive number (at least float32's smallest normal, 1.2e-38)"
        left = "(" if self.low_open else "["
        return f"finite number in {left}{self.low:g}, {self.high:g}]"


SCALE = Param("scale", "the factor c, or auto for a_geo per matrix", default=1.0, auto=True, low_open=True)
A_SCALE = Param("scale", "the factor a, default auto = a_geo per matrix", default=None, auto=True, low_open=True,
                shown_when_auto=False)
T = Param("t", "position on the path, 0 = base, 1 = post", required=True, low=0.0, high=1.0)


@dataclass(frozen=True)
class Op:
    """One intervention to run: the op's name and its validated arguments.

    `scale` None means a_geo per matrix where the op has a scale; `t` is used by
    interpolate only; `seed` by the random ops. Build it with `make_op`, which
    validates through the op's spec.

    >>> Op("interpolate", t=0.5).label()
    'interpolate@0.5'
    """

    name: str
    scale: float | None = None
    t: float | None = None
    seed: int = 0

    @property
    def spec(self) -> OpSpec:
        if self.name not in OPS:
            raise OrthoscopeError(f"unknown op {self.name!r} (known: {', '.join(OPS)})")
        return OPS[self.name]

    def label(self) -> str:
        """A short name for tables and file names (`swap-sigma@auto`, `interpolate@0.5`)."""
        return self.spec.label(self)

    def settings(self) -> dict:
        """The arguments this op actually uses (for manifests and resume keys)."""
        return self.spec.settings(self)


class MatrixPair:
    """One (base, post) matrix pair; float64 views and thin SVDs are computed when first used.

    The matrices are kept in their stored dtype (a bf16 model costs 2 bytes per entry
    while it waits); `W_b`, `W_p` give float64 copies. `post` is the SVD as computed,
    `aligned` the same factors in the base's gauge (SPEC "Gauge first").

    >>> import torch
    >>> pair = MatrixPair(torch.eye(3), 2 * torch.eye(3))
    >>> round(pair.a_geo, 6), pair.post.S.tolist()
    (2.0, [2.0, 2.0, 2.0])
    """

    def __init__(self, W_b: torch.Tensor, W_p: torch.Tensor):
        if W_b.shape != W_p.shape:
            raise OrthoscopeError(f"base and post matrices differ in shape: {tuple(W_b.shape)} vs {tuple(W_p.shape)}")
        self._W_b, self._W_p = W_b, W_p

    @property
    def W_b(self) -> torch.Tensor:
        return self._W_b.double()

    @property
    def W_p(self) -> torch.Tensor:
        return self._W_p.double()

    @cached_property
    def base(self) -> SVD:
        from orthoscope.kernels import svd

        return svd(self.W_b)

    @cached_property
    def post(self) -> SVD:
        from orthoscope.kernels import svd

        return svd(self.W_p)

    @cached_property
    def geodesic(self) -> GeodesicMaps:
        """The t-independent part of the geodesic from base to post (`geometry.geodesic_maps`, the maps and
        their Schur forms): interpolate@t takes it once for every t, and it goes with the pair."""
        from orthoscope.interventions.geometry import geodesic_maps

        return geodesic_maps(self.base, self.post)

    @cached_property
    def aligned(self) -> SVD:
        """The post's SVD in the gauge fixed against the base (`geometry.gauge_fixed`): what every op that
        mixes base and post factors uses, so LAPACK's arbitrary signs never count as a rotation."""
        from orthoscope.interventions.geometry import gauge_fixed

        return gauge_fixed(self.base, self.post)

    @cached_property
    def a_geo(self) -> float:
        from orthoscope import metrics as m

        return m.a_geo(m.ratios(self.base.S, self.post.S))


class OpSpec:
    """One intervention op: name, parameters, formula, the claim it tests and its controls.

    Subclasses set the class attributes and implement `apply`; `diagnostics`
    adds per-matrix numbers to the intervention's manifest and the experiment
    table (e.g. reconstruct's dropped share). `conditions` lists the settings the
    experiment runs (none: the op is left out of the experiment).
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    seeded: ClassVar[bool] = False
    claim: ClassVar[str] = ""          # the claim of the paper the op's score speaks to ("" = none)
    controls: ClassVar[tuple[str, ...]] = ()  # ops whose score this one must be read against
    diagnostic_names: ClassVar[tuple[str, ...]] = ()  # the keys `diagnostics` returns

    def make(self, scale: str | float | None = None, t: str | float | None = None, seed: int = 0) -> Op:
        """Validate the arguments for this op; one-line errors naming the option."""
        given = {"scale": scale, "t": t}
        names = {p.name for p in self.params}
        for option, value in given.items():
            if value is not None and option not in names:
                raise OrthoscopeError(f"op {self.name} takes no --{option} (it computes {self.formula})")
        from orthoscope.pipeline.filters import check_seed  # the one seed check (the package loads torch)

        seed = check_seed(seed)
        values = {p.name: p.parse(given[p.name], self.name) for p in self.params}
        return Op(self.name, values.get("scale"), values.get("t"), seed)

    def label(self, op: Op) -> str:
        parts = []
        for param in self.params:
            value = getattr(op, param.name)
            if value is not None:
                parts.append(f"{value:g}")
            elif param.auto and param.shown_when_auto:
                parts.append("auto")
        return "@".join([self.name, *parts])

    def settings(self, op: Op) -> dict:
        values = {p.name: getattr(op, p.name) for p in self.params}
        if self.seeded:
            values["seed"] = op.seed
        return values

    def conditions(self, grid: tuple[float, ...], seed: int) -> list[Op]:
        """The settings of this op in the experiment's table."""
        return []

    def apply(self, op: Op, pair: MatrixPair, generator: torch.Generator) -> torch.Tensor:
        """The new matrix (float64) for one pair."""
        raise NotImplementedError

    def diagnostics(self, op: Op, pair: MatrixPair) -> dict[str, float]:
        """Per-matrix numbers a reader needs next to the score (none by default)."""
        return {}

    def help_line(self) -> str:
        """`name [params]: formula`, for the CLI help."""
        params = "".join(f" --{p.name}" for p in self.params)
        return f"{self.name}{params}: {self.formula}"


OPS: dict[str, OpSpec] = {}


def register(op: type[OpSpec] | OpSpec) -> type[OpSpec] | OpSpec:
    """Add an op to OPS under its name: a class (decorator: one instance of it) or an instance (an op
    declared as data, e.g. one `ops.Composition` per name)."""
    spec = op() if isinstance(op, type) else op
    if not spec.name or spec.name in OPS:
        raise ValueError(f"op name {spec.name!r} is empty or registered twice")
    OPS[spec.name] = spec
    return op
