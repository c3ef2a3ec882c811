"""orthoscope: what did post-training do to a language model's weights?

The package imports lazily: `import orthoscope` is cheap, and `orthoscope.compare`
loads torch and pandas on first use (so `orthoscope --help` starts fast).

>>> import orthoscope
>>> orthoscope.__version__ == __import__("orthoscope._version").__version__
True
>>> result = orthoscope.compare("./base", "./instruct")   # doctest: +SKIP
>>> result.table.columns[:6].tolist()                       # doctest: +SKIP
['post', 'step', 'name', 'layer', 'kind', 'expert']
"""

from __future__ import annotations

from orthoscope._lazy import lazy_exports
from orthoscope._version import __version__

# one options object per workflow, and the function that runs it
__getattr__, __dir__, _names = lazy_exports("orthoscope", {
    "pipeline": ("CompareOptions", "CompareResult", "compare", "spectra"),
    "interventions": ("InterveneOptions", "intervene"),
    "experiment": ("ExperimentOptions", "run_experiment"),
    "evaluation": ("EvalOptions", "evaluate_model"),
    "lab.options": ("LabOptions", "run_lab"),
    "monitor": ("Monitor",),
})
__all__ = ["__version__", *_names]
