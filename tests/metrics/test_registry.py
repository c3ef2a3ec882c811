"""The metric registry is the one list of columns: README, CLI, routes and a real run agree with it."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import orthoscope
from orthoscope.cli import SUMMARY_COLUMNS, app
from orthoscope.kernels.precision import F32_SAFE
from orthoscope.metrics import registry
from orthoscope.pipeline.measure import METRIC_COLUMNS, METRIC_SETS, ONE_SVD_METRICS, needs_post_svd
from orthoscope.pipeline.summary import ID_COLUMNS, NOTE

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> str:
    section = README.read_text().split("## The table\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_readme_table_is_the_registry():
    """Regenerate with: python -c 'from orthoscope.metrics.registry import markdown_table; print(markdown_table())'."""
    assert readme_table() == registry.markdown_table()


def test_every_consumer_reads_the_registry():
    assert METRIC_COLUMNS == registry.COLUMNS
    assert F32_SAFE == registry.f32_safe()
    assert SUMMARY_COLUMNS == registry.summary_columns()
    assert ONE_SVD_METRICS == {m.name for m in registry.METRICS if m.route in ("post-values", "base-svd")}
    # the default set stays at three SVDs: no column of the extra delta SVD
    assert METRIC_SETS["all"] == set(METRIC_COLUMNS) - {"delta_rank90", "delta_top16"}
    assert not needs_post_svd(ONE_SVD_METRICS) and needs_post_svd(METRIC_SETS["all"])


def test_new_issue_columns_are_registered_with_their_routes():
    routes = {m.name: m.route for m in registry.METRICS}
    for name in ("changed", "at_noise_floor", "rel_delta", "frac_unchanged", "sym_frac_pair_null", "z_pair",
                 "p_pair", "z_gauss", "p_gauss", "sym_frac_top", "z_pair_top"):
        assert name in ONE_SVD_METRICS, name  # sign-free: D needs only the base SVD
    for name in ("pa_mean_u", "pa_max_u", "pa_mean_v", "pa_max_v", "incons_gap"):
        assert routes[name] == "post-svd", name
    assert routes["pa_mean_u_null"] == routes["incons_null"] == "null-svd"
    assert routes["delta_rank90"] == "delta-svd"


def test_a_bad_record_is_refused():
    with pytest.raises(ValueError, match="bad metric record"):
        registry.Metric("x", "scaling", "two-svd", True, "float", "x")


def test_a_real_run_writes_exactly_the_registered_columns(planted, tmp_path):
    import pandas as pd

    orthoscope.compare(*planted, tmp_path / "r", metrics="all,delta", kinds={"q", "o"}, precision="f64")
    table = pd.read_parquet(tmp_path / "r" / "metrics.parquet")
    assert set(table.columns) - set(ID_COLUMNS) == {*registry.COLUMNS, NOTE} and (table[NOTE] == "").all()
    assert table.delta_rank90.notna().all() and table.changed.all()
    allowed = {"float": "f", "int": "i", "bool": "b"}
    for m in registry.METRICS:
        assert table[m.name].dtype.kind == allowed[m.dtype], m.name


def test_metrics_command_lists_the_registry():
    runner = CliRunner()
    result = runner.invoke(app, ["metrics", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(registry.COLUMNS)
    assert all({"name", "family", "route", "formula"} <= set(r) for r in rows)
    table = runner.invoke(app, ["metrics"])
    assert table.exit_code == 0 and re.search(r"z_pair\s+│\s+nulls\s+│\s+base-svd", table.stdout)
