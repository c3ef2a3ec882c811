"""The experiment's folder is owned by pipeline.runfolder: keyed resume, the lock, damage-checked reading."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.errors import OrthoscopeError
from orthoscope.lab.shipped import shipped_family
from orthoscope.pipeline.runfolder import ExperimentFolder, RunFolder


def test_a_condition_made_with_other_settings_is_not_reused(tmp_path):
    folder = ExperimentFolder(tmp_path / "exp")
    with folder.open():
        folder.save_condition("swap-sigma@1", {"limit": 5}, {"condition": "swap-sigma@1", "ppl": 4.2})
    assert folder.load_condition("swap-sigma@1", {"limit": 5}) == {"condition": "swap-sigma@1", "ppl": 4.2}
    assert folder.load_condition("swap-sigma@1", {"limit": 6}) is None
    assert folder.load_condition("noise", {"limit": 5}) is None
    folder.condition_path("swap-sigma@1").write_text('{"condition": "swap-sigma@1", "ppl"')  # torn record
    assert folder.load_condition("swap-sigma@1", {"limit": 5}) is None


def test_a_second_experiment_into_the_same_folder_is_refused(tmp_path):
    first, second = ExperimentFolder(tmp_path / "exp"), ExperimentFolder(tmp_path / "exp")
    with first.open():
        with pytest.raises(OrthoscopeError, match="in use by another orthoscope process"):
            with second.open():
                pass
    with second.open():  # released: the next run may write
        pass


def test_the_experiment_command_into_a_held_folder_is_one_line_and_writes_nothing(tmp_path):
    family, holder = shipped_family(), ExperimentFolder(tmp_path / "exp")
    with holder.open():
        result = CliRunner().invoke(app, ["experiment", str(family["base"]), str(family["instruct"]),
                                          "-o", str(holder.path), "--grid", "1", "--limit", "1", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error: experiment folder {holder.path} is in use by another orthoscope "
                                     f"process; wait for it to finish or choose another --output")
    assert sorted(p.name for p in holder.path.iterdir()) == [".orthoscope.lock"]


def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "exp").write_text("not a folder")
    with pytest.raises(OrthoscopeError, match=r"output .* is a file, not a folder: choose another --output"):
        ExperimentFolder(tmp_path / "exp").check()


def test_tables_are_written_and_a_damaged_one_is_named(tmp_path):
    folder = ExperimentFolder(tmp_path / "run" / "experiment")
    table = pd.DataFrame({"condition": ["post", "noise"], "ppl": [5.0, 9.0]})
    with folder.open():
        folder.write_tables(table, table.head(0))
    assert {p.name for p in folder.path.iterdir()} >= {"experiment.parquet", "experiment.csv", "claims.csv"}
    pd.testing.assert_frame_equal(RunFolder(tmp_path / "run").read_experiment(), table)
    folder.table_parquet.write_bytes(folder.table_parquet.read_bytes()[:40])
    with pytest.raises(OrthoscopeError, match=r"experiment\.parquet is damaged \(.*\); rerun the command"):
        RunFolder(tmp_path / "run").read_experiment()
