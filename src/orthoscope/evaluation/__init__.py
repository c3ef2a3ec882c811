"""Evaluation of (intervened) models: lab tasks, perplexity."""

from orthoscope.evaluation.lab_tasks import LAB_TASKS, lab_accuracy
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.perplexity import perplexity

__all__ = ["LAB_TASKS", "lab_accuracy", "load_model", "perplexity"]
