"""Hostile input to intervene, experiment and eval: exit 2, one line naming the option or file, nothing written."""

import shutil

import pytest
import torch
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.lab.shipped import shipped_family

runner = CliRunner()

def named(rows):
    """Parametrize rows with readable ids: the command-line arguments of the case."""
    return [pytest.param(*row, id=" ".join(map(str, row[0])) or "no-args") for row in rows]



def refused(result, *words, out=None):
    """Exit code 2, a single line naming every word, no traceback, nothing at `out` (nor a partial beside it)."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    if out is not None:
        assert not out.exists() and not any(out.parent.glob(f".{out.name}*")), list(out.parent.iterdir())


def intervene(tmp_path, *args):
    family = shipped_family()
    out = tmp_path / "out"
    return runner.invoke(app, ["intervene", str(family["base"]), str(family["instruct"]), "-o", str(out), "-q",
                               "--layers", "0", *args]), out


@pytest.mark.parametrize("args, words", named([
    (["--op", "swap-sigma", "--scale", "inf"], ["--scale 'inf'", "finite positive"]),
    (["--op", "swap-sigma", "--scale", "nan"], ["--scale 'nan'"]),
    (["--op", "swap-sigma", "--scale", "-2"], ["--scale '-2'"]),
    (["--op", "swap-sigma", "--scale", "0"], ["--scale '0'"]),
    (["--op", "swap-sigma", "--scale", "1e-320"], ["--scale '1e-320'", "smallest normal"]),
    (["--op", "swap-sigma", "--scale", "huge"], ["--scale 'huge'", "not a number"]),
    (["--op", "temperature"], ["needs --scale"]),
    (["--op", "interpolate"], ["needs --t"]),
    (["--op", "interpolate", "--t", "nan"], ["--t 'nan'", "[0, 1]"]),
    (["--op", "interpolate", "--t", "inf"], ["--t 'inf'"]),
    (["--op", "interpolate", "--t", "1.5"], ["--t '1.5'", "[0, 1]"]),
    (["--op", "interpolate", "--t", "-0.25"], ["--t '-0.25'"]),
    (["--op", "interpolate", "--t", "half"], ["--t 'half'"]),
    (["--op", "break-left", "--t", "0.5"], ["takes no --t"]),
    (["--op", "noise", "--seed", str(2**64)], ["--seed"]),
    (["--op", "flip-all"], ["unknown op 'flip-all'", "rotate-random"]),
]))
def test_intervene_refuses_bad_op_arguments(tmp_path, args, words):
    result, out = intervene(tmp_path, *args)
    refused(result, *words, out=out)


@pytest.mark.parametrize("op", ["swap-sigma", "temperature"])
def test_intervene_refuses_a_non_finite_result_and_writes_nothing(tmp_path, op):
    result, out = intervene(tmp_path, "--op", op, "--scale", "1e308")
    refused(result, f"op {op} --scale 1e+308", "non-finite", "float32", str(out), out=out)


def test_intervene_refuses_an_output_path_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("keep me")
    result, out = intervene(tmp_path, "--op", "break-left")
    refused(result, "already exists", str(out))
    assert out.read_text() == "keep me"


def test_intervene_refuses_an_output_folder_it_cannot_create(tmp_path):
    (tmp_path / "file").write_text("")
    family = shipped_family()
    out = tmp_path / "file" / "out"
    result = runner.invoke(app, ["intervene", str(family["base"]), str(family["instruct"]), "--op", "break-left",
                                 "-o", str(out), "-q"])
    refused(result, "cannot create the output folder", str(out))


def test_in_memory_patch_refuses_a_non_finite_result_and_leaves_the_model_unchanged():
    from orthoscope.errors import OrthoscopeError
    from orthoscope.evaluation import load_model
    from orthoscope.interventions import make_op, patch_model
    from orthoscope.interventions.run import plan_for

    family = shipped_family()
    model, _ = load_model(family["instruct"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(OrthoscopeError, match="non-finite values in model.layers.0"):
        patch_model(model, plan_for(family["base"], family["instruct"], {0}, {"q", "k"}), make_op("temperature", 1e308))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def experiment(tmp_path, *args, post=None):
    family = shipped_family()
    out = tmp_path / "exp"
    return runner.invoke(app, ["experiment", str(family["base"]), str(post or family["instruct"]), "-o", str(out),
                               "-q", *args]), out


@pytest.mark.parametrize("args, words", named([
    (["--grid", "1,nan"], ["--grid '1,nan'", "'nan'"]),
    (["--grid", "inf"], ["--grid 'inf'"]),
    (["--grid", "-1"], ["--grid '-1'"]),
    (["--grid", ","], ["--grid ','"]),
    (["--limit", "0"], ["--limit 0"]),
    (["--seed", str(2**64)], ["--seed"]),
    (["--task", "gsm9k"], ["unknown task 'gsm9k'"]),
]))
def test_experiment_refuses_bad_options(tmp_path, args, words):
    result, out = experiment(tmp_path, *args)
    refused(result, *words, out=out)


def test_experiment_refuses_an_output_that_is_a_file(tmp_path):
    (tmp_path / "exp").write_text("keep me")
    result, out = experiment(tmp_path, "--limit", "1")
    refused(result, "--output", str(out), "is a file")
    assert out.read_text() == "keep me"


def test_experiment_refuses_lab_facts_on_a_model_outside_the_lab(tmp_path, planted):
    result, out = experiment(tmp_path, "--task", "lab-facts", post=planted[1])
    refused(result, "--task lab-facts", str(planted[1]), "not a lab model", out=out)


@pytest.mark.parametrize("content, words", [
    (b"\x00\x01\x02binary\xff", ["looks binary"]),
    ("caf\u00e9".encode("latin-1"), ["not UTF-8"]),
    (b"  \n", ["is empty"]),
])
def test_experiment_and_eval_refuse_text_that_is_not_text(tmp_path, content, words):
    text = tmp_path / "text.txt"
    text.write_bytes(content)
    result, out = experiment(tmp_path, "--text", str(text))
    refused(result, "--text", str(text), *words, out=out)
    model = str(shipped_family()["base"])
    refused(runner.invoke(app, ["eval", model, "--task", f"ppl:{text}"]), f"ppl:{text}", str(text), *words)


def test_eval_refuses_a_truncated_weights_file(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(shipped_family()["base"], model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20_000])
    refused(runner.invoke(app, ["eval", str(model), "--task", "lab-arith", "--limit", "2"]),
            "cannot load the model", str(model))


def test_eval_refuses_bad_limits_and_lab_facts_outside_the_lab(tmp_path, planted):
    model = str(shipped_family()["base"])
    refused(runner.invoke(app, ["eval", model, "--task", "lab-arith", "--limit", "0"]), "--limit 0")
    refused(runner.invoke(app, ["eval", str(planted[1]), "--task", "lab-facts"]), "--task lab-facts", "not a lab model")
