"""The registry of intervention ops: look an op up by name, validate its arguments, apply it.

Ops are the registered objects of `ops.py`; this module is the one interface to
them (the CLI's help, `intervene` and the experiment read it).

>>> make_op("swap-sigma", "auto").label()
'swap-sigma@auto'
>>> make_op("interpolate", t=2)
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: bad --t 2 for interpolate: must be a finite number in [0, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthoscope.errors import OrthoscopeError
from orthoscope.interventions import ops as _ops  # noqa: F401  (registers every op)
from orthoscope.interventions.base import OPS, MatrixPair, Op, OpSpec

if TYPE_CHECKING:
    import torch


def get(name: str) -> OpSpec:
    """The op registered under `name`; a one-line error listing the known ones.

    >>> get("noise").formula
    'W_b + G, G Gaussian with ||G||_F = ||W_p - W_b||_F'
    """
    if name not in OPS:
        raise OrthoscopeError(f"unknown op {name!r} (known: {', '.join(OPS)})")
    return OPS[name]


def make_op(name: str, scale: str | float | None = None, t: str | float | None = None, seed: int = 0) -> Op:
    """A validated op: its name, scale, t and seed checked by the op's own spec.

    >>> make_op("break-left", scale=2)
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: op break-left takes no --scale (it computes U_p S_p V_b^T)
    """
    return get(name).make(scale, t, seed)


def op_help() -> str:
    """One line per op, `name [--param]: formula`, for the CLI's --op help.

    >>> op_help().splitlines()[0]
    'swap-sigma --scale: U_p (c S_b) V_p^T'
    """
    return "\n".join(spec.help_line() for spec in OPS.values())


def ops_taking(option: str) -> list[str]:
    """Names of the ops that use `option` ("scale", "t" or "seed"), for help texts.

    >>> ops_taking("t"), ops_taking("seed")
    (['interpolate'], ['break-random', 'noise', 'rotate-random'])
    """
    if option == "seed":
        return [name for name, spec in OPS.items() if spec.seeded]
    return [name for name, spec in OPS.items() if any(p.name == option for p in spec.params)]


def diagnostic_names() -> tuple[str, ...]:
    """Every per-matrix diagnostic any op reports (columns of the experiment table that are not scores).

    >>> diagnostic_names()
    ('dropped_share',)
    """
    return tuple(dict.fromkeys(name for spec in OPS.values() for name in spec.diagnostic_names))


def experiment_conditions(grid: tuple[float, ...], seed: int) -> list[Op]:
    """Every op's experiment settings, in registry order (validated like user input)."""
    conditions = []
    for spec in OPS.values():
        for op in spec.conditions(grid, seed):
            args = {p.name: "auto" if getattr(op, p.name) is None and p.auto else getattr(op, p.name)
                    for p in spec.params}
            conditions.append(spec.make(**args, seed=op.seed))
    return conditions


def apply_op(op: Op, W_b: torch.Tensor, W_p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The new matrix (float64) for one (base, post) pair.

    >>> import torch
    >>> W_b, W_p = torch.eye(3, dtype=torch.float64), 2 * torch.eye(3, dtype=torch.float64)
    >>> apply_op(make_op("swap-sigma"), W_b, W_p, torch.Generator()).diagonal().tolist()
    [1.0, 1.0, 1.0]
    """
    return apply_to_pair(op, MatrixPair(W_b, W_p), generator)


def apply_to_pair(op: Op, pair: MatrixPair, generator: torch.Generator) -> torch.Tensor:
    """The new matrix for a pair whose SVDs may already be known (reused across ops)."""
    return get(op.name).apply(op, pair, generator)
