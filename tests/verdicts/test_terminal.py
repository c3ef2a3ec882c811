"""The terminal: `compare` ends with the bottom line and the report's path; `summary` starts with the
bottom line and fits 80 columns with no number cut."""

import json
import re

import pytest
from typer.testing import CliRunner

from orthoscope.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run(planted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("terminal") / "r"
    result = runner.invoke(app, ["compare", str(planted[0]), str(planted[1]), "-o", str(folder)],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return folder, result


def test_compare_ends_with_the_bottom_line_and_the_report(run):
    folder, result = run
    lines = result.stdout.splitlines()
    start = lines.index("Bottom line (the claims of He & Cao, arXiv 2509.17866):")
    assert lines[start + 1] == "post"
    assert lines[start + 2].startswith("  Near-uniform scaling: ")
    assert any(line.startswith("  Consistent rotations: ") for line in lines[start:])
    assert lines[-1] == f"report: {folder / 'report.html'} (figures in {folder / 'figures'})"
    assert "medians per kind" in "\n".join(lines[:start])  # the compact table comes before


@pytest.mark.parametrize("width", [80, 120])
def test_summary_fits_the_width_with_every_number_whole(run, width):
    folder, _ = run
    result = runner.invoke(app, ["summary", str(folder)], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Bottom line") and "He & Cao" in lines[0]
    assert max(map(len, lines[:-1])) <= width  # the last line is the hint with the report's path
    assert "…" not in result.stdout
    verdicts = json.loads((folder / "summary.json").read_text())["verdicts"]
    overall = verdicts["posts"]["post"]["overall"]
    all_row = next(line for line in lines if line.startswith("│ all"))
    assert f"{overall['scaling']['a_geo']:.4f}" in all_row
    assert f"{overall['rotation']['bh_pair']}/{overall['rotation']['n_p_pair']}" in all_row


def test_summary_wide_and_columns_split_tables_instead_of_cutting_numbers(run):
    folder, _ = run
    result = runner.invoke(app, ["summary", str(folder), "--wide"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout and "verdicts:" in result.stdout
    assert re.search(r"post: medians per kind \(2/\d\)", result.stdout)
    table_lines = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert max(map(len, table_lines)) <= 80
    chosen = runner.invoke(app, ["summary", str(folder), "--columns", "incons,rot"])
    assert chosen.exit_code == 0 and re.search(r"┃ kind ┃\s+n ┃\s+incons ┃\s+rot ┃", chosen.stdout)
    bad = runner.invoke(app, ["summary", str(folder), "--columns", "incons,bogus"])
    assert bad.exit_code == 2 and "--columns bogus: not a metric column of this run" in bad.output
