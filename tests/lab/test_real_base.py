"""`orthoscope lab --base`: post-training a pretrained base (here the shipped tiny one) into recipes."""

import json
import statistics

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from orthoscope.cli import app
from orthoscope.evaluation import load_model
from orthoscope.lab.corpus import direct_example, make_world
from orthoscope.lab.real import PROJECTIONS
from orthoscope.lab.recipes import IGNORE, chat_pair, pack
from orthoscope.lab.shipped import shipped_family
from orthoscope.lab.tokenizer import char_tokenizer

runner = CliRunner()


def lab(*args):
    return runner.invoke(app, ["lab", "--threads", "1", "-q", *map(str, args)])


@pytest.fixture(scope="session")
def base():
    return shipped_family()["base"]


@pytest.fixture(scope="session")
def made(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "lab"
    result = lab("--base", base, "--recipe", "instruct", "--recipe", "control", "--steps", 4, "--save-every", 2,
                 "-o", out)
    assert result.exit_code == 0, result.output
    return out


def relative_change(base_file, post_file):
    b, p = load_file(base_file), load_file(post_file)
    names = [n for n in b if n.split(".")[-2] in PROJECTIONS]
    assert len(names) == 3 * 7
    return statistics.median(float((p[n] - b[n]).norm() / b[n].norm()) for n in names)


def test_writes_loadable_recipes_and_trajectories(made, base):
    for folder in ("instruct", "control", "trajectories/instruct/step-2", "trajectories/instruct/step-4",
                   "trajectories/control/step-2"):
        model, tokenizer = load_model(made / folder)
        assert tokenizer.decode(tokenizer("12 + 35")["input_ids"]) == "12 + 35"
    final = load_file(made / "instruct" / "model.safetensors")
    last = load_file(made / "trajectories/instruct/step-4/model.safetensors")
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert not torch.equal(final["model.layers.0.self_attn.q_proj.weight"],
                           load_file(made / "trajectories/instruct/step-2/model.safetensors")[
                               "model.layers.0.self_attn.q_proj.weight"])


def test_recipes_are_size_matched_and_rel_delta_is_recorded(made, base):
    record = json.loads((made / "lab.json").read_text())
    instruct, control = record["recipes"]["instruct"], record["recipes"]["control"]
    assert record["settings"]["steps"] == 4 and record["settings"]["world"] == {"seed": 0, "max_operand": 49}
    assert instruct["steps"] == control["steps"] == 4 and len(instruct["loss"]) == len(control["loss"]) == 4
    assert instruct["tokens"] == control["tokens"] == 4 * 4 * 64
    assert instruct["supervised_tokens"] == control["supervised_tokens"] > 0
    assert instruct["final_loss"] < instruct["first_loss"]
    for name in ("instruct", "control"):
        expected = relative_change(base / "model.safetensors", made / name / "model.safetensors")
        assert record["recipes"][name]["rel_delta"] == pytest.approx(expected, rel=1e-4)
        assert set(record["recipes"][name]["rel_delta_by_step"]) == {"2", "4"}


def test_rerun_skips_finished_recipes(made):
    stamp = (made / "instruct" / "model.safetensors").stat().st_mtime_ns
    before = (made / "lab.json").read_text()
    result = runner.invoke(app, ["lab", "--base", str(shipped_family()["base"]), "--recipe", "instruct",
                                 "--recipe", "control", "--steps", "4", "--save-every", "2", "-o", str(made)])
    assert result.exit_code == 0 and "all recipes already in" in result.output
    assert (made / "instruct" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (made / "lab.json").read_text() == before


def test_interrupted_recipe_resumes_from_its_last_step_to_the_same_weights(made, base, tmp_path, monkeypatch):
    from orthoscope.lab.recipes import Packed

    original_batch = Packed.batch

    def interrupted(self, step, batch):
        if step == 3:
            raise KeyboardInterrupt
        return original_batch(self, step, batch)

    out = tmp_path / "lab"
    args = ("--base", base, "--recipe", "control", "--steps", 4, "--save-every", 2, "-o", out)
    monkeypatch.setattr(Packed, "batch", interrupted)
    assert lab(*args).exit_code != 0
    assert (out / "trajectories/control/step-2/optimizer.pt").is_file() and not (out / "control").exists()
    monkeypatch.setattr(Packed, "batch", original_batch)
    result = lab(*args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "lab.json").read_text())["recipes"]["control"]
    original = json.loads((made / "lab.json").read_text())["recipes"]["control"]
    assert record["resumed_from"] == 2 and original["resumed_from"] is None
    assert record["loss"] == original["loss"]
    assert record["rel_delta_by_step"].keys() == original["rel_delta_by_step"].keys() == {"2", "4"}
    assert record["rel_delta_by_step"]["2"] == pytest.approx(original["rel_delta_by_step"]["2"], rel=1e-6)
    assert not (out / "trajectories/control/step-2/optimizer.pt").exists()  # only the latest step keeps it
    resumed, uninterrupted = load_file(out / "control/model.safetensors"), load_file(made / "control/model.safetensors")
    assert all(torch.allclose(resumed[k], uninterrupted[k], atol=1e-7, rtol=0) for k in uninterrupted)


def test_lora_writes_a_peft_adapter_and_compare_reads_the_result(made, base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    result = lab("--base", base, "--recipe", "instruct", "--steps", 2, "--lora", 4, "--lr", "1e-2", "-o", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "instruct" / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == set(PROJECTIONS)
    assert config["base_model_name_or_path"] == str(base.resolve())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out / "instruct")
    merged = model.merge_and_unload().state_dict()
    original = load_file(base / "model.safetensors")
    rel = statistics.median(float((merged[n] - original[n]).norm() / original[n].norm())
                            for n in original if n.split(".")[-2] in PROJECTIONS)
    record = json.loads((out / "lab.json").read_text())["recipes"]["instruct"]
    assert rel > 0 and record["rel_delta"] == pytest.approx(rel, rel=1e-3)
    assert record["trained_parameters"] < 340_128 / 2

    run = runner.invoke(app, ["compare", str(base), str(made / "instruct"), str(made / "control"),
                              "-o", str(tmp_path / "run"), "--json", "-q", "--no-report"])
    assert run.exit_code == 0, run.output
    assert {"instruct", "control"} <= set(json.loads(run.stdout)["per_kind"])


@pytest.mark.parametrize("option, value", [("--threads", "0"), ("--threads", "-2"), ("--steps", "0"),
                                           ("--lr", "nan"), ("--lr", "inf"), ("--lora", "0"),
                                           ("--save-every", "0"), ("--recipe", "dpo")])
def test_bad_options_give_one_line_and_exit_2(base, tmp_path, option, value):
    result = runner.invoke(app, ["lab", "--base", str(base), option, value, "-o", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert option in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_base_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["lab", "--base", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no such file or folder" in result.output


def test_chat_template_formats_prompts_and_masks_them():
    tokenizer = char_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'][0] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}a:{% endif %}")
    prompt, completion = chat_pair(tokenizer, direct_example(2, 3))
    assert (prompt, completion) == ("u: What is 2 + 3?\na:", " 5\n")
    packed = pack(make_world(0), "instruct", tokenizer, steps=2, batch=2, block=32, seed=0)
    text = tokenizer.decode(packed.inputs[0])
    assert text.startswith("u: ") and "Q:" not in text
    supervised = tokenizer.decode(packed.targets[0][packed.targets[0] != IGNORE])
    assert "u:" not in supervised
