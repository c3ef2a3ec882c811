"""`InterveneOptions`: every setting of `orthoscope intervene`, validated once, shared by the CLI and `intervene`.

>>> options = InterveneOptions("interpolate", t="0.5", layers="0-1", kinds="q")
>>> options.op.label(), sorted(options.layers)
('interpolate@0.5', [0, 1])
>>> InterveneOptions("swap-sigma", t=0.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: op swap-sigma takes no --t (it computes ...)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orthoscope.errors import OrthoscopeError
from orthoscope.interventions.base import Op
from orthoscope.interventions.registry import make_op
from orthoscope.pipeline.filters import user_kinds, user_layers


@dataclass(frozen=True)
class InterveneOptions:
    """The settings of an intervention (everything but the models and the output folder).

    `op` is an op name, validated with `scale`, `t` and `seed` into an `Op`, or an `Op`
    from `make_op` (then `scale`, `t` and `seed` stay unset).
    """

    op: str | Op
    scale: str | float | None = None
    t: str | float | None = None
    seed: int = 0
    layers: frozenset[int] | str | Iterable[int] | None = None
    kinds: frozenset[str] | str | Iterable[str] | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__.__get__(self)  # frozen: normalise in place once
        if isinstance(self.op, Op):
            if (self.scale, self.t, self.seed) != (None, None, 0):
                raise OrthoscopeError("give scale, t and seed to make_op, not beside an Op")
        else:
            put("op", make_op(self.op, self.scale, self.t, self.seed))
        put("layers", user_layers(self.layers))
        put("kinds", user_kinds(self.kinds))
