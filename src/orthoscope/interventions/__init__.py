"""Interventions (docs/method.md, "Interventions"): models with swapped, broken or rebuilt singular structure.

One registered object per op (`OPS`, see `ops.py`); `make_op` validates an op's
arguments, `intervene` writes a checkpoint, `load_patched` patches one in memory.

>>> from orthoscope.interventions import OPS, make_op
>>> "rotate-random" in OPS, make_op("interpolate", t=0.5).label()
(True, 'interpolate@0.5')
>>> intervene("./base", "./instruct", "swap-sigma", "models/swap", scale=1.0)   # doctest: +SKIP
"""

from orthoscope.interventions.apply import patch_model, write_intervened
from orthoscope.interventions.base import MatrixPair, Op, OpSpec, Param
from orthoscope.interventions.registry import OPS, apply_op, experiment_conditions, get, make_op, op_help, ops_taking
from orthoscope.interventions.run import intervene, load_patched

__all__ = ["OPS", "MatrixPair", "Op", "OpSpec", "Param", "apply_op", "experiment_conditions", "get", "intervene",
           "load_patched", "make_op", "op_help", "ops_taking", "patch_model", "write_intervened"]
