"""The closed forms that replace scipy.stats in the CLI's path equal scipy.stats itself."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from orthoscope.evaluation.stats import Accuracy
from orthoscope.experiment.plot import fisher_p
from orthoscope.verdicts.stats import rankdata


@pytest.mark.parametrize("n", [1, 4, 20, 100])
def test_wilson_interval_equals_scipy(n):
    for hits in range(n + 1):
        ci = scipy.stats.binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert Accuracy(hits, n).interval() == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_fisher_p_equals_scipy():
    def row(hits, n):
        return pd.Series({"acc": hits / n, "acc:n": n})

    tables = [(a, n_a, b, n_b) for n_a, n_b in ((4, 4), (20, 20), (20, 7), (100, 100))
              for a, b in itertools.product(sorted({0, 1, n_a // 3, n_a // 2, n_a}), sorted({0, 2, n_b // 2, n_b}))]
    for a, n_a, b, n_b in tables:
        expected = scipy.stats.fisher_exact([[a, n_a - a], [b, n_b - b]]).pvalue
        assert fisher_p(row(a, n_a), row(b, n_b), "acc") == pytest.approx(expected, rel=1e-9), (a, n_a, b, n_b)


def test_rankdata_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for values in (rng.normal(size=50), rng.integers(0, 6, size=50).astype(float), np.ones(7), np.array([3.0])):
        np.testing.assert_array_equal(rankdata(values), scipy.stats.rankdata(values))
