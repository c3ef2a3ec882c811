"""experiment.png's dots: the intervals it draws for each condition."""

import numpy as np
import pandas as pd

from orthoscope.experiment import plot
from orthoscope.interventions.ops import CONSISTENCY, CONTROL


def test_a_value_without_an_interval_keeps_zero_width_caps(monkeypatch):
    """A row with an accuracy and no interval (lo/hi NaN) draws caps of width 0, not NaN (no bar at all)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = plot.complete(pd.DataFrame({
        "condition": ["post", "break-left", "noise"], "claim": ["", CONSISTENCY, CONTROL],
        "lab-facts": [0.5, 0.25, 0.75], "lab-facts:n": [4, 4, 4],
        "lab-facts:lo": [0.15, np.nan, 0.3], "lab-facts:hi": [0.85, np.nan, 0.95]}))
    drawn = []
    fig, ax = plt.subplots()
    monkeypatch.setattr(ax, "errorbar", lambda x, y, xerr, **kw: drawn.append((list(x), [list(e) for e in xerr])))
    plot._dots(ax, table, plot.figure_rows(table), "lab-facts", first=True)
    plt.close(fig)
    assert sorted(drawn) == [([0.25], [[0.0], [0.0]]), ([0.5], [[0.35], [0.35]]),
                             ([0.75], [[0.45], [0.19999999999999996]])]
