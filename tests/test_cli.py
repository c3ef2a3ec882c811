"""The CLI as a user runs it: version, compare with --json, summary, demo."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orthoscope import __version__
from orthoscope.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"orthoscope {__version__}"


def test_compare_json_and_summary(planted, tmp_path):
    result = runner.invoke(app, ["compare", str(planted[0]), str(planted[1]), "-o", str(tmp_path / "r"),
                                 "--json", "-q", "--no-report"])  # the report: tests/report, the demo tests
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["per_kind"]["post"]["o"]["a_geo"] > 1.19
    table = runner.invoke(app, ["summary", str(tmp_path / "r")])
    assert table.exit_code == 0
    assert re.search(r"│ o\s+│\s+2 │\s+1\.2000\s", table.output), table.output


def test_summary_prints_the_runs_notes_after_the_verdicts_wrapped_and_dim(planted, tmp_path, monkeypatch):
    """summary.json's notes (compare's, a monitor's) come after the verdicts' tables, each once, in lines of at
    most 80 columns; p_pair's cap notes are made again from the table (a stale stored one is not shown)."""
    folder = tmp_path / "r"
    result = runner.invoke(app, ["compare", str(planted[0]), f"post={planted[1]}", "-o", str(folder), "-q",
                                 "--no-report", "--metrics", "p_pair,sym_frac,a_geo", "--pair-draws", "1024"])
    assert result.exit_code == 0, result.output
    stored = json.loads((folder / "summary.json").read_text())
    cap = next(note for note in stored["notes"] if note.startswith("p_pair capped at 1024 sign draws"))
    at = stored["notes"].index(cap)
    lowered = ("--workers 8 lowered to 2: 2 working sets of 1.4 GiB fit in 3.1 GiB (the memory guard; see "
               "docs/benchmarks.md)")
    stale = "post: p_pair capped at 1024 draws: with 999 changed matrices BH can flag ... only 20 or more at a time"
    kept = [lowered, *stored["notes"], "post: a monitor's note"]
    stored["notes"] = kept[:at + 2] + [stale] + kept[at + 2:]
    (folder / "summary.json").write_text(json.dumps(stored))
    from orthoscope import cli

    monkeypatch.setattr(cli, "out", cli._Console(width=160, force_terminal=True, color_system="standard"))
    shown = runner.invoke(app, ["summary", str(folder)], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = re.sub(r"\x1b\[[0-9;]*m", "", shown.output).splitlines()
    assert all(len(line) <= 80 or len(line.split()) == 1 for line in lines), shown.output  # a long path stays whole
    legend = next(i for i, line in enumerate(lines) if "BH: beyond the pairing null" in line)
    notes = [i for i, line in enumerate(lines) if line.startswith("note: ")]
    assert len(notes) == len(kept) and notes[0] > legend and lines[-2].startswith("more: "), shown.output
    text = " ".join(" ".join(lines[notes[0]:]).split())
    assert text.index(lowered) < text.index(cap) < text.index("post: a monitor's note")
    for note in kept:
        assert text.count(f"note: {note}") == 1, text
    assert "999" not in text  # the 4 matrices of the table: no per-post cap line
    assert "\x1b[2mnote: --workers 8 lowered to 2" in shown.output  # dim


@pytest.fixture(scope="module")
def series_run(planted, tmp_path_factory):
    """A compare of 25 steps (the planted post as step-10 ... step-250, given out of order) and a control."""
    folder = tmp_path_factory.mktemp("series") / "r"
    steps = [f"step-{10 * i}={planted[1]}" for i in (*range(25, 12, -1), *range(1, 13))]
    result = runner.invoke(app, ["compare", str(planted[0]), *steps, f"control={planted[1]}", "-o", str(folder), "-q",
                                 "--no-report", "--kinds", "q,k", "--metrics", "a_geo,p_pair,rel_delta",
                                 "--pair-draws", "1024"])
    assert result.exit_code == 0, result.output
    return folder


def test_summary_of_a_series_is_a_row_per_step_thinned_then_the_last_steps_verdicts(series_run):
    """25 steps: 20 rows, evenly spaced, the first and last kept, each with its step's numbers; a line saying 5
    were left out; then the bottom line of the last step and the control only; every line within 80 columns."""
    shown = runner.invoke(app, ["summary", str(series_run)], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 or len(line.split()) == 1 for line in lines), shown.output
    assert lines[0].startswith("the series: 25 steps")
    rows = [line for line in lines[:lines.index(next(line for line in lines if line.startswith("└")))]
            if line.startswith("│")]
    cells = [[cell.strip() for cell in row.strip("│").split("│")] for row in rows]
    assert [int(c[0]) for c in cells] == [10 * (1 + round(k * 24 / 19)) for k in range(20)]  # 10 ... 250
    verdicts = json.loads((series_run / "summary.json").read_text())["verdicts"]["posts"]
    for c in cells:
        o = verdicts[f"step-{c[0]}"]["overall"]
        lo, hi = o["rotation"]["z_pair_ci"]
        assert c[2:5] == [f"{o['scaling']['a_geo']:.4f}", f"{o['rotation']['z_pair']:.2f} [{lo:.2f}, {hi:.2f}]",
                          f"{o['rotation']['bh_pair']}/{o['rotation']['n_p_pair']}"], c
    assert any(line.startswith("5 of 25 steps left out") for line in lines)
    start = lines.index("Bottom line (the claims of He & Cao, arXiv 2509.17866):")
    heads = [line for line in lines[start + 1:] if line and not line.startswith((" ", "note:", "more:"))]
    assert heads[:2] == ["step-250", "control (the control run)"], heads
    assert sum("medians per kind" in line for line in lines) == 2  # the last step's and the control's tables
    wide = runner.invoke(app, ["summary", str(series_run), "--wide"], env={"COLUMNS": "80"})
    assert wide.exit_code == 0 and "the series:" not in wide.stdout
    assert sum(line.startswith("step-") for line in wide.stdout.splitlines()) >= 25 * 2  # as before: every step


def test_summary_of_a_folder_without_run(tmp_path):
    result = runner.invoke(app, ["summary", str(tmp_path)])
    assert result.exit_code == 2 and "no metrics.parquet in" in result.output


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run without the experiment, as a user sees it at 80 columns: (its folder, the CLI's result)."""
    folder = tmp_path_factory.mktemp("demo") / "demo"
    return folder, runner.invoke(app, ["demo", "-o", str(folder), "--no-experiment"], env={"COLUMNS": "80"})


@pytest.mark.slow
def test_demo_writes_its_run_and_quiet_says_only_where(demo_run):
    folder, result = demo_run
    assert result.exit_code == 0, result.output
    assert (folder / "metrics.parquet").is_file() and (folder / "report.html").is_file()
    assert f"demo written to {folder.resolve()}" in result.output
    again = runner.invoke(app, ["demo", "-o", str(folder), "-q", "--no-experiment"])  # resumes: every matrix reused
    assert again.exit_code == 0, again.output
    assert again.output.strip() == f"demo written to {folder.resolve()}"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line.strip() for line in text.splitlines() if line.startswith("    python3 -m venv .venv")]


def test_readme_opens_with_two_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("orthoscope demo") and commands[1].endswith("-m pytest --slow -n 2 --dist loadfile")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def test_eval_a_shipped_model_on_lab_tasks_and_text(tmp_path):
    from orthoscope.lab.shipped import manifest, shipped_family

    text = tmp_path / "held_out.txt"
    text.write_text("The colour of Zorvin is red.\n12 + 30 = 42.\n")
    instruct = shipped_family()["instruct"]
    result = runner.invoke(app, ["eval", str(instruct), "--task", "lab-facts", "--task", f"ppl:{text}", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["lab-facts"] == manifest()["eval"]["instruct"]["lab-facts"]  # same problems, same greedy answers
    assert 1.0 < scores[f"ppl:{text}"] < 100.0


def test_eval_and_lab_bad_arguments(tmp_path):
    from orthoscope.lab.shipped import shipped_family

    model = str(shipped_family()["base"])
    result = runner.invoke(app, ["eval", model, "--task", "gsm9k"])
    assert result.exit_code == 2 and "unknown task 'gsm9k'" in result.output
    result = runner.invoke(app, ["eval", model, "--task", "ppl:/nonexistent.txt"])
    assert result.exit_code == 2 and "does not exist: /nonexistent.txt" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path), "--task", "lab-arith"])
    assert result.exit_code == 2 and "no config.json in" in result.output
    result = runner.invoke(app, ["lab", "-o", str(tmp_path / "lab"), "--preset", "huge"])
    assert result.exit_code == 2 and "unknown preset 'huge'" in result.output


