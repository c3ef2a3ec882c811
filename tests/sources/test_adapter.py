"""PEFT LoRA adapters read against their base equal peft's own merge_and_unload, tensor by tensor."""

import json
import shutil

import pytest
import torch

import orthoscope
from orthoscope.errors import SourceError
from orthoscope.sources import open_checkpoint
from tests.sources.conftest import save_lora

pytest.importorskip("peft")


def assert_reads_as_merged(adapter, merged, base_folder):
    base = open_checkpoint(base_folder)
    ckpt = open_checkpoint(adapter, base=base)
    reference = open_checkpoint(merged)
    assert sorted(ckpt.names()) == sorted(reference.names())
    changed = []
    for name in reference.names():
        got, want = ckpt.read(name), reference.read(name)
        assert got.dtype == want.dtype and ckpt.shape(name) == tuple(want.shape), name
        assert torch.allclose(got, want, atol=1e-6, rtol=0), name
        if not torch.equal(got, base.read(name)):
            changed.append(name)
    return ckpt, changed


def test_lora_reads_as_the_merged_model_and_only_q_v_change(lora):
    ckpt, changed = assert_reads_as_merged(*lora["plain"], lora["base"])
    assert sorted(changed) == sorted(f"model.layers.{i}.self_attn.{m}_proj.weight" for i in (0, 1) for m in "qv")
    assert ckpt.model_type == "llama" and ckpt.format == "peft-lora"
    assert ckpt.describe()["adapter"] == {"adapted": 4, "replaced": []}


def test_rslora_with_rank_and_alpha_patterns(lora):
    ckpt, changed = assert_reads_as_merged(*lora["rslora"], lora["base"])
    assert len(changed) == 6
    scales = {name.split(".layers.")[1]: l.scale for name, l in ckpt.files.loras.items()}
    assert scales["1.self_attn.q_proj.weight"] == pytest.approx(16 / 2 ** 0.5)  # rank 2 from rank_pattern
    assert scales["0.self_attn.v_proj.weight"] == pytest.approx(4 / 2)  # alpha 4 from alpha_pattern
    assert scales["0.mlp.down_proj.weight"] == pytest.approx(16 / 2)


def test_modules_to_save_and_embedding_lora(lora):
    ckpt, changed = assert_reads_as_merged(*lora["saved"], lora["base"])
    assert "lm_head.weight" in ckpt.files.replaced and "model.embed_tokens.weight" in changed


def test_fan_in_fan_out_gpt2(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2():
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32)).eval()

    gpt2().save_pretrained(tmp_path / "base")
    adapter, merged = save_lora(tmp_path, "gpt2", gpt2, r=4, target_modules=["c_attn"], fan_in_fan_out=True)
    ckpt, changed = assert_reads_as_merged(adapter, merged, tmp_path / "base")
    assert sorted(changed) == [f"transformer.h.{i}.attn.c_attn.weight" for i in (0, 1)]


def test_compare_on_an_adapter_equals_compare_on_the_merged_model(lora):
    adapter, merged = lora["plain"]
    a = orthoscope.compare(lora["base"], adapter, cache=False).table
    b = orthoscope.compare(lora["base"], merged, cache=False).table
    numbers = [c for c in a.columns if a[c].dtype.kind == "f"]
    assert len(a) == len(b) > 0
    assert (a[numbers] - b[numbers]).abs().max().max() < 1e-6


def edited(adapter, tmp_path, **changes):
    copy = shutil.copytree(adapter, tmp_path / "edited")
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return copy


@pytest.mark.parametrize("changes, message", [
    ({"use_dora": True}, "DoRA (use_dora)"),
    ({"peft_type": "IA3"}, "describes a IA3 adapter; only LoRA adapters can be read"),
    ({"lora_bias": True}, "lora_bias is not supported"),
])
def test_unsupported_adapters_are_one_line(lora, tmp_path, changes, message):
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        open_checkpoint(edited(lora["plain"][0], tmp_path, **changes), base=open_checkpoint(lora["base"]))
    assert "adapter_config.json" in str(err.value) and "\n" not in str(err.value)


def test_an_adapter_without_its_base_is_one_error(lora):
    with pytest.raises(SourceError, match="is a PEFT adapter: it is read against its base model"):
        open_checkpoint(lora["plain"][0])


def test_an_adapter_of_another_base_is_refused(lora, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path / "small")
    with pytest.raises(SourceError, match=r"the update of 'model.layers.0.self_attn.q_proj' is 32 x 32, but"):
        open_checkpoint(lora["plain"][0], base=open_checkpoint(tmp_path / "small"))


def test_adapter_reference_reopens_with_its_base(lora):
    base = open_checkpoint(lora["base"])
    ckpt = open_checkpoint(lora["plain"][0], base=base)
    again = open_checkpoint(ckpt.reference())
    assert again.base.spec == base.spec and again.fingerprint() == ckpt.fingerprint()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(again.read(q), ckpt.read(q))
    assert ckpt.fingerprint() != base.fingerprint()
    assert open_checkpoint(ckpt.reference(), base=base).base is base  # the caller's base is reused


def test_a_hub_adapter_resolves_from_the_cache(lora, tmp_path, monkeypatch):
    from tests.sources.test_sources import SHA, fake_hub_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_cache(tmp_path, "lab/tiny-lora", lora["plain"][0])
    base = open_checkpoint(lora["base"])
    ckpt = open_checkpoint("lab/tiny-lora", base=base)
    assert ckpt.format == "peft-lora" and ckpt.revision == SHA
    q = "model.layers.1.self_attn.q_proj.weight"
    assert torch.allclose(ckpt.read(q), open_checkpoint(lora["plain"][1]).read(q), atol=1e-6, rtol=0)
    assert ckpt.reference().hub_id == "lab/tiny-lora" and ckpt.reference().commit == SHA


def test_a_model_folder_with_a_stray_adapter_config_is_the_model(lora, tmp_path):
    folder = shutil.copytree(lora["plain"][1], tmp_path / "merged")
    shutil.copy(lora["plain"][0] / "adapter_config.json", folder)
    assert open_checkpoint(folder).format == "safetensors"


def test_side_files_of_an_adapter_are_its_base_files(lora):
    base = open_checkpoint(lora["base"])
    ckpt = open_checkpoint(lora["plain"][0], base=base)
    names = [p.name for p in ckpt.side_files()]
    assert "config.json" in names and names == [p.name for p in base.side_files()]
    assert not any(n.endswith((".safetensors", ".index.json")) or n == "adapter_config.json" for n in names)
    assert open_checkpoint({"w": torch.ones(1)}).side_files() == []
