"""The metric registry is the one list of columns: README, CLI, routes and a real run agree with it."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import orthoscope
from orthoscope.cli import SUMMARY_COLUMNS, app
from orthoscope.metrics import registry
from orthoscope.metrics.registry import COLUMNS as METRIC_COLUMNS
from orthoscope.metrics.registry import needs_post_svd
from orthoscope.pipeline.precision import F32_SAFE
from orthoscope.pipeline.summary import ID_COLUMNS, NOTE

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> str:
    section = README.read_text().split("## The table\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_readme_table_is_the_registry():
    """Regenerate with: python -c 'from orthoscope.metrics.registry import markdown_table; print(markdown_table())'."""
    assert readme_table() == registry.markdown_table()


METRIC_SETS = registry.metric_sets()
ONE_SVD_METRICS = METRIC_SETS["sign-free"]


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
        registry.Metric("x", "scaling", "two-svd", True, "float", "x", stage="scaling")
    with pytest.raises(ValueError, match="bad metric record"):
        registry.Metric("x", "scaling", "post-values", True, "float", "x", stage="no-such-stage")


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


def test_every_registered_column_is_filled_by_exactly_one_stage():
    """Each registry stage has one class in metrics.columns; its `@column`s are exactly the records naming it."""
    from orthoscope.metrics.columns import STAGE_CLASSES

    assert [cls.stage for cls in STAGE_CLASSES] == [stage.name for stage in registry.STAGES]
    filled = [name for cls in STAGE_CLASSES for name in cls.columns()]
    assert sorted(filled) == sorted(registry.COLUMNS)  # every column once, no unregistered one
    for cls in STAGE_CLASSES:
        assert set(cls.columns()) == set(registry.names(stage=cls.stage)), cls.stage
        assert len({registry.get(name).route for name in cls.columns()}) == 1, cls.stage  # one route per stage


def test_measure_fills_every_asked_column_from_its_stage():
    import torch

    from orthoscope.pipeline.measure import measure
    from orthoscope.pipeline.operands import prepare_base

    g = torch.Generator().manual_seed(0)
    W_b = torch.randn(40, 24, generator=g, dtype=torch.float64)
    W_p = 1.1 * W_b + 0.05 * torch.randn(40, 24, generator=g, dtype=torch.float64)
    row, _ = measure(prepare_base(W_b, torch.float64, torch.device("cpu")), W_p, "w", 0,
                     registry.resolve_metrics("all,delta"))
    assert list(row) == [*registry.COLUMNS, NOTE] and row[NOTE] == ""  # every rank full: no note
    missing = [name for name, value in row.items() if value != value]  # NaN: no stage filled it
    assert not missing, missing