def test_compare_named_posts_control_and_pairs(planted, tmp_path):
    base, post = planted
    result = runner.invoke(app, ["compare", str(base), f"mine={post}", f"control={post}", "-o", str(tmp_path / "r"),
                                 "--json", "-q", "--no-report", "--kinds", "q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary["posts"]) == ["mine", "control"] and summary["settings"]["control"] == "control"
    [pair] = summary["update_cos"]
    assert (pair["post_a"], pair["post_b"], pair["kind"], pair["n"]) == ("mine", "control", "q", 2)
    assert abs(pair["median"] - 1.0) < 1e-12
    assert "verdicts" in summary and (tmp_path / "r" / "update_cos.parquet").is_file()


def test_demo_ends_with_the_bottom_line_and_the_report(demo_run):
    folder, result = demo_run
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("Bottom line (the claims of He & Cao, arXiv 2509.17866):")
    assert [line for line in lines[start:] if not line.startswith(" ")] == [
        lines[start], "instruct", "cot", "control (the control run)", lines[-1]]
    assert lines[-1] == f"report: {folder / 'report.html'} (figures in {folder / 'figures'})"
    assert any(line.startswith("evaluation") for line in lines[:start])  # the evaluation table comes before
    assert max(map(len, lines[start:-1])) <= 80


def test_demo_evaluation_table_gives_n_and_intervals_like_the_report(demo_run):
    from orthoscope.lab.shipped import shipped_evaluation

    lines = demo_run[1].stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("evaluation"))):]
    instruct = shipped_evaluation()["instruct"]
    row = next(line for line in table if line.startswith("│ instruct"))
    assert f"{instruct['lab-facts']:.4g} [{instruct['lab-facts:lo']:.2f}, {instruct['lab-facts:hi']:.2f}]" in row
    assert f"{instruct['ppl']:.4g}" in row
    assert sum("n = 100" in line for line in table[:6]) == 1  # under the task names, once per header line
    caption = next(i for i, line in enumerate(table) if line.startswith("accuracy [Wilson 95 % interval]"))
    assert table[caption].startswith("accuracy [Wilson 95 % interval]; ppl in blocks of 64 tokens")
    assert max(len(line) for line in table[: caption + 1]) <= 80


def test_compare_of_a_series_prints_a_row_per_step_then_the_last_steps_table_and_bottom_line(micro_lab, tmp_path):
    lab = micro_lab[0] / "a"
    posts = [f"step-2={lab / 'trajectories' / 'cot' / 'step-0002'}", f"step-4={lab / 'cot'}"]
    result = runner.invoke(app, ["compare", str(lab / "base"), *posts, "-o", str(tmp_path / "r"), "--no-report"],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    shown = result.stdout
    assert "the series: 2 steps" in shown and "step-2: medians per kind" not in shown  # its row, no table
    assert shown.index("the series") < shown.index("step-4: medians per kind") < shown.index("Bottom line")
    assert "\nstep-2\n" not in shown and "\nstep-4\n" in shown  # the bottom line is the last step's
    assert max(len(line) for line in shown.splitlines() if str(tmp_path) not in line) <= 80  # a path stays whole
