"""GGUF sources: a tiny llama written as llama.cpp's converter would, read back as its HF weights."""

import shutil

import numpy as np
import pytest
import torch

import orthoscope
from orthoscope.errors import SourceError
from orthoscope.sources import open_checkpoint

gguf = pytest.importorskip("gguf")

HEADS, KV_HEADS, LAYERS = 4, 2, 2

# Hugging Face module -> llama.cpp tensor name (as convert_hf_to_gguf.py writes them).
GLOBAL = {"model.embed_tokens": "token_embd", "lm_head": "output", "model.norm": "output_norm"}
BLOCK = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def llama_cpp_name(name: str) -> str:
    module, _, suffix = name.rpartition(".")
    if module in GLOBAL:
        return f"{GLOBAL[module]}.{suffix}"
    _, _, layer, rest = module.split(".", 3)
    return f"blk.{layer}.{BLOCK[rest]}.{suffix}"


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py, LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, model, config, qtype) -> None:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == gguf.GGMLQuantizationType.Q8_0
                             else gguf.LlamaFileType.ALL_F32))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(config.vocab_size)])
    for name, tensor in model.state_dict().items():
        w = tensor.numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            w = permute(w, HEADS)
        elif name.endswith("k_proj.weight"):
            w = permute(w, KV_HEADS)
        if w.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(llama_cpp_name(name), gguf.quants.quantize(w, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(llama_cpp_name(name), w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def spread_spectrum(rows: int, cols: int) -> torch.Tensor:
    """0.05 U diag(1.5 .. 0.5) V^T: distinct singular values (a permutation of rows would show as a
    rotation) and none near zero (Q8_0 noise barely moves a_geo, as in trained weights)."""
    k = min(rows, cols)
    U = torch.linalg.qr(torch.randn(rows, k))[0]
    V = torch.linalg.qr(torch.randn(cols, k))[0]
    return 0.05 * U @ torch.diag(torch.linspace(1.5, 0.5, k)) @ V.T


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(HF folder, F32 GGUF folder, Q8_0 GGUF folder, the model) of one tiny llama."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) if p.ndim == 1 else spread_spectrum(*p.shape))
    root = tmp_path_factory.mktemp("gguf")
    model.save_pretrained(root / "hf", safe_serialization=True)
    folders = []
    for label, qtype in [("f32", gguf.GGMLQuantizationType.F32), ("q8", gguf.GGMLQuantizationType.Q8_0)]:
        (root / label).mkdir()
        write_gguf(root / label / f"tiny-{label}.gguf", model, config, qtype)
        folders.append(root / label)
    return root / "hf", folders[0], folders[1], model


def test_f32_gguf_reads_back_the_hf_weights(tiny):
    hf, f32, _, model = tiny
    ckpt = open_checkpoint(f32)
    assert ckpt.format == "gguf" and ckpt.model_type == "llama"
    assert {k: ckpt.config[k] for k in ("hidden_size", "num_attention_heads", "num_key_value_heads",
                                        "num_hidden_layers", "intermediate_size", "vocab_size")} == {
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 128}
    state = model.state_dict()
    assert sorted(ckpt.names()) == sorted(state)
    for name, tensor in state.items():
        assert ckpt.shape(name) == tuple(tensor.shape), name
        assert torch.equal(ckpt.read(name), tensor), name
    assert ckpt.shape("model.layers.0.self_attn.k_proj.weight") == (32, 64)


def test_f32_gguf_compares_as_identical(tiny):
    hf, f32, _, _ = tiny
    table = orthoscope.compare(hf, f32).table
    assert len(table) == 14
    assert np.allclose(table.a_geo, 1.0, atol=1e-6)
    assert not table.changed.any() and table.rot.isna().all()  # bit-identical: no rotation is defined


def test_q8_0_gguf_compares_close(tiny):
    hf, _, q8, model = tiny
    ckpt = open_checkpoint(q8 / "tiny-q8.gguf")  # a file path works too
    assert set(ckpt.files.quant_types().values()) == {"Q8_0", "F32"}
    q = "model.layers.1.self_attn.q_proj.weight"
    assert torch.allclose(ckpt.read(q), model.state_dict()[q], atol=2e-3)
    table = orthoscope.compare(hf, q8).table
    assert len(table) == 14 and set(table.kind) == {"q", "k", "v", "o", "gate", "up", "down"}
    assert np.allclose(table.a_geo, 1.0, atol=1e-2)


def test_fingerprint_tells_quantizations_apart(tiny):
    _, f32, q8, _ = tiny
    assert open_checkpoint(f32).fingerprint() == open_checkpoint(f32).fingerprint()
    assert open_checkpoint(f32).fingerprint() != open_checkpoint(q8).fingerprint()


def test_config_json_wins_over_metadata(tiny, tmp_path):
    hf, f32, _, _ = tiny
    both = shutil.copytree(f32, tmp_path / "both")
    shutil.copy(hf / "config.json", both / "config.json")
    ckpt = open_checkpoint(both)
    assert ckpt.format == "gguf" and ckpt.config["architectures"] == ["LlamaForCausalLM"]


def test_truncated_gguf_names_the_file(tiny, tmp_path):
    _, f32, _, _ = tiny
    bad = shutil.copytree(f32, tmp_path / "bad")
    file = bad / "tiny-f32.gguf"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(SourceError, match="corrupt or truncated GGUF file") as err:
        orthoscope.compare(f32, bad)
    assert "tiny-f32.gguf" in str(err.value) and "\n" not in str(err.value)
    file.write_bytes(b"GGUF" + bytes(10))
    with pytest.raises(SourceError, match="tiny-f32.gguf"):
        open_checkpoint(bad)


def test_several_gguf_files_need_a_file_path(tiny, tmp_path):
    _, f32, q8, _ = tiny
    mixed = shutil.copytree(f32, tmp_path / "mixed")
    shutil.copy(q8 / "tiny-q8.gguf", mixed)
    with pytest.raises(SourceError, match="several GGUF files"):
        open_checkpoint(mixed)
    assert open_checkpoint(mixed / "tiny-q8.gguf").files.quant_types()["lm_head.weight"] == "Q8_0"


def test_gguf_byte_ranges_hold_each_tensors_stored_bytes(tiny):
    _, f32, q8, _ = tiny
    for folder in (f32, q8):
        files = open_checkpoint(folder).files
        for name in files.shapes:
            offset, length = files.byte_range(name)
            raw = files.location[name].read_bytes()[offset:offset + length]
            assert raw == files._tensor(name).data.tobytes(), name
