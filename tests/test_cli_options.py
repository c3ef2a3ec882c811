"""Every command's flags are its options object's fields: same names, same defaults, nothing left out.

A field without a flag, a flag that is neither a field nor one the command declares as
its own, or a default that differs between `orthoscope CMD` and the Python API fails here.
"""

import dataclasses

import click
import pytest
import typer

from orthoscope.cli import app
from orthoscope.evaluation import EvalOptions
from orthoscope.experiment import ExperimentOptions
from orthoscope.interventions import InterveneOptions
from orthoscope.lab.options import LabOptions
from orthoscope.pipeline import CompareOptions

# command -> (options class, the command's own parameters (no field), fields the API alone sets, required fields)
COMMANDS = {
    "compare": (CompareOptions, {"base", "posts", "output", "address", "workers", "quiet", "as_json", "no_report"},
                set(), {}),
    "intervene": (InterveneOptions, {"base", "post", "output", "quiet"}, set(), {"op": "swap-sigma"}),
    "experiment": (ExperimentOptions, {"base", "post", "output", "quiet"}, {"suite"}, {}),
    "eval": (EvalOptions, {"model", "as_json"}, {"suite"}, {"lm_eval": "arc_easy"}),
    "lab": (LabOptions, {"output", "quiet"}, set(), {}),
}


def parameters(command: str) -> dict[str, click.Parameter]:
    group = typer.main.get_command(app)
    return {param.name: param for param in group.commands[command].params}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_field_has_a_flag_and_every_flag_a_field(command):
    kind, own, api_only, _ = COMMANDS[command]
    fields = {f.name for f in dataclasses.fields(kind) if f.init}
    flags = set(parameters(command)) - {"help"}
    assert fields - api_only == flags - own, (sorted(fields - api_only - flags), sorted(flags - own - fields))
    assert not own & fields and api_only <= fields


@pytest.mark.parametrize("command", list(COMMANDS))
def test_flag_defaults_are_the_field_defaults(command):
    kind, own, api_only, required = COMMANDS[command]
    params = parameters(command)
    shared = [f for f in dataclasses.fields(kind) if f.init and f.name in params]
    for field in shared:
        if field.name in required:
            continue
        default = params[field.name].default
        default = None if default in ((), []) else default  # typer's empty repeatable option
        # normalised by the object: "0.5,0.75" and (0.5, 0.75), None and (), are the same setting
        assert kind(**required, **{field.name: default}) == kind(**required), (command, field.name, default)
    assert len(shared) >= 5


@pytest.mark.parametrize("command, flags, kind, settings", [
    ("intervene", ["--op", "noise", "--seed", "-1"], InterveneOptions, {"op": "noise", "seed": -1}),
    ("intervene", ["--op", "swap-sigma", "--t", "0.5"], InterveneOptions, {"op": "swap-sigma", "t": "0.5"}),
    ("experiment", ["--grid", "1,nan"], ExperimentOptions, {"grid": "1,nan"}),
    ("experiment", ["--layers", "0-999999"], ExperimentOptions, {"layers": "0-999999"}),
    ("experiment", ["--kinds", "qq"], ExperimentOptions, {"kinds": "qq"}),
    ("experiment", ["--task", "gsm9k"], ExperimentOptions, {"tasks": ["gsm9k"]}),
    ("eval", ["--task", "lab-arith", "--limit", "0"], EvalOptions, {"tasks": ["lab-arith"], "limit": 0}),
    ("eval", [], EvalOptions, {}),
    ("lab", ["--threads", "0"], LabOptions, {"threads": 0}),
    ("lab", ["--seed", str(2**40)], LabOptions, {"seed": 2**40}),
    ("lab", ["--base", "/nowhere", "--recipe", "sft"], LabOptions, {"base": "/nowhere", "recipes": ["sft"]}),
])
def test_the_cli_and_the_api_refuse_with_the_same_line(tmp_path, command, flags, kind, settings):
    from typer.testing import CliRunner

    from orthoscope.errors import OrthoscopeError
    from orthoscope.lab.tasks import LAB_SUITE

    with pytest.raises(OrthoscopeError) as caught:
        kind(**settings, **({"suite": LAB_SUITE} if kind is EvalOptions else {}))
    models = {"intervene": ["b", "p"], "experiment": ["b", "p"], "eval": ["m"], "lab": []}[command]
    output = [] if command == "eval" else ["-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [command, *models, *output, *flags])
    assert result.exit_code == 2 and result.output.strip() == f"error: {caught.value}"


def test_a_changed_default_is_caught():
    """The check above can fail: a flag default other than the field's builds another object."""
    assert LabOptions(steps=100) != LabOptions()
    assert ExperimentOptions(grid="0.9") != ExperimentOptions()


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's options-object example, run as written on the shipped lab family."""
    import re
    from pathlib import Path

    import threadpoolctl

    from orthoscope.kernels.threads import torch_threads
    from orthoscope.lab.shipped import shipped_family

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Interventions and the paper's experiments", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"every command has one options object.*?\n\n((?:    .*\n)+)", section, re.S).group(1)
    family = shipped_family()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "held_out.txt").write_text("The colour of Zorvin is red.\n12 + 30 = 42.\n")
    scope = {"BASE": family["base"], "POST": family["instruct"]}
    with torch_threads(1), threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # a 96-wide model
        exec("\n".join(line[4:] for line in block.splitlines()), scope)
    assert (tmp_path / "models" / "half" / "config.json").is_file()
    by = scope["table"].set_index("condition")
    assert by.loc["post", "lab-facts:n"] == 4 and by.loc["interpolate@1", "cka_vs_post"] == pytest.approx(1.0)
    assert 1.0 < scope["scores"]["ppl:held_out.txt"] < 100.0
