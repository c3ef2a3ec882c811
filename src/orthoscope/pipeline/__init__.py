"""Pairing, scheduling, caching and resume: from checkpoints to the metrics table."""

from orthoscope.pipeline.cache import SVDCache
from orthoscope.pipeline.run import CompareResult, compare
from orthoscope.pipeline.spectra import spectra

__all__ = ["CompareResult", "SVDCache", "compare", "spectra"]
