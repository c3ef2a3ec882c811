"""What the report page says and draws, read back from report.html; damaged run folders."""

import base64
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.pipeline.runfolder import ExperimentFolder
from orthoscope.report import write_report

runner = CliRunner()


def figures(folder) -> dict[str, dict]:
    """The page's figures as plotly JSON (what report.html embeds, typed arrays decoded), by div id."""
    from orthoscope.report.build import figures_of
    from orthoscope.report.data import load_run

    return {div: decode(json.loads(fig.to_json())) for div, fig in figures_of(load_run(folder)).items()}


def figure_data(figs: dict[str, dict], div_id: str) -> list[dict]:
    """The traces plotly draws in the div `div_id`."""
    return figs[div_id]["data"]


def figure_layout(figs: dict[str, dict], div_id: str) -> dict:
    return figs[div_id]["layout"]


def test_every_figure_is_drawn_once_in_its_div(page, figs):
    assert len(figs) >= 6
    for div_id in figs:
        assert page.count(f'<div id="{div_id}" class="plotly-graph-div"') == 1, div_id
    assert page.count('class="plotly-graph-div"') == len(figs)


def decode(value):
    if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")]) if shape is not None else array
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@pytest.fixture(scope="module")
def page(planted_run):
    write_report(planted_run)
    return (planted_run / "report.html").read_text()


@pytest.fixture(scope="module")
def figs(planted_run, page):
    return figures(planted_run)


def test_first_screen_is_the_bottom_line_then_figures_verdicts_settings(page, planted_run):
    bottom, verdicts = page.index("<h2 id='bottom-line'>Bottom line</h2>"), page.index("<h2>Verdicts</h2>")
    assert bottom < page.index('class="plotly-graph-div"') < verdicts < page.index("<h2>Inputs and settings</h2>")
    assert "Rotations: consistent: " in page  # the planted z_pair ~ 6
    assert "<span class='status holds'>holds</span>" in page[bottom:verdicts]
    assert '{"precision"' not in page and "<td class=t>precision</td>" in page
    for name in ("metrics.csv", "metrics.parquet", "summary.json"):
        assert f"<a href='{name}'>" in page and (planted_run / name).is_file()


def test_most_changed_matrices_are_the_largest_rel_delta(page, planted_run):
    table = pd.read_parquet(planted_run / "metrics.parquet")
    section = page[page.index("<h2>Most changed matrices</h2>"):]
    first_row = re.search(r"<table class='changed'><tr>.*?</tr><tr>(.*?)</tr>", section).group(1)
    assert table.loc[table.rel_delta.idxmax(), "name"] in first_row
    assert "The 15 of 14 rows" not in section and f"of {len(table)} rows" in section


def test_svsm_values_read_back_from_the_page_equal_the_table(figs, planted_run):
    table = pd.read_parquet(planted_run / "metrics.parquet")
    (heatmap,) = figure_data(figs, "fig-singular-value-scaling")
    expected = table.pivot_table(index="layer", columns="kind", values="a_geo")[heatmap["x"]]
    assert list(heatmap["y"]) == list(expected.index)
    np.testing.assert_allclose(np.asarray(heatmap["customdata"], dtype=float), expected.values, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(heatmap["z"], dtype=float), np.log(expected.values), rtol=1e-12)


def test_ratio_axis_holds_the_bands_and_intruders_say_a_sentence(page, figs, planted_run):
    layout = figure_layout(figs, "fig-ratio-curves")
    lo, hi = layout["yaxis"]["range"]
    curves = [np.asarray(t["y"], dtype=float) for t in figure_data(figs, "fig-ratio-curves") if "y" in t]
    values = np.concatenate(curves)
    values = values[np.isfinite(values)]
    assert lo <= min(np.quantile(values, 0.02), 1.0) and hi >= max(np.quantile(values, 0.98), 1.0)
    assert hi - lo < 1.3 * (max(values.max(), 1) - min(values.min(), 1)) + 1e-9
    table = pd.read_parquet(planted_run / "metrics.parquet")
    if table.intruders.sum() == 0:
        assert f"No intruder dimensions: in all {len(table)} matrices" in page
        assert 'id="fig-intruder-dimensions"' not in page


