"""Interventions (SPEC.md): build models with swapped, broken or rebuilt singular structure.

>>> from orthoscope.interventions import intervene
>>> intervene("./base", "./instruct", "swap-sigma", "models/swap", scale=1.0)   # doctest: +SKIP
"""

from orthoscope.interventions.apply import patch_model, write_intervened
from orthoscope.interventions.registry import OPS, Op, apply_op, make_op
from orthoscope.interventions.run import intervene, load_patched

__all__ = ["OPS", "Op", "apply_op", "intervene", "load_patched", "make_op", "patch_model", "write_intervened"]
