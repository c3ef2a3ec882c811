"""The `orthoscope` command, a thin layer over the packages.

Commands: compare, summary, report, metrics, demo, intervene, experiment, lab, eval,
cache ls / cache clear. Each builds its options and calls one package; nothing here
computes.

Exit codes: 0 success, 2 bad input (one line, no traceback), 1 a bug, 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from orthoscope._version import __version__
from orthoscope.errors import OrthoscopeError, os_fault, printable
from orthoscope.metrics.levels import MONITOR_PAIR_DRAWS, PAIR_DRAWS, PAIR_MAX_DRAWS
from orthoscope.metrics.registry import summary_columns
from orthoscope.tuning import ENV as TUNE_ENV
from orthoscope.tuning import freeze_for_exit, importing, tune_process

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="What did post-training do to a language model's weights?")


class _Console(Console):
    """A console that never reads markup or emoji codes in what it prints, and shows control
    characters as escapes: names from checkpoints and paths reach the terminal as they are written."""

    def __init__(self, **kwargs):
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs):
        return super().render_str(printable(text), **kwargs)


err = _Console(stderr=True, soft_wrap=True)
out = _Console() if sys.stdout.isatty() else _Console(width=160)

INTERRUPTED = "interrupted; rerun the same command to resume"
SUMMARY_COLUMNS = summary_columns()
PAIR_DRAWS_HELP = (f"The most sign draws p_pair takes per matrix ({PAIR_DRAWS} to {PAIR_MAX_DRAWS}; default: as "
                   f"many as its 10 % error needs). A cap N makes p_pair >= 1/(N+1): the monitor uses "
                   f"{MONITOR_PAIR_DRAWS}.")


def user_errors(command: Callable) -> Callable:
    """Turn OrthoscopeError into one red line on stderr and exit code 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OrthoscopeError as error:
            _error_line(str(error))
            raise typer.Exit(2) from None
        except (OSError, RuntimeError) as error:  # a full disk, a read-only folder, a name too long, a link loop
            line = os_fault(error)
            if line is None:
                raise
            _error_line(line)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print(INTERRUPTED, highlight=False)
            raise typer.Exit(130) from None
    return wrapper


def _error_line(message: str) -> None:
    """`error: <message>` on stderr as one line (control characters and newlines shown as escapes)."""
    err.print(Text.assemble(("error:", "bold red"), " ", printable(message.replace("\n", " "))))


