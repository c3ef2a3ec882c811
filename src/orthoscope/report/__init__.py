"""The report: one self-contained report.html (plotly.js embedded) and PNG figures for papers.

>>> from orthoscope.report import write_report
>>> write_report("runs/qwen05")          # doctest: +SKIP
PosixPath('runs/qwen05/report.html')
"""

from orthoscope.report.build import write_report

__all__ = ["write_report"]
