"""orthoscope: what did post-training do to a language model's weights?

>>> import orthoscope
>>> result = orthoscope.compare("./base", "./instruct")   # doctest: +SKIP
>>> result.table.columns[:6].tolist()                       # doctest: +SKIP
['post', 'name', 'layer', 'kind', 'rows', 'cols']
"""

from orthoscope._version import __version__
from orthoscope.pipeline import CompareResult, compare, spectra

__all__ = ["CompareResult", "__version__", "compare", "spectra"]
