"""Evaluation of (intervened) models: lab tasks with n and Wilson intervals, perplexity, lm-eval.

>>> from orthoscope.evaluation import Accuracy
>>> Accuracy(3, 4).value
0.75
"""

from orthoscope.evaluation.lab_tasks import LAB_TASKS, lab_accuracy, lab_score
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.stats import Accuracy

__all__ = ["LAB_TASKS", "Accuracy", "lab_accuracy", "lab_score", "load_model", "perplexity"]
