"""`orthoscope --help` starts fast: the CLI module imports neither torch nor pandas (the help
texts, the intervene op list included, come from registries that import without them)."""

import subprocess
import sys

import pytest

CHECK = ("import orthoscope.cli, sys; {extra}"
         "heavy = sorted({{'torch', 'pandas', 'numpy'}} & set(sys.modules)); assert not heavy, heavy")


def python_passes(code: str) -> None:
    """Run `code` in a fresh interpreter (imports counted from nothing); its assertions must hold."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("extra", ["", "orthoscope.cli._op_help(); orthoscope.cli._op_help('scale'); "])
def test_cli_import_needs_neither_torch_nor_pandas(extra):
    python_passes(CHECK.format(extra=extra))


def test_help_lists_every_op_without_torch():
    code = ("import sys; from typer.testing import CliRunner; from orthoscope.cli import app; "
            "from orthoscope.interventions.registry import OPS; "
            "out = CliRunner().invoke(app, ['intervene', '--help'], env={'COLUMNS': '400'}).output; "
            "missing = [n for n in OPS if n not in out]; assert not missing, missing; "
            "assert 'torch' not in sys.modules")
    python_passes(code)


def test_no_collection_while_a_command_imports_then_its_objects_are_frozen():
    """tuning.importing (the CLI's compare): the collector is off inside the block; after it, what exists is
    frozen and collection is back on. An untuned process, or one that loaded torch already, is left as it was."""
    code = ("import gc; from orthoscope import tuning; tuning.tune_process(False)\n"
            "with tuning.importing(): assert gc.isenabled()\n"
            "assert gc.get_freeze_count() == 0; tuning.freeze_for_exit(); assert gc.get_freeze_count() == 0\n"
            "tuning.tune_process()\n"
            "with tuning.importing(): assert not gc.isenabled(); import email.parser\n"
            "assert gc.isenabled() and gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
            "gc.disable()\n"
            "with tuning.importing(): pass\n"
            "assert not gc.isenabled()  # a collector the caller turned off stays off\n"
            "gc.enable(); gc.unfreeze(); import sys, types; sys.modules['torch'] = types.ModuleType('torch')\n"
            "with tuning.importing(): assert gc.isenabled()  # torch loaded already: nothing changes\n"
            "assert gc.get_freeze_count() == 0\n")
    python_passes(code)
