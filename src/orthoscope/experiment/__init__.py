"""`orthoscope experiment`: the paper's intervention table for one base/post pair, with its controls.

>>> from orthoscope.experiment import conditions
>>> [op.name for op in conditions((1.0,)) if op is not None and op.spec.claim.startswith("control")]
['noise', 'rotate-random']
"""

from orthoscope.experiment.columns import claims_table
from orthoscope.experiment.options import ExperimentOptions, parse_grid
from orthoscope.experiment.run import conditions, run_experiment

__all__ = ["ExperimentOptions", "claims_table", "conditions", "parse_grid", "run_experiment"]
