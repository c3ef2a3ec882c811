"""Intervened checkpoints: loadable, generating, exact where untouched, atomic on a crash."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import orthoscope
from orthoscope.cli import app
from orthoscope.interventions import apply as apply_module
from orthoscope.interventions import intervene, load_patched, make_op
from orthoscope.lab.shipped import shipped_family

runner = CliRunner()


def tensors(folder):
    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def test_swap_sigma_checkpoint_loads_generates_and_copies_the_rest(tmp_path):
    family = shipped_family()
    result = runner.invoke(app, ["intervene", str(family["base"]), str(family["instruct"]), "--op", "swap-sigma",
                                 "--scale", "1.0", "--kinds", "q,k", "-o", str(tmp_path / "swap"), "-q"])
    assert result.exit_code == 0, result.output
    new, post = tensors(tmp_path / "swap"), tensors(family["instruct"])
    assert new.keys() == post.keys()
    changed = {name for name in new if not torch.equal(new[name], post[name])}
    assert changed == {f"model.layers.{i}.self_attn.{k}_proj.weight" for i in range(3) for k in "qk"}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "swap")
    tok = AutoTokenizer.from_pretrained(tmp_path / "swap")
    out = model.generate(**tok("Q: What is 3 + 4?\nA:", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > 4
    table = orthoscope.compare(family["base"], tmp_path / "swap", kinds={"q"}).table
    assert table.a_geo.to_numpy() == pytest.approx(1.0, abs=1e-5)  # base singular values, f32 storage
    marker = json.loads((tmp_path / "swap" / "orthoscope_intervention.json").read_text())
    assert marker["label"] == "swap-sigma@1" and len(marker["matrices"]) == 6


def test_in_memory_patch_equals_the_written_checkpoint(tmp_path):
    family = shipped_family()
    op = make_op("break-left")
    intervene(family["base"], family["cot"], op, tmp_path / "broken", kinds={"o", "down"})
    model, _ = load_patched(family["base"], family["cot"], op, kinds={"o", "down"})
    written = tensors(tmp_path / "broken")
    state = model.state_dict()
    for name in ("model.layers.1.self_attn.o_proj.weight", "model.layers.2.mlp.down_proj.weight"):
        assert torch.equal(state[name], written[name])


def test_reconstruct_manifest_reports_the_dropped_share_per_matrix(tmp_path):
    family = shipped_family()
    path = intervene(family["base"], family["cot"], "reconstruct", tmp_path / "rebuilt", layers={0}, kinds={"q", "k"})
    marker = json.loads((path / "orthoscope_intervention.json").read_text())
    shares = {name: d["dropped_share"] for name, d in marker["diagnostics"].items()}
    assert set(shares) == set(marker["matrices"]) and marker["formula"].startswith("U_b Q_U (a S_b)")
    q, k = shares["model.layers.0.self_attn.q_proj.weight"], shares["model.layers.0.self_attn.k_proj.weight"]
    assert q < 1e-12 < 0.01 < k  # square: nothing leaves the base subspaces; GQA k (48 x 96): its rows do


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    family = shipped_family()
    calls = []
    real = apply_module.new_matrix

    def dying(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(apply_module, "new_matrix", dying)
    with pytest.raises(KeyboardInterrupt):
        intervene(family["base"], family["cot"], "base-vectors", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(apply_module, "new_matrix", real)
    intervene(family["base"], family["cot"], "base-vectors", tmp_path / "out")  # the leftover is replaced
    assert (tmp_path / "out" / "orthoscope_intervention.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cli_bad_arguments(tmp_path):
    family = shipped_family()
    args = ["intervene", str(family["base"]), str(family["cot"]), "-o", str(tmp_path / "x")]
    result = runner.invoke(app, args + ["--op", "interpolate"])
    assert result.exit_code == 2 and "op interpolate needs --t" in result.output
    (tmp_path / "x").mkdir()
    result = runner.invoke(app, args + ["--op", "break-left"])
    assert result.exit_code == 2 and "output folder already exists" in result.output
