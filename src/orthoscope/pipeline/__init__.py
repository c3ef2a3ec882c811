"""Pairing, scheduling, caching and resume: from checkpoints to the metrics table."""

from orthoscope.pipeline.cache import SVDCache
from orthoscope.pipeline.executors import EXECUTORS, Executor, LocalExecutor, RayExecutor, make_executor
from orthoscope.pipeline.options import CompareOptions
from orthoscope.pipeline.run import CompareResult, compare
from orthoscope.pipeline.runfolder import RunFolder
from orthoscope.pipeline.spectra import spectra

__all__ = ["EXECUTORS", "CompareOptions", "CompareResult", "Executor", "LocalExecutor", "RayExecutor", "RunFolder",
           "SVDCache", "compare", "make_executor", "spectra"]
