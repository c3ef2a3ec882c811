"""Evaluation of (intervened) models: exact-match tasks with n and Wilson intervals, perplexity, lm-eval.

Evaluation knows task suites only by their shape (`tasks.Suite`); the lab's is
`orthoscope.lab.tasks.LAB_SUITE`.

>>> from orthoscope.evaluation import Accuracy
>>> Accuracy(3, 4).value
0.75
"""

from orthoscope.evaluation.exact_match import answer_accuracy, score_answers
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.options import EvalOptions
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.run import evaluate_model
from orthoscope.evaluation.stats import Accuracy
from orthoscope.evaluation.tasks import Defaults, Suite, Task

__all__ = ["Accuracy", "Defaults", "EvalOptions", "Suite", "Task", "answer_accuracy", "evaluate_model", "load_model",
           "perplexity", "score_answers"]
