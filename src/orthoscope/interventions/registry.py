"""Op names, their arguments, and one function turning a (base, post) matrix pair into a new matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from orthoscope import metrics as m
from orthoscope.errors import OrthoscopeError
from orthoscope.interventions import ops
from orthoscope.kernels import SVD, svd

OPS = ("swap-sigma", "base-vectors", "break-left", "break-right", "break-random", "reconstruct",
       "interpolate", "temperature")


@dataclass(frozen=True)
class Op:
    """One intervention: its name and arguments (`scale` None means a_geo per matrix)."""

    name: str
    scale: float | None = 1.0
    t: float = 1.0
    seed: int = 0

    def label(self) -> str:
        if self.name in ("swap-sigma", "temperature"):
            return f"{self.name}@{'auto' if self.scale is None else f'{self.scale:g}'}"
        if self.name == "interpolate":
            return f"interpolate@{self.t:g}"
        return self.name


def make_op(name: str, scale: str | float | None = None, t: float | None = None, seed: int = 0) -> Op:
    """Validate an op and its arguments; clear errors for what does not fit.

    >>> make_op("swap-sigma", "auto").label()
    'swap-sigma@auto'
    """
    if name not in OPS:
        raise OrthoscopeError(f"unknown op {name!r} (known: {', '.join(OPS)})")
    if name == "interpolate" and t is None:
        raise OrthoscopeError("op interpolate needs --t (0 = base, 1 = post)")
    if name == "temperature" and scale in (None, "auto"):
        raise OrthoscopeError("op temperature needs a numeric --scale c")
    value = _parse_scale(scale, default=1.0 if name == "swap-sigma" else None)
    return Op(name, value, t if t is not None else 1.0, seed)


def _parse_scale(scale: str | float | None, default: float | None) -> float | None:
    if scale is None:
        return default
    if scale == "auto":
        return None
    try:
        value = float(scale)
    except ValueError:
        raise OrthoscopeError(f"bad --scale {scale!r} (a number, or auto for a_geo per matrix)") from None
    if not value > 0:
        raise OrthoscopeError(f"bad --scale {scale!r}: must be positive")
    return value


def apply_op(op: Op, W_b: torch.Tensor, W_p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The new matrix for one pair, computed in float64 from both thin SVDs."""
    return apply_op_to_factors(op, svd(W_b.double()), svd(W_p.double()), generator)


def apply_op_to_factors(op: Op, base: SVD, post: SVD, generator: torch.Generator) -> torch.Tensor:
    """The new matrix from the float64 thin SVDs of a pair (reusable across ops)."""
    if op.name == "swap-sigma":
        scale = m.a_geo(m.ratios(base.S, post.S)) if op.scale is None else op.scale
        return ops.swap_sigma(base, post, scale)
    if op.name == "temperature":
        return ops.temperature(base, post, op.scale)
    if op.name == "break-random":
        return ops.break_random(base, post, generator)
    if op.name == "reconstruct":
        return ops.reconstruct(base, post, op.scale)
    if op.name == "interpolate":
        return ops.interpolate(base, post, op.t)
    simple = {"base-vectors": ops.base_vectors, "break-left": ops.break_left, "break-right": ops.break_right}
    return simple[op.name](base, post)
