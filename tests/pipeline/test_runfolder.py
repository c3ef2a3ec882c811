"""The run folder owns its layout: run.json's schema version, the one upgrade of an older folder, and the
report and the demo's evaluation written through it under the run's lock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import orthoscope
from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.options import metrics_label
from orthoscope.pipeline.runfolder import RunFolder
from orthoscope.pipeline.schema import NO_CHANGED, SCHEMA
from tests.reliability.in_process import cli, one_line


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    return shutil.copytree(finished_run, tmp_path / "r")


def edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


def test_run_json_records_the_schema_and_a_newer_folder_is_refused(run, planted):
    folder = RunFolder(run)
    assert json.loads((run / "run.json").read_text())["schema"] == SCHEMA == folder.schema()
    assert "schema" not in folder.identity() and set(folder.identity()) >= {"base", "posts", "settings"}
    edit_json(run / "run.json", lambda manifest: manifest.update(schema=SCHEMA + 1))
    for command in ("summary", "report"):
        one_line(*cli(command, run), str(run), f"newer orthoscope (run folder schema {SCHEMA + 1}")
    with pytest.raises(OrthoscopeError, match="newer orthoscope"):
        orthoscope.compare(planted[0], {"post": planted[1]}, run, kinds="q,k")
    assert not (run / "report.html").exists()


def test_a_folder_of_schema_0_is_read_as_the_current_one(run):
    folder = RunFolder(run)
    table, summary = folder.read_run()
    assert table["changed"].all() and not table["at_noise_floor"].any()  # so the upgrade's defaults are exact
    # what an orthoscope before the schema number wrote: no `changed` columns, no metrics_option, no verdicts
    edit_json(run / "run.json", lambda manifest: manifest.pop("schema"))
    table.drop(columns=["changed", "at_noise_floor"]).to_parquet(run / "metrics.parquet", index=False)
    edit_json(run / "summary.json", lambda s: (s.pop("verdicts"), s["settings"].pop("metrics_option")))
    assert folder.schema() == 0
    old_table, old_summary = folder.read_run()
    assert old_table["changed"].all() and not old_table["at_noise_floor"].any()
    assert old_summary["settings"]["metrics_option"] == metrics_label(summary["settings"]["metrics"]) == "all"
    verdicts = old_summary["verdicts"]
    assert verdicts["notes"][0] == NO_CHANGED and verdicts["metrics"] == "all"
    assert verdicts["posts"] == summary["verdicts"]["posts"]  # the same verdicts as the run wrote
    code, output = cli("summary", run)
    assert code == 0 and f"note: {NO_CHANGED}" in " ".join(output.split()), output


def test_a_summary_without_verdicts_gets_them_in_any_schema(run):
    _, summary = RunFolder(run).read_run()
    edit_json(run / "summary.json", lambda s: s.pop("verdicts"))
    _, edited = RunFolder(run).read_run()
    assert edited["verdicts"]["posts"] == summary["verdicts"]["posts"] and NO_CHANGED not in edited["verdicts"]["notes"]


def test_the_report_is_written_through_the_folder_under_its_lock(run):
    with RunFolder(run).locked():
        one_line(*cli("report", run), str(run), "in use by another orthoscope process")
    assert not (run / "report.html").exists() and not (run / "figures").exists()
    code, output = cli("report", run)
    assert code == 0, output
    written = sorted(p.name for p in (run / "figures").iterdir())
    assert written == ["consistency.png", "ratio_curves.png", "svsm.png", "sym_frac.png", "where_moved.png",
                       "z_pair.png"]  # no temporary file left beside them
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_an_evaluation_is_added_under_the_lock_and_read_back(run):
    folder = RunFolder(run)
    with folder.locked(), pytest.raises(OrthoscopeError, match="in use by another orthoscope process"):
        with RunFolder(run).adding():
            pass
    with folder.adding():
        folder.write_evaluation({"instruct": {"ppl": 6.5, "lab-facts": 0.4, "lab-facts:n": 20}})
    assert folder.read_evaluation() == {"instruct": {"ppl": 6.5, "lab-facts": 0.4, "lab-facts:n": 20}}
    with pytest.raises(OrthoscopeError, match="no metrics.parquet in"):
        with RunFolder(run / "elsewhere").adding():
            pass
    assert not (run / "elsewhere").exists()


def test_the_table_keeps_its_rows_through_the_upgrade(run):
    table, _ = RunFolder(run).read_run()
    stored = pd.read_parquet(run / "metrics.parquet")
    pd.testing.assert_frame_equal(table, stored)  # a current folder is read as written
