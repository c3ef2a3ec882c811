"""`orthoscope compare` (not quiet) ends with the verdict sentences."""

from typer.testing import CliRunner

from orthoscope.cli import app


def test_compare_prints_the_verdicts(planted, tmp_path):
    result = CliRunner().invoke(app, ["compare", str(planted[0]), str(planted[1]), "-o", str(tmp_path / "r"),
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("post: 14 matrices, 14 changed, 0 at the noise floor")
    assert lines.index("verdicts:") < start
    assert lines[start + 1].startswith("  Scaling: near-uniform (median a_geo 1.06")
    assert lines[start + 2].startswith("  Rotations: ")
