"""`orthoscope --help` starts fast: the CLI module imports neither torch nor pandas (the help
texts, the intervene op list included, come from registries that import without them)."""

import subprocess
import sys

import pytest

CHECK = ("import orthoscope.cli, sys; {extra}"
         "heavy = sorted({{'torch', 'pandas', 'numpy'}} & set(sys.modules)); assert not heavy, heavy")


@pytest.mark.parametrize("extra", ["", "orthoscope.cli._op_help(); orthoscope.cli._op_help('scale'); "])
def test_cli_import_needs_neither_torch_nor_pandas(extra):
    done = subprocess.run([sys.executable, "-c", CHECK.format(extra=extra)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_help_lists_every_op_without_torch():
    code = ("import sys; from typer.testing import CliRunner; from orthoscope.cli import app; "
            "from orthoscope.interventions.registry import OPS; "
            "out = CliRunner().invoke(app, ['intervene', '--help'], env={'COLUMNS': '400'}).output; "
            "missing = [n for n in OPS if n not in out]; assert not missing, missing; "
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_full_collections_wait_for_the_imports_then_resume():
    """The CLI holds full garbage collections while a command imports (tuning.hold_collection), then
    freezes what the imports made and restores the thresholds (settle_collection)."""
    code = ("import gc, sys; from orthoscope import tuning; before = gc.get_threshold(); "
            "tuning.hold_collection(); tuning.hold_collection(); held = gc.get_threshold(); "
            "assert held[:2] == before[:2] and held[2] == tuning.HELD_FULL, held; "
            "gc.collect(1); assert gc.get_threshold() == held; "
            "tuning.settle_collection(); assert gc.get_threshold() == before, gc.get_threshold(); "
            "assert gc.get_freeze_count() > 1000, gc.get_freeze_count(); "
            "tuning.settle_collection(); assert gc.get_threshold() == before")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
