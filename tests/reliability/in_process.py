"""The CLI run in-process for the hostile-input suites, with a hang turned into a failure."""

from __future__ import annotations

import signal

from typer.testing import CliRunner

from orthoscope.cli import app

runner = CliRunner()


def cli(*args, seconds: int = 120) -> tuple[int, str]:
    """Exit code and output of `orthoscope ARGS` (an alarm after `seconds` fails the test as a hang)."""
    def hung(*_):
        raise TimeoutError(f"orthoscope hung on {list(args)}")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        result = runner.invoke(app, [str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(result.exception, TimeoutError):  # the runner caught the alarm: fail as a hang, not exit 1
        raise result.exception
    return result.exit_code, result.output


def one_line(code: int, output: str, *needles: str) -> str:
    """The one error line of a refused input (exit 2), checked to name every needle."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, output)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
