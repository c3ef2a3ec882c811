"""The one-SVD route (sign-free metrics) against the full route, through compare."""

import json
import math

import pandas as pd
import pytest

import orthoscope
from orthoscope.errors import OrthoscopeError
from orthoscope.lab.planted import KIND_SCALE
from orthoscope.pipeline.measure import ONE_SVD_METRICS, resolve_metrics

from tests.helpers import count_svds


def test_sign_free_runs_one_svd_per_matrix_and_matches_the_full_route(planted, tmp_path, monkeypatch):
    full = orthoscope.compare(*planted, precision="f64", cache=False).table
    calls = count_svds(monkeypatch)
    result = orthoscope.compare(*planted, tmp_path / "fast", metrics="sign-free", precision="f64", cache=False)
    assert len(calls) == 14  # the base SVDs, nothing else
    fast = result.table
    for column in sorted(ONE_SVD_METRICS):
        assert fast[column].to_numpy() == pytest.approx(full[column].to_numpy(), abs=1e-9), column
    for column in ("incons", "rot", "rel_incons", "leak_u", "incons_null", "intruders"):
        assert fast[column].isna().all(), column
    for kind, a in KIND_SCALE.items():
        assert fast[fast.kind == kind].a_geo.to_numpy() == pytest.approx(a, abs=1e-6)  # f32 storage
    summary = json.loads((tmp_path / "fast" / "summary.json").read_text())
    assert summary["settings"]["route"] == "one-svd" and summary["settings"]["svd_dtype"] == "torch.float64"
    assert pd.read_parquet(tmp_path / "fast" / "metrics.parquet").intruders.isna().all()


def test_sign_free_auto_precision_is_float32(planted):
    result = orthoscope.compare(*planted, metrics="a_geo,sym_frac", kinds={"o"})
    assert result.summary["settings"]["svd_dtype"] == "torch.float32"
    assert result.table.a_geo.to_numpy() == pytest.approx(1.2, abs=1e-5)
    assert math.isnan(result.table.asym.iloc[0]) is False  # computed for free on the one-SVD route


def test_float32_does_not_report_unasked_metrics_it_cannot_get_right(planted):
    """incons is float32-safe, so auto picks float32; rot comes along on the full route but needs float64."""
    row = orthoscope.compare(*planted, metrics="incons", kinds={"o"}).table.iloc[0]
    assert row.incons < 1e-4 and math.isnan(row.rot) and math.isnan(row.rel_incons)
    assert row.a_geo == pytest.approx(1.2, abs=1e-5)  # float32-safe extras stay


def test_incons_null_alone_needs_the_null_svd(planted, monkeypatch):
    calls = count_svds(monkeypatch)
    orthoscope.compare(*planted, metrics="incons", kinds={"q"}, cache=False)
    assert len(calls) == 2 * 2  # base and post per matrix, no null
    calls.clear()
    orthoscope.compare(*planted, metrics="incons_null", kinds={"q"}, cache=False)
    assert len(calls) == 3 * 2


def test_a_sign_free_run_is_not_reused_for_all_metrics(planted, tmp_path):
    orthoscope.compare(*planted, tmp_path / "r", metrics="sign-free", kinds={"q"})
    table = orthoscope.compare(*planted, tmp_path / "r", kinds={"q"}).table
    assert table.incons.notna().all()


def test_report_of_a_sign_free_run_leaves_out_rotation_figures(planted, tmp_path):
    from orthoscope.report import write_report

    orthoscope.compare(*planted, tmp_path / "r", metrics="sign-free")
    page = write_report(tmp_path / "r").read_text()
    assert "Delta symmetry" in page and "Rotation inconsistency" not in page and "Intruder dimensions" not in page
    assert not (tmp_path / "r" / "figures" / "consistency.png").exists()
    assert (tmp_path / "r" / "figures" / "sym_frac.png").is_file()


def test_metric_names_are_checked():
    assert resolve_metrics(" a_geo , sign-free") == ONE_SVD_METRICS
    with pytest.raises(OrthoscopeError, match="unknown metric 'incoherence'"):
        resolve_metrics("a_geo,incoherence")
    with pytest.raises(OrthoscopeError, match="no metrics asked for"):
        resolve_metrics(",")


def test_the_null_sym_frac_draw_has_the_distribution_of_a_gaussian_update():
    """Beta(r(r+1)/4, r(r-1)/4) against sym_frac of explicit r x r Gaussian matrices: mean (r+1)/(2r)."""
    import numpy as np
    import torch

    from orthoscope.metrics import sym_frac
    from orthoscope.pipeline.measure import gaussian_sym_frac

    g, r, n = torch.Generator().manual_seed(0), 8, 3000
    explicit = np.array([sym_frac(torch.randn(r, r, generator=g, dtype=torch.float64)) for _ in range(n)])
    drawn = np.array([gaussian_sym_frac(r, g) for _ in range(n)])
    for sample in (explicit, drawn):
        assert abs(sample.mean() - (r + 1) / (2 * r)) < 0.006
    assert abs(drawn.std() - explicit.std()) < 0.006
    assert gaussian_sym_frac(r, torch.Generator().manual_seed(5)) == gaussian_sym_frac(r, torch.Generator().manual_seed(5))