def _version(value: bool) -> None:
    if value:
        print(f"orthoscope {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Analyse base/post checkpoint pairs: singular-value scaling, rotation consistency, controls."""
    if os.environ.get(TUNE_ENV) != "0":  # a command's process is ours: opt in (ORTHOSCOPE_TUNE=0 opts out)
        tune_process()


@app.command()
@user_errors
def compare(
    base: str = typer.Argument(..., help="Base checkpoint: local folder or hub id."),
    posts: list[str] = typer.Argument(..., help="One or more post-trained checkpoints; NAME=PATH names one."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (created; reruns resume)."),
    layers: str | None = typer.Option(None, help="Layers to analyse, e.g. 0-3,10."),
    kinds: str | None = typer.Option(None, help="Kinds to analyse, e.g. q,k,o."),
    include_embeddings: bool = typer.Option(False, "--include-embeddings", help="Also analyse embed and lm_head."),
    metrics: str = typer.Option("all", help="all, sign-free (one SVD per matrix: scaling, asym, sym_frac; "
                                "intruders from the post's Gram) or metric names, e.g. a_geo,sym_frac."),
    precision: str = typer.Option("auto", help="SVD precision: auto, f32 or f64."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    revision: str | None = typer.Option(None, help="Hub revision of the base."),
    seed: int = typer.Option(0, help="Seed of the Gaussian null (0 to 2**32-1)."),
    pair_draws: int | None = typer.Option(None, "--pair-draws", help=PAIR_DRAWS_HELP),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse base SVDs from the disk cache."),
    cache_dir: Path | None = typer.Option(None, help="Cache folder (default $ORTHOSCOPE_CACHE_DIR or "
                                             "~/.cache/orthoscope/svd)."),
    cache_limit_gib: float | None = typer.Option(None, "--cache-limit", help="Cache size limit in GiB (default "
                                                    "$ORTHOSCOPE_CACHE_LIMIT or 20)."),
    executor: str = typer.Option("local", help="local, or ray: one task per matrix on a Ray cluster."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start a local one)."),
    workers: int | None = typer.Option(None, help="Matrices at once. local: threads of this process, one "
                                       "torch thread each (default: torch's thread count on a CPU); the table "
                                       "is that of one matrix at a time on one thread (--workers 1 on several "
                                       "threads rounds float32 differently, ~1e-6 relative); ray: CPUs of the "
                                       "local cluster (default: all)."),
    control: str | None = typer.Option(None, help="The control post (default: a post named control)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Clear OUTPUT if it holds a run of other inputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or notes."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json to stdout."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip report.html and figures/."),
) -> None:
    """Compare BASE with each POST, matrix by matrix; write OUTPUT/metrics.parquet, summary.json, report.html."""
    with importing():  # no garbage collection over torch's, pandas' and scipy's objects (orthoscope.tuning)
        from orthoscope.pipeline import CompareOptions, make_executor
        from orthoscope.pipeline import compare as run_compare

    options = _options(CompareOptions, locals(), executor=make_executor(executor, address=address, workers=workers))
    with _progress(quiet) as advance:
        result = run_compare(base, [_named_post(p) for p in posts], output, options, progress=advance)
    _report(result, quiet, as_json)
    verdicts, series = result.summary["verdicts"], False
    if not quiet and not as_json:  # a checkpoint series: its row per step, then its last step's table
        verdicts, series = _series_head(verdicts)
        _print_compact(verdicts)
    path = None if no_report else _write_report(output, quiet=True)
    if not quiet and not as_json:
        _print_bottom_line(verdicts, notes=not series)  # a series printed the verdicts' notes above its rows
        _print_report_path(path, output)


def _named_post(text: str):
    """`name=path` names a post when `name` is a plain name and the whole text is not an existing path."""
    import re

    name, sep, spec = text.partition("=")
    if not sep or not spec or Path(text).expanduser().exists():
        return text
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        return name, spec
    if Path(spec).expanduser().exists():  # meant as NAME=PATH: say what a name may be, not "path does not exist"
        raise OrthoscopeError(f"post name {name!r} in {text!r}: a NAME=PATH name is letters, digits, '.', '_' "
                              "and '-', starting with a letter or digit")
    return text


def _write_report(folder: Path, quiet: bool) -> Path:
    from orthoscope.report import write_report

    path = write_report(folder)
    if not quiet:
        _print_report_path(path, folder)
    return path


def _print_report_path(path: Path | None, folder: Path) -> None:
    if path is None:
        out.print(f"no report (--no-report): `orthoscope report {folder}` writes it", markup=False, highlight=False,
                  soft_wrap=True)
    else:
        out.print(f"report: {path} (figures in {path.parent / 'figures'})", markup=False, highlight=False,
                  soft_wrap=True)


@app.command()
@user_errors
def report(run: Path = typer.Argument(..., help="A run folder written by compare.")) -> None:
    """Write RUN/report.html (self-contained) and RUN/figures/*.png from a compare run."""
    _write_report(run, False)


def _options(kind: type, given: dict, **overrides):
    """An options object from a command's parameters named as its fields (`given`: the command's locals).

    tests/test_cli_options.py checks that every field of each command's options has its flag, with the
    field's default, and that every other parameter is declared as the command's own.
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(kind) if f.init}
    return kind(**{**{name: value for name, value in given.items() if name in names}, **overrides})


class _progress:
    """A rich progress bar over matrices with ETA (nothing when quiet)."""

    BAR = 16
    """Width of the bar; the name gets what the counts, times and bar leave of the line (at most 48)."""

    def __init__(self, quiet: bool):
        self.bar = None if quiet else Progress(
            TextColumn("{task.description}", markup=False), BarColumn(bar_width=self.BAR), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False)
        self.task = None
        self.name_width = 48

    def __enter__(self):
        return None if self.bar is None else self.advance

    def advance(self, done: int, total: int, name: str) -> None:
        if self.task is None:  # started by the first result: an early error stays one line
            self.bar.start()
            self.task = self.bar.add_task("matrices", total=None)
            counts = 2 * len(str(total)) + 1  # "21/21"; then elapsed, "eta", remaining and the spaces between
            self.name_width = max(8, min(48, _width() - self.BAR - counts - len(" 0:00:00 eta 0:00:00") - 3))
        name, width = printable(name), self.name_width
        name = name if len(name) <= width else "…" + name[1 - width :]  # the end of a name tells matrices apart
        self.bar.update(self.task, completed=done, total=total, description=f"{name:>{width}}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.stop()


def _report(result, quiet: bool, as_json: bool) -> None:
    """Compare's notes, skips and where the table went (stderr, unless `quiet`); summary.json with `as_json`."""
    if not quiet:
        for note in result.summary["notes"]:
            err.print(Text.assemble(("note:", "yellow"), " ", printable(note)))
        for skip in result.skipped:
            err.print(Text.assemble(("skipped", "yellow"), " ", printable(f"{skip['post']} {skip['name']}: "
                                                                         f"{skip['reason']}")))
        err.print(f"{len(result.table)} rows in {result.summary['seconds']:.1f}s -> {result.out}/metrics.parquet",
                  highlight=False)
        if result.summary.get("cache"):
            stats = result.summary["cache"]
            err.print(f"base-SVD cache: {stats['hits']} hits, {stats['misses']} misses "
                      f"({result.summary['settings']['cache']})", highlight=False)
    if as_json:
        print(json.dumps(result.summary, indent=2))


@app.command()
@user_errors
def summary(
    run: Path = typer.Argument(..., help="A run folder written by compare."),
    wide: bool = typer.Option(False, "--wide", help="Also every summary metric's medians per kind (split into "
                              "tables that fit the terminal) and every verdict sentence."),
    columns: str | None = typer.Option(None, "--columns", help="Metric columns for a table of medians per "
                                          "kind, e.g. incons,rot (`orthoscope metrics` lists them)."),
) -> None:
    """The bottom line (the paper's claims per post), a compact table per post, the run's notes; --wide for the rest.

    A series (posts with steps: a monitor's run, a checkpoint series) opens with one row per step instead,
    and the bottom line and tables are its last step's (and those of any post outside the series)."""
    from orthoscope.pipeline.runfolder import RunFolder
    from orthoscope.pipeline.summary import run_notes
    from orthoscope.verdicts.terminal import note_lines

    folder = RunFolder(run)
    table, stored = folder.read_run()  # any older folder read as the current schema, verdicts included
    chosen = _summary_columns(columns, table)
    verdicts, series = (stored["verdicts"], False) if wide else _series_head(stored["verdicts"])
    if series:
        table = table[table["post"].isin(list(verdicts["posts"]))]
    _print_bottom_line(verdicts, notes=not series)
    _print_compact(verdicts)
    if chosen or wide:
        _print_tables(table, chosen or [c for c in SUMMARY_COLUMNS if c in table])
    if wide:
        _print_verdicts(verdicts)
    for line in note_lines([printable(note) for note in run_notes(stored, table)], _width()):  # compare's notes
        out.print(line, style="dim", soft_wrap=True, markup=False, highlight=False)
    if not wide:
        more = f"--wide (every column and sentence), --columns NAME,...; the report: {printable(str(run))}/report.html"
        for line in note_lines([more], _width(), lead="more: "):
            out.print(line, soft_wrap=True, markup=False, highlight=False)


def _summary_columns(columns: str | None, table: pd.DataFrame) -> list[str]:
    """--columns as a list of the table's metric columns; an unknown name is one line and exit 2."""
    if columns is None:
        return []
    from orthoscope.metrics.registry import COLUMNS

    names = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in names if c not in COLUMNS or c not in table]
    if unknown or not names:
        known = ", ".join(c for c in COLUMNS if c in table)
        raise OrthoscopeError(f"--columns {','.join(unknown) or repr(columns)}: not a metric column of this run "
                              f"(it has {known})")
    return names


def _print_bottom_line(verdicts: dict, notes: bool = True) -> None:
    """The paper's claims per post: holds / does not hold / can't tell, with their numbers (after the
    verdicts' notes unless `notes` is False)."""
    from orthoscope.verdicts.bottom import bottom_line_text

    if notes:
        _print_verdict_notes(verdicts)
    for line in bottom_line_text(verdicts, _width()):
        out.print(line, soft_wrap=True, markup=False, highlight=False)


def _width() -> int:
    """The terminal's width ($COLUMNS first: output piped to a file or a pager keeps the user's width)."""
    import os

    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else out.width


def _print_verdict_notes(verdicts: dict) -> None:
    from orthoscope.verdicts.terminal import note_lines

    for line in note_lines([printable(note) for note in verdicts.get("notes", [])], _width()):
        out.print(line, soft_wrap=True, markup=False, highlight=False)


def _print_series(verdicts: dict) -> bool:
    """A series' verdicts' notes and its table, a row per step (thinned), and what it left out; False when the
    run is no series (nothing printed)."""
    from orthoscope.verdicts.terminal import note_lines, series_table

    view, left_out = series_table(verdicts)
    if view is None:
        return False
    _print_verdict_notes(verdicts)
    out.print(view, width=_width())
    for line in note_lines([left_out] if left_out else [], _width(), lead=""):
        out.print(line, soft_wrap=True, markup=False, highlight=False)
    out.print()
    return True


def _series_head(verdicts: dict) -> tuple[dict, bool]:
    """A series' rows (`_print_series`), then the verdicts cut to its last step (and any post outside it), and
    True; the verdicts as they are and False when the run is no series."""
    from orthoscope.verdicts.terminal import last_step

    return (last_step(verdicts), True) if _print_series(verdicts) else (verdicts, False)


def _print_compact(verdicts: dict) -> None:
    from orthoscope.verdicts.terminal import compact_tables

    for view in compact_tables(verdicts, _width()):
        out.print(view, width=_width())


def _print_tables(table: pd.DataFrame, columns: list[str]) -> None:
    from orthoscope.verdicts.terminal import metric_tables

    for view in metric_tables(table, columns, _width()):
        out.print(view, width=_width())


def _print_verdicts(verdicts: dict) -> None:
    """Every verdict sentence: per post and claim, then one line per kind (a long series: posts only)."""
    import textwrap

    from orthoscope.verdicts import verdict_lines

    out.print("verdicts:", highlight=False)
    for line in verdict_lines(verdicts, per_kind=len(verdicts.get("posts", {})) <= 4):
        indent = " " * (len(line) - len(line.lstrip()))
        for part in textwrap.wrap(line.strip(), _width(), initial_indent=indent, subsequent_indent=indent + "    ",
                                  break_on_hyphens=False):
            out.print(part, soft_wrap=True, markup=False, highlight=False)


@app.command("metrics")
@user_errors
def metrics_command(as_json: bool = typer.Option(False, "--json", help="Print the registry as a JSON list.")) -> None:
    """List every metric column: family, what it needs (route), float32-safe, type, formula."""
    from orthoscope.metrics.registry import records

    rows = records()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    view = Table(title="metric columns (orthoscope compare --metrics NAME,... or all, sign-free, delta)",
                 title_justify="left")
    for column in ("name", "family", "route", "f32", "type", "formula"):
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(row["name"], row["family"], row["route"], "yes" if row["f32_safe"] else "no", row["dtype"],
                     row["formula"])
    out.print(view)


DEMO_EXPERIMENT_TIME = "a few seconds of CPU: docs/benchmarks.md, demo"
"""What the demo's intervention experiment costs, in words (the measured figure is in docs/benchmarks.md)."""


@app.command()
@user_errors
def demo(
    output: Path = typer.Option(Path("orthoscope-demo"), "-o", "--output", help="Where to write the run."),
    experiment: bool = typer.Option(True, help=f"Also run the intervention experiment on base/instruct "
                                    f"({DEMO_EXPERIMENT_TIME})."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Analyse the shipped lab family (base vs instruct, cot, control) into ./orthoscope-demo/."""
    from orthoscope.kernels.threads import small_model_threads

    with small_model_threads():  # a 96-wide model: one thread for torch and BLAS (a second one only waits)
        _demo(output, experiment, quiet)


def _demo(output: Path, experiment: bool, quiet: bool) -> None:
    import textwrap

    from orthoscope.lab.shipped import shipped_evaluation, shipped_family
    from orthoscope.pipeline import compare as run_compare
    from orthoscope.pipeline.runfolder import RunFolder

    family = shipped_family()
    with _progress(quiet) as advance:
        result = run_compare(family["base"], [family[v] for v in ("instruct", "cot", "control")], output,
                             progress=advance)
    evaluation = shipped_evaluation()  # with n, intervals, ppl block
    with RunFolder(output).adding() as folder:
        folder.write_evaluation(evaluation)
    _report(result, quiet, False)
    if experiment:
        from orthoscope.experiment import run_experiment

        if not quiet:
            err.print("\n".join(textwrap.wrap(f"intervention experiment on base/instruct (lab-facts and lab-arith, "
                                               f"20 problems each; {DEMO_EXPERIMENT_TIME}):", _width())))
        with _conditions_status(quiet) as log:
            conditions = run_experiment(family["base"], family["instruct"], output / "experiment",
                                        tasks=["lab-facts", "lab-arith"], limit=20, log=log)
        if not quiet:
            _print_conditions(conditions)
    path = _write_report(output, quiet=True)
    err.print(f"demo written to {output.resolve()}", highlight=False, markup=False)
    if not quiet:
        _print_eval(evaluation)
        out.print(f"per kind: `orthoscope summary {output}`", markup=False, highlight=False, soft_wrap=True)
        _print_bottom_line(result.summary["verdicts"])
        _print_report_path(path, output)


class _conditions_status:
    """One status line that counts the experiment's conditions as they finish (nothing when quiet)."""

    def __init__(self, quiet: bool):
        self.status = None if quiet else err.status("experiment: starting", spinner="line")
        self.done = 0

    def __enter__(self):
        if self.status is None:
            return lambda message: None
        self.status.start()
        return self.log

    def log(self, message: str) -> None:
        self.done += 1
        label = message.split()[0] if message.split() else ""
        self.status.update(f"experiment: {self.done} conditions done (last: {label})")

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.stop()


def _print_conditions(table: pd.DataFrame) -> None:
    """The experiment in one compact table: each condition's scores (intervals in the report and claims.csv)."""
    from orthoscope.experiment.columns import score_columns

    scores = [s for s in score_columns(table) if s not in ("attn_entropy", "cka_vs_post")]
    view = Table(title="intervention experiment (scores; intervals in the report)", title_justify="left")
    for column in ("condition", "vs control", *scores):
        view.add_column(column, justify="left" if column in ("condition", "vs control") else "right", no_wrap=True)
    for _, row in table.iterrows():
        view.add_row(row["condition"], row.get("control") or "", *(f"{row[s]:.3g}" for s in scores))
    out.print(view, width=_width())


def _op_help(option: str = "op") -> str:
    """Help texts built from the op registry: the ops and their formulas, or the ops taking an option."""
    from orthoscope.interventions.registry import op_help, ops_taking

    if option == "op":
        return "One of: " + "; ".join(op_help().splitlines()) + "."
    return ", ".join(ops_taking(option))


@app.command()
@user_errors
def intervene(
    base: str = typer.Argument(..., help="Base checkpoint."),
    post: str = typer.Argument(..., help="Post-trained checkpoint the op is applied to."),
    op: str = typer.Option(..., "--op", help=_op_help()),
    output: Path = typer.Option(..., "-o", "--output", help="New checkpoint folder (must not exist)."),
    scale: str | None = typer.Option(None, help=f"The factor c or a of {_op_help('scale')}; auto = a_geo per "
                                        "matrix."),
    t: str | None = typer.Option(None, help=f"Position for {_op_help('t')}, in [0, 1] (0 = base, 1 = post)."),
    seed: int = typer.Option(0, help=f"Seed of the random ops ({_op_help('seed')})."),
    layers: str | None = typer.Option(None, help="Layers to change, e.g. 0-3,10."),
    kinds: str | None = typer.Option(None, help="Kinds to change, e.g. q,k."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Write POST with an intervention applied to its matrices, as a loadable checkpoint."""
    from orthoscope.interventions import InterveneOptions
    from orthoscope.interventions import intervene as run_intervene

    options = _options(InterveneOptions, locals())
    with _progress(quiet) as advance:
        path = run_intervene(base, post, options, output, progress=advance)
    if not quiet:
        err.print(f"{options.op.label()} written to {path}", highlight=False)


@app.command()
@user_errors
def experiment(
    base: str = typer.Argument(..., help="Base checkpoint."),
    post: str = typer.Argument(..., help="Post-trained checkpoint."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (reruns with the same options resume)."),
    grid: str = typer.Option("0.5,0.75,0.9,1.0,1.1,1.25,1.5", help="swap-sigma scales c to try."),
    tasks: list[str] | None = typer.Option(None, "--task", "-t", help="Lab tasks (default: all, for lab "
                                           "models)."),
    limit: int = typer.Option(100, help="Problems per task."),
    text: Path | None = typer.Option(None, help="Text file for perplexity (default: lab held-out text)."),
    seed: int = typer.Option(0, help=f"Seed of the random ops ({_op_help('seed')})."),
    layers: str | None = typer.Option(None, help="Layers to intervene on."),
    kinds: str | None = typer.Option(None, help="Kinds to intervene on."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """The paper's causal table: every registered op on POST next to its size-matched controls, each evaluated."""
    from orthoscope.experiment import ExperimentOptions, claims_table, run_experiment

    options = _options(ExperimentOptions, locals(), tasks=tasks or None)  # no --task: the suite's defaults
    log = (lambda message: None) if quiet else (lambda message: err.print(message, highlight=False))
    table = run_experiment(base, post, output, options, log=log)
    if not quiet:
        _print_experiment(table, claims_table(table))
        err.print(f"written to {output}/experiment.parquet, claims.csv and experiment.png", highlight=False)


def _print_experiment(table: pd.DataFrame, claims: pd.DataFrame) -> None:
    """Two tables: every condition's scores, then each claim's condition against its controls."""
    from orthoscope.experiment.columns import score_columns

    scores = score_columns(table)
    headers = {s: _score_header(table, s) for s in scores}
    view = Table(title="conditions (accuracy [Wilson 95 %])", title_justify="left")
    for column in ("condition", "control", *headers.values()):
        view.add_column(column, justify="left" if column in ("condition", "control") else "right")
    for _, row in table.iterrows():
        view.add_row(row["condition"], row.get("control") or "", *(_score_cell(row, s) for s in scores))
    out.print(view)
    pairs = Table(title="each claim's condition vs its size-matched control (intervals above and in claims.csv)",
                  title_justify="left")
    for column in ("condition", "control", *headers.values()):
        pairs.add_column(column, justify="left" if column in ("condition", "control") else "right")
    for (condition, control), frame in claims.groupby(["condition", "control"], sort=False):
        by = frame.set_index("score")
        pairs.add_row(condition, control, *(f"{by.loc[s, 'value']:.4g} vs {by.loc[s, 'control_value']:.4g}"
                                            for s in scores))
    out.print(pairs)


def _score_header(table: pd.DataFrame, score: str) -> str:
    if f"{score}:n" not in table:
        return score
    counts = sorted({int(n) for n in table[f"{score}:n"].dropna()})
    return f"{score} (n={','.join(map(str, counts))})"


def _score_cell(row, score: str) -> str:
    if f"{score}:n" in row:
        return _cell(row[score], row[f"{score}:lo"], row[f"{score}:hi"])
    return _cell(row[score], None, None)


def _cell(value, lo, hi) -> str:
    import pandas as pd

    if lo is None or pd.isna(lo):
        return f"{value:.4g}"
    return f"{value:.2f} [{lo:.2f}, {hi:.2f}]"


@app.command()
@user_errors
def lab(
    output: Path = typer.Option(..., "-o", "--output", help="Lab folder (reruns finish what is missing)."),
    preset: str = typer.Option("tiny", help="tiny (< 3 min, < 1M params) or small (2-4M params)."),
    seed: int = typer.Option(0, help="Seed of the world, the initialisation and the data order."),
    threads: int | None = typer.Option(None, help="Torch threads (default: the preset's; 1 on a busy machine)."),
    base: str | None = typer.Option(None, "--base", help="Post-train this pretrained base (folder, weights "
                                       "file, GGUF file or hub id) instead of pretraining a preset."),
    recipes: list[str] | None = typer.Option(None, "--recipe", help="With --base: instruct, cot, control "
                                                "(repeatable; default all three)."),
    steps: int = typer.Option(200, help="With --base: optimizer steps per recipe."),
    save_every: int | None = typer.Option(None, "--save-every", help="With --base: trajectory checkpoint "
                                             "every N steps (default steps/10)."),
    lr: float = typer.Option(1e-4, "--lr", help="With --base: peak learning rate (warmup, cosine decay)."),
    batch: int = typer.Option(4, help="With --base: sequences per step."),
    block: int = typer.Option(64, help="With --base: tokens per sequence."),
    freeze_embeddings: bool = typer.Option(False, "--freeze-embeddings", help="With --base: do not train the "
                                           "token embeddings (nor a tied output head)."),
    lora: int | None = typer.Option(None, "--lora", help="With --base: train a PEFT LoRA adapter of this rank "
                                       "on the attention and MLP projections instead of all weights."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Pretrain a small base and post-train instruct, cot and control from it, or post-train a real --base."""
    from orthoscope.lab.options import LabOptions, run_lab

    options = _options(LabOptions, locals(), recipes=recipes or None)
    log = (lambda message: None) if quiet else (lambda message: err.print(message, highlight=False))
    _print_eval(run_lab(output, options, log=log, show_progress=not quiet))


@app.command("eval")
@user_errors
def evaluate(
    model: str = typer.Argument(..., help="A model: folder (config, safetensors, tokenizer), weights or GGUF "
                                "file, or hub id."),
    tasks: list[str] | None = typer.Option(None, "--task", "-t", help="lab-arith, lab-cot, lab-facts, or "
                                           "ppl:FILE."),
    lm_eval: str | None = typer.Option(None, "--lm-eval", help="lm-evaluation-harness tasks, e.g. gsm8k,mmlu."),
    include_path: Path | None = typer.Option(None, help="Folder of custom lm-eval task YAMLs."),
    limit: int = typer.Option(200, help="Problems per task."),
    batch_size: int = typer.Option(8, help="lm-eval batch size."),
    seed: int = typer.Option(0, help="Seed of the lab world, when the model does not record it."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (task, task:n, task:lo, task:hi)."),
) -> None:
    """Evaluate a model on lab tasks (exact match, with n and a Wilson 95 % interval), text files (perplexity)
    or lm-eval tasks."""
    from orthoscope.evaluation import EvalOptions, evaluate_model
    from orthoscope.lab.tasks import LAB_SUITE

    results = evaluate_model(model, _options(EvalOptions, locals(), suite=LAB_SUITE))
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        _print_scores(model, results)


def _print_scores(model: str, results: dict) -> None:
    """One row per score: value, and n with the Wilson 95 % interval for accuracies."""
    view = Table(title=f"evaluation of {model}", title_justify="left")
    for column in ("score", "value", "n", "95 % interval"):
        view.add_column(column, justify="left" if column == "score" else "right")
    for name, value in results.items():
        if name.endswith((":n", ":lo", ":hi")) and name.rsplit(":", 1)[0] in results:
            continue
        n, lo, hi = (results.get(f"{name}:{k}") for k in ("n", "lo", "hi"))
        view.add_row(name, f"{value:.4g}", "" if n is None else str(int(n)),
                     "" if lo is None else f"[{lo:.3f}, {hi:.3f}]")
    out.print(view)


def _print_eval(results: dict) -> None:
    """The report's evaluation table: each accuracy with its Wilson 95 % interval and n, ppl with its block."""
    tasks = sorted({t for row in results.values() for t in row if ":" not in t})
    blocks = sorted({int(row["ppl:block"]) for row in results.values() if row.get("ppl:block")})
    caption = "accuracy [Wilson 95 % interval]" + (f"; ppl in blocks of {'/'.join(map(str, blocks))} tokens"
                                                   if blocks else "")
    view = Table(title="evaluation", title_justify="left", caption=caption, caption_justify="left")
    view.add_column("model")
    for t in tasks:
        sizes = sorted({int(row[f"{t}:n"]) for row in results.values() if row.get(f"{t}:n") is not None})
        view.add_column(t + (f"\nn = {'/'.join(map(str, sizes))}" if sizes else ""), justify="right")
    for name, row in results.items():
        view.add_row(name, *(_with_interval(row, t) for t in tasks))
    out.print(view, width=_width())


def _with_interval(row: dict, task: str) -> str:
    """'0.4 [0.31, 0.50]': a score with its interval when the row has one ('' when it has no such score)."""
    if task not in row:
        return ""
    text = f"{row[task]:.4g}"
    return text + (f" [{row[f'{task}:lo']:.2f}, {row[f'{task}:hi']:.2f}]" if row.get(f"{task}:lo") is not None else "")


cache_app = typer.Typer(no_args_is_help=True, help="The base-SVD cache: list or clear it.")
app.add_typer(cache_app, name="cache")
CACHE_DIR_OPTION = typer.Option(None, "--cache-dir", help="Cache folder (default $ORTHOSCOPE_CACHE_DIR or "
                                "~/.cache/orthoscope/svd).")


@cache_app.command("ls")
@user_errors
def cache_ls(cache_dir: Path | None = CACHE_DIR_OPTION) -> None:
    """List cached base SVDs: size, last use, and the total against the limit."""
    import datetime

    from orthoscope.pipeline.cache import SVDCache

    store = SVDCache(cache_dir)
    entries = store.entries()
    table = Table("entry", "MiB", "last used", title=f"{store.folder}")
    for entry in reversed(entries):
        used = datetime.datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d %H:%M")
        table.add_row(entry.path.stem[:24] + "...", f"{entry.size / 2**20:.1f}", used)
    out.print(table)
    total = sum(e.size for e in entries)
    out.print(f"{len(entries)} entries, {total / 2**30:.3f} GiB of {store.limit / 2**30:.1f} GiB", highlight=False)
    partials = store.partials()
    if partials:
        out.print(f"{len(partials)} unfinished writes ({sum(p.size for p in partials) / 2**30:.3f} GiB; "
                  "those of killed runs are removed by `orthoscope cache clear` or when room is needed)")


@cache_app.command("clear")
@user_errors
def cache_clear(cache_dir: Path | None = CACHE_DIR_OPTION) -> None:
    """Delete every cached base SVD."""
    from orthoscope.pipeline.cache import SVDCache

    store = SVDCache(cache_dir)
    count, size = store.clear()
    out.print(f"removed {count} entries ({size / 2**30:.3f} GiB) from {store.folder}", highlight=False)


def main() -> None:
    try:
        app(prog_name="orthoscope")
    except KeyboardInterrupt:  # outside a command (while importing, parsing)
        err.print(INTERRUPTED, highlight=False)
        sys.exit(130)
    finally:
        freeze_for_exit()  # the interpreter's shutdown need not traverse every module's objects


if __name__ == "__main__":
    sys.exit(main())
