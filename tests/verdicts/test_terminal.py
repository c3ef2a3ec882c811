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


def _group(verdict: str, z: float = 0.5, kind_n: int = 14) -> dict:
    return {"n": kind_n, "n_changed": kind_n, "n_noise_floor": 0, "n_used": kind_n,
            "scaling": {"a_geo": 1.0123, "disp": 0.0456, "rel_delta": 0.0789},
            "rotation": {"verdict": verdict, "sym_frac": 0.61, "z_pair": z, "z_pair_ci": [z - 0.5, z + 0.25],
                         "bh_pair": 3, "n_p_pair": kind_n}}


def test_a_short_series_shows_every_step_in_order_and_no_left_out_line():
    from orthoscope.verdicts.terminal import last_step, series_table

    posts = {"step-30": {"step": 30, "overall": _group("weak", 2.0)},
             "step-10": {"step": 10, "overall": _group("unchanged")},
             "control": {"step": None, "overall": _group("none")},
             "step-20": {"step": 20, "overall": _group("partial", -1.234)}}
    verdicts = {"posts": posts}
    view, left_out = series_table(verdicts)
    assert left_out is None and view.row_count == 3
    columns = {c.header: list(c.cells) for c in view.columns}
    assert columns["step"] == ["10", "20", "30"]
    assert columns["rotations"] == ["unchanged", "minority", "weak"]
    assert columns["z_pair [95 %]"] == ["", "-1.23 [-1.73, -0.98]", "2.00 [1.50, 2.25]"]
    assert columns["rel_delta"][1:] == ["7.9 %", "7.9 %"] and columns["BH"][1:] == ["3/14", "3/14"]
    assert list(last_step(verdicts)["posts"]) == ["step-30", "control"]
    assert series_table({"posts": {"a": {"step": 5, "overall": _group("none")}}}) == (None, None)  # one step


@pytest.mark.parametrize("n", [2, 19, 20, 21, 40, 60, 1001])
def test_thinning_keeps_at_most_20_evenly_with_the_first_and_last(n):
    from orthoscope.verdicts.terminal import thinned

    kept = thinned(n)
    assert kept[0] == 0 and kept[-1] == n - 1 and len(kept) == min(n, 20) and kept == sorted(set(kept))
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    assert max(gaps) - min(gaps) <= 1  # evenly: the gaps differ by one step at most


def test_compact_table_with_long_kind_names_fits_80_columns_with_every_number_whole():
    """Module-name kinds (an unknown architecture) made the table 81 wide: rich cut the BH count to `0/…`."""
    from rich.console import Console

    from orthoscope.verdicts.terminal import compact_tables

    kinds = {name: _group("none", 0.08, 2) for name in ("self_attn.k_proj", "mlp.down_proj")}
    whole = {**_group("none", 0.08), "scaling": {"a_geo": 1.2277, "disp": 0.0918, "rel_delta": 0.76}}
    console = Console(width=80, record=True)
    for view in compact_tables({"posts": {"step-2": {"overall": whole, "kinds": kinds}}}, 80):
        console.print(view)
    text = console.export_text()
    assert "…" not in text and "3/14" in text and max(map(len, text.splitlines())) <= 80