def test_series_is_drawn_against_step_with_the_null_band(series_run):
    write_report(series_run)
    page = (series_run / "report.html").read_text()
    assert "Checkpoint series" in page and "Singular-value scaling" not in page  # no panel per checkpoint
    assert (series_run / "figures" / "trajectory.png").stat().st_size > 10_000
    table = pd.read_parquet(series_run / "metrics.parquet")
    figs = figures(series_run)
    traces = figure_data(figs, "fig-checkpoint-series")
    lines = [t for t in traces if t.get("mode") == "lines+markers" and t.get("yaxis", "y") == "y2"]
    metric = "a_geo"  # second panel (rel_delta is first)
    for trace in lines:
        expected = table[table.kind == trace["name"]].groupby("step")[metric].median()
        assert list(np.asarray(trace["x"], dtype=float)) == list(expected.index.astype(float))
        np.testing.assert_allclose(np.asarray(trace["y"], dtype=float), expected.values, rtol=1e-12)
    assert len(lines) == table.kind.nunique()
    z_panel = [t for t in traces if t.get("mode") == "lines+markers" and t.get("yaxis") == "y5"]
    medians = table.groupby("step").z_pair.median()
    assert max(np.max(np.asarray(t["y"], dtype=float)) for t in z_panel) > medians.iloc[0]
    # update_cos: post x post heatmap per kind, the median over matrices
    cos = pd.read_parquet(series_run / "update_cos.parquet")
    heatmaps = figure_data(figs, "fig-post-against-post")
    q = heatmaps[[i for i, k in enumerate(["q", "k", "v", "o", "gate", "up", "down"]) if k in set(cos.kind)][0]]
    posts = list(q["x"])
    z = np.asarray(q["z"], dtype=float)
    expected = cos[(cos.kind == "q") & (cos.post_a == "step-100") & (cos.post_b == "step-400")].update_cos.median()
    assert z[posts.index("step-100"), posts.index("step-400")] == pytest.approx(expected)
    assert "n=" in json.dumps(q["text"])
    # the verdicts name the step
    assert "step-400 (step 400)" in page


