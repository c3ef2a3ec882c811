"""Interventions (docs/method.md, "Interventions"): models with swapped, broken or rebuilt singular structure.

One registered object per op (`OPS`, see `ops.py`); `make_op` validates an op's
arguments, `intervene` writes a checkpoint, `load_patched` patches one in memory.

>>> from orthoscope.interventions import OPS, make_op, intervene
>>> "rotate-random" in OPS, make_op("interpolate", t=0.5).label()
(True, 'interpolate@0.5')
>>> intervene("./base", "./instruct", "swap-sigma", "models/swap", scale=1.0)   # doctest: +SKIP
"""

from __future__ import annotations

from orthoscope._lazy import lazy_exports

# name -> submodule, loaded on first use: the registry's metadata (the CLI's help) imports
# without torch; the math (apply, run, the ops' formulas) loads it when called
_WHERE = {
    "apply": ("patch_model", "write_intervened"),
    "base": ("MatrixPair", "Op", "OpSpec", "Param"),
    "options": ("InterveneOptions",),
    "registry": ("OPS", "apply_op", "experiment_conditions", "get", "make_op", "op_help", "ops_taking"),
    "run": ("intervene", "load_patched"),
}

__getattr__, __dir__, __all__ = lazy_exports("orthoscope.interventions", _WHERE)
