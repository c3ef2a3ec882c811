"""Pairing, scheduling, caching and resume: from checkpoints to the metrics table."""

from orthoscope.pipeline.run import CompareResult, compare

__all__ = ["CompareResult", "compare"]
