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

import importlib

from orthoscope._version import __version__

__all__ = ["CompareResult", "__version__", "compare", "spectra"]
_LAZY = {"CompareResult": "orthoscope.pipeline", "compare": "orthoscope.pipeline", "spectra": "orthoscope.pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'orthoscope' has no attribute {name!r}")
