"""`orthoscope experiment`: the paper's intervention table for one base/post pair, in one go."""

from orthoscope.experiment.run import conditions, run_experiment

__all__ = ["conditions", "run_experiment"]
