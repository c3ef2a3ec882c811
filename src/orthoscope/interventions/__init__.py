"""Interventions (docs/method.md, "Interventions"): models with swapped, broken or rebuilt singular structure.

One registered object per op (`OPS`, see `ops.py`); `make_op` validates an op's
arguments, `intervene` writes a checkpoint, `load_patched` patches one in memory.

>>> from orthoscope.interventions import OPS, make_op, intervene
>>> "rotate-random" in OPS, make_op("interpolate", t=0.5).label()
(True, 'interpolate@0.5')
>>> intervene("./base", "./instruct", "swap-sigma", "models/swap", scale=1.0)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib

# name -> submodule, loaded on first use: the registry's metadata (the CLI's help) imports
# without torch; the math (apply, run, the ops' formulas) loads it when called
_WHERE = {
    "apply": ("patch_model", "write_intervened"),
    "base": ("MatrixPair", "Op", "OpSpec", "Param"),
    "registry": ("OPS", "apply_op", "experiment_conditions", "get", "make_op", "op_help", "ops_taking"),
    "run": ("intervene", "load_patched"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'orthoscope.interventions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"orthoscope.interventions.{_MODULE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