def test_summary_prints_verdicts_computed_from_an_older_run(planted_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(planted_run, folder)
    result = runner.invoke(app, ["summary", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Bottom line" in result.output and "Consistent rotations: HOLDS" in result.output
    summary = json.loads((folder / "summary.json").read_text())
    summary["verdicts"] = {"posts": {}, "notes": ["verdicts taken from summary.json"]}
    (folder / "summary.json").write_text(json.dumps(summary))
    result = runner.invoke(app, ["summary", str(folder)])
    assert "note: verdicts taken from summary.json" in result.output


def test_experiment_perplexity_on_a_log_axis(planted_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(planted_run, folder)
    pd.DataFrame({"condition": ["post", "swap-sigma", "break-left"], "op": ["post", "swap-sigma", "break-left"],
                  "scale": [np.nan, 1.0, np.nan], "t": np.nan, "lab-facts": [0.9, 0.85, 0.05],
                  "lab-facts:n": [20, 20, 20], "lab-facts:lo": [0.70, 0.64, 0.01],
                  "lab-facts:hi": [0.97, 0.95, 0.24], "ppl": [8.06, 8.3, 3604.0],
                  "dropped_share": [np.nan, np.nan, np.nan]}).to_parquet(folder / "experiment.parquet")
    write_report(folder)
    page = (folder / "report.html").read_text()
    figs = figures(folder)
    layout = figure_layout(figs, "fig-interventions")
    # a column per score; the interval ends, n and diagnostics are not scores of their own
    assert [layout.get(k, {}).get("type") for k in ("xaxis", "xaxis2")] == [None, "log"]  # conditions' values
    assert [layout.get(k, {}).get("type") for k in ("yaxis3", "yaxis4")] == [None, "log"]  # the c grid
    assert "lab-facts (n = 20)" in page
    bars = [trace for trace in figure_data(figs, "fig-interventions") if trace.get("error_x")]
    minus = np.concatenate([decode(t["error_x"]["arrayminus"]) for t in bars])
    assert sorted(minus) == pytest.approx(sorted([0.2, 0.21, 0.04]))
    # a minimal table (no claim, control or op columns) has no claim to conclude on
    assert "Described" not in page and "As the post" not in page


def damage(folder, name, how):
    path = folder / name
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_text("{not json")


def says_damaged(result, path: str) -> None:
    """Exit 2, and the output is one line.

    The line reads `error: <path> is damaged (<Type>: <reason>); rerun the command that wrote it`.

    `path` is a regular expression (errors are printed unwrapped, so the line is whole).
    """
    assert result.exit_code == 2, result.output
    line = rf"error: {path} is damaged \(\w+: [^\n]+\); rerun the command that wrote it"
    assert re.fullmatch(line, result.output.strip()), result.output


@pytest.mark.parametrize("name, how", [("metrics.parquet", "truncate"), ("summary.json", "corrupt")])
@pytest.mark.parametrize("command", ["report", "summary"])
def test_damaged_run_folder_gives_one_line_and_exit_2(planted_run, tmp_path, name, how, command):
    folder = tmp_path / "run"
    shutil.copytree(planted_run, folder)
    damage(folder, name, how)
    says_damaged(runner.invoke(app, [command, str(folder)]), re.escape(str(folder / name)))


def test_truncated_spectra_file_is_named(planted_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(planted_run, folder)
    spectra = sorted((folder / "spectra" / "post").glob("*.npz"))
    for path in spectra:
        path.write_bytes(path.read_bytes()[:100])
    spectra = re.escape(str(folder / "spectra" / "post")) + r"/\S+\.npz"
    says_damaged(runner.invoke(app, ["report", str(folder)]), spectra)


def test_truncated_experiment_table_is_named(planted_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(planted_run, folder)
    experiment = ExperimentFolder(folder / "experiment")
    table = pd.DataFrame({"condition": ["post", "noise"], "ppl": [5.0, 9.0]})
    with experiment.open():
        experiment.write_tables(table, table.head(0))
    damage(folder, "experiment/experiment.parquet", "truncate")
    says_damaged(runner.invoke(app, ["report", str(folder)]), re.escape(str(experiment.table_parquet)))


def test_a_post_identical_to_its_base_reads_as_such(planted_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(planted_run, folder)
    table = pd.read_parquet(folder / "metrics.parquet")
    table["changed"], table["rel_delta"] = False, 0.0
    for column in ("incons", "sym_frac", "sym_frac_pair_null", "z_pair", "p_pair", "p_gauss", "z_gauss", "z_pair_top"):
        table[column] = np.nan
    table.to_parquet(folder / "metrics.parquet", index=False)
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("verdicts")  # made by compare from the planted table: the report recomputes them
    (folder / "summary.json").write_text(json.dumps(summary))
    shutil.rmtree(folder / "spectra")
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert "Post identical to base: no matrix changed (n = 14)." in page
    assert "can&#x27;t tell</span>the post is identical to the base" in page
    assert "No singular values were stored for these matrices" in page
    body = page[page.index("<body>"):]  # plotly.js itself says "fromScaling:"
    assert "Scaling:" not in body and "Rotations:" not in body


def test_update_cos_from_summary_when_the_parquet_is_absent(planted_run):
    from orthoscope.report.data import load_run
    from orthoscope.report.series import update_cos_grid, update_cos_heatmap

    run = load_run(planted_run)
    run.summary = {**run.summary, "update_cos": [
        {"post_a": "instruct", "post_b": "cot", "kind": "q", "median": 0.4, "n": 24},
        {"post_a": "instruct", "post_b": "control", "kind": "q", "median": 0.05, "n": 24},
        {"post_a": "cot", "post_b": "control", "kind": "q", "median": None, "n": 0}]}
    posts, value, count = update_cos_grid(run)["q"]
    assert posts == ["instruct", "cot", "control"]
    assert value[0, 1] == value[1, 0] == 0.4 and np.isnan(value[1, 2]) and count[0, 2] == 24
    assert np.all(np.diag(value) == 1)
    assert update_cos_heatmap(run) is not None
    run.summary = {k: v for k, v in run.summary.items() if k != "update_cos"}
    assert update_cos_heatmap(run) is None


def test_a_run_where_every_matrix_was_skipped_still_reports(tmp_path):
    from orthoscope.pipeline.summary import empty_table

    empty_table().to_parquet(tmp_path / "metrics.parquet", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({"skipped": [{"post": "p", "name": "w", "reason": "NaN"}]}))
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert "No verdicts: empty table: nothing to judge." in page and "<li>p w: NaN</li>" in page
    result = runner.invoke(app, ["summary", str(tmp_path)])
    assert result.exit_code == 0 and "note: empty table: nothing to judge" in result.output
