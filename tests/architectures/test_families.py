"""Every family in architectures.FAMILIES, end to end, on tiny sharded checkpoints built by transformers.

For each family a seeded tiny model is saved (sharded safetensors, float32); a post
copy scales a few *logical* matrices by known factors, written by hand in the stored
layout (fused q|k|v rows, GPT-2 Conv1D columns, GPT-NeoX per-head interleaving), so
`compare` must find exactly those rows scaled and every other row untouched.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMaskedLM,
)
from transformers.utils import logging as hf_logging  # noqa: E402

import orthoscope  # noqa: E402
from orthoscope.architectures.maps import FAMILIES as ARCH_FAMILIES  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices: one thread is fastest

HIDDEN, LAYERS, HEADS, KV_HEADS, INTER, VOCAB = 32, 2, 4, 2, 64, 128
HEAD_DIM = HIDDEN // HEADS
SHARD = "50KB"

LLAMA_KINDS = ("q", "k", "v", "o", "gate", "up", "down")
PLAIN_KINDS = ("q", "k", "v", "o", "up", "down")

# (layer, kind, factor): q of layer 1, down of layer 0, and v of layer 0 (the last
# part of a fused q|k|v, so both split boundaries are checked).
PLANTS = ((1, "q", 1.1), (0, "down", 0.9), (0, "v", 1.2))
PHI3_PLANTS = PLANTS + ((1, "up", 0.8),)  # second half of the fused gate|up

TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
DECODER = dict(
    TOKENS, vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER,
    num_hidden_layers=LAYERS, num_attention_heads=HEADS, max_position_embeddings=64,
)
GQA = dict(DECODER, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM)
VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
              patch_size=14)

View = Callable[[torch.Tensor], torch.Tensor]


def _whole(t: torch.Tensor) -> torch.Tensor:
    return t


def _rows(start: int, stop: int) -> View:
    return lambda t: t[start:stop]


def _cols(start: int, stop: int) -> View:
    return lambda t: t[:, start:stop]


def _neox(part: int) -> View:
    return lambda t: t.view(HEADS, 3, HEAD_DIM, HIDDEN)[:, part]


def _llama_locate(layer: int, kind: str, prefix: str = "model.") -> tuple[str, View]:
    module = "self_attn" if kind in ("q", "k", "v", "o") else "mlp"
    return f"{prefix}layers.{layer}.{module}.{kind}_proj.weight", _whole


def _gemma3_locate(layer: int, kind: str) -> tuple[str, View]:
    """Gemma 3 multimodal as transformers 5 saves it: the text model under language_model.model."""
    return _llama_locate(layer, kind, "language_model.model.")


def _phi3_locate(layer: int, kind: str) -> tuple[str, View]:
    pre = f"model.layers.{layer}."
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    qkv = {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
    if kind in qkv:
        return pre + "self_attn.qkv_proj.weight", _rows(*qkv[kind])
    if kind in ("gate", "up"):
        start = 0 if kind == "gate" else INTER
        return pre + "mlp.gate_up_proj.weight", _rows(start, start + INTER)
    return pre + {"o": "self_attn.o_proj.weight", "down": "mlp.down_proj.weight"}[kind], _whole


def _gpt2_locate(layer: int, kind: str) -> tuple[str, View]:
    pre = f"transformer.h.{layer}."
    if kind in ("q", "k", "v"):  # Conv1D (in, 3*out): q | k | v along columns
        i = "qkv".index(kind)
        return pre + "attn.c_attn.weight", _cols(i * HIDDEN, (i + 1) * HIDDEN)
    return pre + {"o": "attn.c_proj.weight", "up": "mlp.c_fc.weight", "down": "mlp.c_proj.weight"}[kind], _whole


def _neox_locate(layer: int, kind: str) -> tuple[str, View]:
    pre = f"gpt_neox.layers.{layer}."
    if kind in ("q", "k", "v"):
        return pre + "attention.query_key_value.weight", _neox("qkv".index(kind))
    names = {"o": "attention.dense.weight", "up": "mlp.dense_h_to_4h.weight", "down": "mlp.dense_4h_to_h.weight"}
    return pre + names[kind], _whole


def _bert_locate(prefix: str) -> Callable[[int, str], tuple[str, View]]:
    names = {
        "q": "attention.self.query.weight", "k": "attention.self.key.weight",
        "v": "attention.self.value.weight", "o": "attention.output.dense.weight",
        "up": "intermediate.dense.weight", "down": "output.dense.weight",
    }
    return lambda layer, kind: (f"{prefix}encoder.layer.{layer}.{names[kind]}", _whole)


def _shapes(kv_rows: int) -> dict[str, tuple[int, int]]:
    return {
        "q": (HIDDEN, HIDDEN), "k": (kv_rows, HIDDEN), "v": (kv_rows, HIDDEN), "o": (HIDDEN, HIDDEN),
        "gate": (INTER, HIDDEN), "up": (INTER, HIDDEN), "down": (HIDDEN, INTER),
    }


GQA_SHAPES = _shapes(KV_HEADS * HEAD_DIM)
MHA_SHAPES = _shapes(HIDDEN)

# id -> (model_type, config kwargs, auto class, locate, kinds, expected (out, in), plants)
FAMILIES = {
    "llama": ("llama", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "mistral": ("mistral", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "qwen2": ("qwen2", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "qwen3": ("qwen3", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "gemma": ("gemma", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "gemma2": ("gemma2", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "gemma3_text": ("gemma3_text", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "gemma3": ("gemma3", dict(TOKENS, text_config=dict(GQA), vision_config=VISION, mm_tokens_per_image=4),
               AutoModelForImageTextToText, _gemma3_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "olmo2": ("olmo2", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "granite": ("granite", GQA, AutoModelForCausalLM, _llama_locate, LLAMA_KINDS, GQA_SHAPES, PLANTS),
    "phi3": ("phi3", dict(DECODER, num_key_value_heads=KV_HEADS), AutoModelForCausalLM, _phi3_locate,
             LLAMA_KINDS, GQA_SHAPES, PHI3_PLANTS),
    "gpt2": ("gpt2", dict(bos_token_id=1, eos_token_id=2, vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS,
                          n_head=HEADS, n_inner=INTER, n_positions=64),
             AutoModelForCausalLM, _gpt2_locate, PLAIN_KINDS, MHA_SHAPES, PLANTS),
    "gpt_neox": ("gpt_neox", DECODER, AutoModelForCausalLM, _neox_locate, PLAIN_KINDS, MHA_SHAPES, PLANTS),
    "bert": ("bert", dict(DECODER, type_vocab_size=2), AutoModelForMaskedLM, _bert_locate("bert."),
             PLAIN_KINDS, MHA_SHAPES, PLANTS),
    "bert-bare": ("bert", dict(DECODER, type_vocab_size=2), AutoModel, _bert_locate(""),
                  PLAIN_KINDS, MHA_SHAPES, PLANTS),
}


def build_base(family: str, folder: Path) -> Path:
    model_type, kwargs, auto, *_ = FAMILIES[family]
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(0)
    model = auto.from_config(config)
    model.save_pretrained(folder, max_shard_size=SHARD)
    return folder


def build_post(family: str, base: Path, folder: Path) -> Path:
    """Copy `base`, then rewrite only the shards holding planted tensors."""
    _, _, _, locate, _, shapes, plants = FAMILIES[family]
    shutil.copytree(base, folder)
    pending = {}
    for layer, kind, factor in plants:
        name, view = locate(layer, kind)
        pending.setdefault(name, []).append((kind, view, factor))
    for shard in sorted(folder.glob("*.safetensors")):
        tensors = load_file(shard)
        touched = [n for n in pending if n in tensors]
        for name in touched:
            for kind, view, factor in pending.pop(name):
                part = view(tensors[name])
                assert sorted(part.reshape(-1, part.shape[-1]).shape) == sorted(shapes[kind]), (name, kind)
                part.mul_(factor)  # in place: `view` is a view of the stored tensor
        if touched:
            save_file(tensors, shard, metadata={"format": "pt"})
    assert not pending, f"planted tensors not found in the checkpoint: {sorted(pending)}"
    return folder


def assert_sharded_float32(folder: Path) -> None:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 1 and set(index["weight_map"].values()) == {s.name for s in shards}
    for shard in shards:
        assert {t.dtype for t in load_file(shard).values()} == {torch.float32}, shard


def check_planted(table, plants, kind_of=lambda kind: kind) -> None:
    """Planted rows have a_geo == factor; every other row is exactly unchanged."""
    planted = {(layer, kind_of(kind)): factor for layer, kind, factor in plants}
    for row in table.itertuples():
        factor = planted.get((row.layer, row.kind))
        if factor is None:
            assert row.a_geo == pytest.approx(1.0, abs=1e-9), row.name
            assert not row.changed and math.isnan(row.rot), row.name  # bit-identical: no rotation defined
        else:
            assert row.changed, row.name
            # the default route runs float32 SVDs: within the documented 1e-4 (rot 1e-3) of float64
            assert row.a_geo == pytest.approx(factor, abs=1e-4), row.name
            assert row.disp < 1e-4 and row.rot < 1e-3, row.name
    found = {(r.layer, r.kind) for r in table.itertuples()}
    assert set(planted) <= found


def test_every_architecture_is_covered():
    from tests.architectures.test_moe import MOE_FAMILIES

    assert {FAMILIES[f][0] for f in FAMILIES} | set(MOE_FAMILIES) == set(ARCH_FAMILIES)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_planted_scaling(family: str, tmp_path: Path):
    model_type, _, _, _, kinds, shapes, plants = FAMILIES[family]
    base = build_base(family, tmp_path / "base")
    post = build_post(family, base, tmp_path / "post")
    assert_sharded_float32(base)
    assert_sharded_float32(post)

    result = orthoscope.compare(base, post)
    table = result.table

    assert result.summary["base"]["model_type"] == model_type
    assert result.skipped == []
    expected = {(layer, kind): shapes[kind] for layer in range(LAYERS) for kind in kinds}
    got = {(r.layer, r.kind): (r.rows, r.cols) for r in table.itertuples()}
    assert len(table) == len(expected) == len(got)
    assert got == expected
    assert set(table.post) == {"post"}
    check_planted(table, plants)


def test_unknown_model_type_falls_back_to_every_layer_weight(tmp_path: Path):
    base = build_base("llama", tmp_path / "llama-base")
    post = build_post("llama", base, tmp_path / "llama-post")
    for folder in (base, post):
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text())
        config["model_type"] = "totally_unknown"
        config_file.write_text(json.dumps(config))

    result = orthoscope.compare(base, post)
    table = result.table

    expected = set()
    for shard in base.glob("*.safetensors"):
        for name, tensor in load_file(shard).items():
            if name.endswith(".weight") and tensor.ndim == 2 and ".layers." in name:
                expected.add(name)
    assert len(expected) == LAYERS * len(LLAMA_KINDS)
    assert set(table.name) == expected and len(table) == len(expected)
    assert result.summary["base"]["model_type"] == "totally_unknown"
    assert any("unknown model_type" in note for note in result.summary["notes"])
    # kinds are module names in the fallback: "self_attn.q_proj", "mlp.down_proj", ...
    module = {k: ("self_attn" if k in "qkvo" else "mlp") + f".{k}_proj" for k in LLAMA_KINDS}
    check_planted(table, PLANTS, kind_of=module.get)
