"""The one-SVD route (sign-free metrics) against the full route, through compare."""

import json
import math

import pandas as pd
import pytest

import orthoscope
from orthoscope.errors import OrthoscopeError
from orthoscope.lab.planted import KIND_SCALE
from orthoscope.metrics.registry import metric_sets, resolve_metrics
from tests.helpers import Q0, copy_with, count_svds


def test_sign_free_runs_one_svd_per_matrix_and_matches_the_full_route(planted, tmp_path, monkeypatch):
    full = orthoscope.compare(*planted, precision="f64", cache=False).table
    calls = count_svds(monkeypatch)
    result = orthoscope.compare(*planted, tmp_path / "fast", metrics="sign-free", precision="f64", cache=False)
    assert len(calls) == 14  # the base SVDs, nothing else
    fast = result.table
    for column in sorted(metric_sets()["sign-free"]):
        assert fast[column].astype(float).to_numpy() == pytest.approx(full[column].astype(float).to_numpy(),
                                                                      abs=1e-9), column
    assert fast.changed.all() and fast.z_pair.notna().all() and fast.p_pair.notna().all()
    for column in ("incons", "rot", "rel_incons", "leak_u", "incons_null", "incons_gap", "pa_mean_u",
                   "pa_max_v", "pa_mean_u_null", "delta_rank90"):
        assert fast[column].isna().all(), column
    for kind, a in KIND_SCALE.items():
        assert fast[fast.kind == kind].a_geo.to_numpy() == pytest.approx(a, abs=1e-6)  # f32 storage
    summary = json.loads((tmp_path / "fast" / "summary.json").read_text())
    assert summary["settings"]["route"] == "one-svd" and summary["settings"]["svd_dtype"] == "torch.float64"
    assert pd.read_parquet(tmp_path / "fast" / "metrics.parquet").intruders.notna().all()  # from the post's Gram


def test_sign_free_auto_precision_is_float32(planted):
    result = orthoscope.compare(*planted, metrics="a_geo,sym_frac", kinds={"o"})
    assert result.summary["settings"]["svd_dtype"] == "torch.float32"
    assert result.table.a_geo.to_numpy() == pytest.approx(1.2, abs=1e-5)
    assert math.isnan(result.table.asym.iloc[0]) is False  # computed for free on the one-SVD route


def test_float32_does_not_report_unasked_metrics_it_cannot_get_right(planted, monkeypatch):
    """A column the registry keeps off float32 (none today: pretend rot is) is NaN unless asked for."""
    from orthoscope.pipeline import precision

    monkeypatch.setattr(precision, "F32_SAFE", precision.F32_SAFE - {"rot", "rel_incons"})
    row = orthoscope.compare(*planted, metrics="incons", kinds={"o"}, precision="f32", cache=False).table.iloc[0]
    assert row.incons < 1e-4 and math.isnan(row.rot) and math.isnan(row.rel_incons)
    assert row.a_geo == pytest.approx(1.2, abs=1e-5)  # float32-safe extras stay


def test_default_set_runs_in_float32_and_matches_float64(planted):
    """Every column is float32-safe: auto runs the default set on float32 SVDs, rot included."""
    auto = orthoscope.compare(*planted, kinds={"o"}, cache=False)
    assert auto.summary["settings"]["svd_dtype"] == "torch.float32"
    reference = orthoscope.compare(*planted, kinds={"o"}, precision="f64", cache=False).table
    assert auto.table.rot.to_numpy() == pytest.approx(reference.rot.to_numpy(), abs=1e-3)
    assert auto.table.pa_max_u.to_numpy() == pytest.approx(reference.pa_max_u.to_numpy(), abs=1e-4)


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
    assert "<h2>The control: delta symmetry</h2>" in page and "<h2>Rotations against the pairing null</h2>" in page
    assert "<h2>Rotation consistency</h2>" not in page
    assert "<h2>Intruder dimensions</h2>" in page  # intruders need no post SVD
    assert not (tmp_path / "r" / "figures" / "consistency.png").exists()
    assert (tmp_path / "r" / "figures" / "sym_frac.png").is_file()


def test_metric_names_are_checked():
    assert resolve_metrics(" a_geo , sign-free") == metric_sets()["sign-free"]
    with pytest.raises(OrthoscopeError, match="unknown metric 'incoherence'"):
        resolve_metrics("a_geo,incoherence")
    with pytest.raises(OrthoscopeError, match="no metrics asked for"):
        resolve_metrics(",")


def test_sym_frac_null_is_the_exact_gaussian_mean_not_a_draw(planted):
    table = orthoscope.compare(*planted, metrics="sign-free", kinds={"q", "down"}, cache=False).table
    r = table[["rows", "cols"]].min(axis=1)
    assert table.sym_frac_null.to_numpy() == pytest.approx(((r + 1) / (2 * r)).to_numpy(), rel=1e-15)


@pytest.mark.parametrize("metrics", ["all", "sign-free"])
def test_a_model_against_itself_has_no_changed_matrix_and_no_structure(planted, metrics):
    from orthoscope.metrics.registry import change_columns
    from orthoscope.pipeline.summary import change_notes, unchanged_counts

    result = orthoscope.compare(planted[0], planted[0], metrics=metrics, cache=False)
    table = result.table
    assert len(table) == 14 and not table.changed.any() and table.at_noise_floor.all()
    assert (table.a_geo == 1).all() and (table.rel_delta == 0).all() and (table.frac_unchanged == 1).all()
    for column in change_columns():
        assert table[column].isna().all(), column
    for kind, entry in result.summary["per_kind"]["base"].items():
        assert entry["unchanged"] == entry["matrices"] and entry["sym_frac"] is None, kind
    assert unchanged_counts(table) == {"base": {k: 2 for k in ("down", "gate", "k", "o", "q", "up", "v")}}
    assert change_notes(table) == ["base: identical to the base (all 14 matrices bit-identical): "
                                   "no rotation or symmetry metric is defined"]


def test_a_partial_update_changes_only_the_touched_matrix(planted, tmp_path):
    """LoRA-style: one matrix moved, the rest bit-identical; medians of symmetry columns use the moved one only."""
    import torch
    from safetensors.torch import load_file

    from orthoscope.pipeline.summary import change_notes
    from tests.helpers import shard_of

    base = planted[0]
    W = load_file(shard_of(base, Q0))[Q0]
    g = torch.Generator().manual_seed(0)
    post = copy_with(base, tmp_path / "lora", Q0, W + 0.01 * torch.randn(W.shape, generator=g).to(W.dtype))
    result = orthoscope.compare(base, post, cache=False)
    table = result.table
    assert table.changed.sum() == 1 and table[table.changed].name.item() == Q0
    assert table[~table.changed].sym_frac.isna().all() and table[table.changed].sym_frac.notna().all()
    q = result.summary["per_kind"]["lora"]["q"]
    assert q["unchanged"] == 1 and q["matrices"] == 2
    assert q["z_pair"] == pytest.approx(table[table.changed].z_pair.item())
    assert q["a_geo"] == pytest.approx(table[table.kind == "q"].a_geo.median())  # scaling: over all matrices
    assert change_notes(table)[0].startswith("lora: 13 of 14 matrices unchanged (")
