"""Mixture-of-experts families (and MLA) on tiny random models saved by transformers, offline.

Every family is built with `AutoConfig.for_model` + `from_config` + `save_pretrained`
(what the installed transformers writes), and also as a raw `state_dict()` (what a
loaded transformers >= 5 model holds: experts stacked in 3-D tensors). The expected
matrices per layer are written out by hand from the configs below.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import orthoscope  # noqa: E402
from orthoscope.architectures import find_matrices, read_matrix, write_matrix  # noqa: E402
from orthoscope.architectures.matrices import cut_matrix  # noqa: E402
from orthoscope.errors import OrthoscopeError  # noqa: E402
from orthoscope.sources import open_checkpoint  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices: one thread is fastest

HIDDEN, LAYERS, EXPERTS, INTER, MOE_INTER, SHARED_INTER, DENSE_INTER = 32, 2, 3, 64, 16, 24, 48
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 8
Q_LORA, KV_LORA, ROPE, NOPE, V_DIM = 12, 8, 4, 4, 8

COMMON = dict(
    pad_token_id=0, bos_token_id=1, eos_token_id=2, vocab_size=128, hidden_size=HIDDEN,
    intermediate_size=INTER, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS, max_position_embeddings=64,
)
DEEPSEEK = dict(
    COMMON, n_routed_experts=EXPERTS, n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=MOE_INTER,
    first_k_dense_replace=1, kv_lora_rank=KV_LORA, qk_rope_head_dim=ROPE, qk_nope_head_dim=NOPE,
    v_head_dim=V_DIM, n_group=1, topk_group=1,
)
CONFIGS = {
    "mixtral": dict(COMMON, num_local_experts=EXPERTS, num_experts_per_tok=2),
    "qwen2_moe": dict(COMMON, num_experts=EXPERTS, num_experts_per_tok=2, moe_intermediate_size=MOE_INTER,
                      shared_expert_intermediate_size=SHARED_INTER, decoder_sparse_step=1, mlp_only_layers=[]),
    "qwen3_moe": dict(COMMON, num_experts=EXPERTS, num_experts_per_tok=2, moe_intermediate_size=MOE_INTER,
                      decoder_sparse_step=1, mlp_only_layers=[0], head_dim=HEAD_DIM),
    "olmoe": dict(COMMON, num_experts=EXPERTS, num_experts_per_tok=2),
    "deepseek_v2": dict(DEEPSEEK, q_lora_rank=Q_LORA),
    "deepseek_v3": dict(DEEPSEEK, q_lora_rank=None),
    "phimoe": dict(COMMON, num_local_experts=EXPERTS, num_experts_per_tok=2),
    "granitemoe": dict(COMMON, num_local_experts=EXPERTS, num_experts_per_tok=2),
    "glm4_moe": dict(COMMON, n_routed_experts=EXPERTS, n_shared_experts=1, num_experts_per_tok=2, n_group=1,
                     topk_group=1, moe_intermediate_size=MOE_INTER, first_k_dense_replace=1, head_dim=HEAD_DIM),
    "gpt_oss": dict(COMMON, num_local_experts=EXPERTS, num_experts_per_tok=2, head_dim=HEAD_DIM,
                    layer_types=["full_attention"] * LAYERS),
    "llama4_text": dict(COMMON, num_local_experts=EXPERTS, num_experts_per_tok=1, head_dim=HEAD_DIM,
                        intermediate_size_mlp=DENSE_INTER, interleave_moe_layer_step=2),
}

Row = tuple  # (kind, expert, shared, (out, in))
GQA = [("q", None, False, (HEADS * HEAD_DIM, HIDDEN)), ("k", None, False, (KV_HEADS * HEAD_DIM, HIDDEN)),
       ("v", None, False, (KV_HEADS * HEAD_DIM, HIDDEN)), ("o", None, False, (HIDDEN, HEADS * HEAD_DIM))]
MLA_KV = [("kv_a", None, False, (KV_LORA + ROPE, HIDDEN)), ("kv_b", None, False, (HEADS * (NOPE + V_DIM), KV_LORA)),
          ("o", None, False, (HIDDEN, HEADS * V_DIM))]
MLA_LORA = [("q_a", None, False, (Q_LORA, HIDDEN)), ("q_b", None, False, (HEADS * (NOPE + ROPE), Q_LORA)), *MLA_KV]
MLA_FULL = [("q", None, False, (HEADS * (NOPE + ROPE), HIDDEN)), *MLA_KV]
ROUTER = [("router", None, False, (EXPERTS, HIDDEN))]


def mlp(inter: int, expert: int | None = None, shared: bool = False) -> list[Row]:
    return [("gate", expert, shared, (inter, HIDDEN)), ("up", expert, shared, (inter, HIDDEN)),
            ("down", expert, shared, (HIDDEN, inter))]


def experts(inter: int) -> list[Row]:
    return [row for e in range(EXPERTS) for row in mlp(inter, e)]


# family -> rows of layer 0, rows of layer 1
EXPECTED: dict[str, tuple[list[Row], list[Row]]] = {
    "mixtral": (GQA + ROUTER + experts(INTER),) * 2,
    "qwen2_moe": (GQA + ROUTER + [("router", None, True, (1, HIDDEN))] + mlp(SHARED_INTER, shared=True)
                  + experts(MOE_INTER),) * 2,
    "qwen3_moe": (GQA + mlp(INTER), GQA + ROUTER + experts(MOE_INTER)),
    "olmoe": (GQA + ROUTER + experts(INTER),) * 2,
    "deepseek_v2": (MLA_LORA + mlp(INTER), MLA_LORA + ROUTER + mlp(MOE_INTER, shared=True) + experts(MOE_INTER)),
    "deepseek_v3": (MLA_FULL + mlp(INTER), MLA_FULL + ROUTER + mlp(MOE_INTER, shared=True) + experts(MOE_INTER)),
    "phimoe": (GQA + ROUTER + experts(INTER),) * 2,
    "granitemoe": (GQA + ROUTER + experts(INTER),) * 2,
    "glm4_moe": (GQA + mlp(INTER), GQA + ROUTER + mlp(MOE_INTER, shared=True) + experts(MOE_INTER)),
    "gpt_oss": (GQA + ROUTER + experts(INTER),) * 2,
    "llama4_text": (GQA + mlp(DENSE_INTER), GQA + ROUTER + mlp(INTER, shared=True) + experts(INTER)),
}
MOE_FAMILIES = tuple(CONFIGS)


def expected_rows(family: str) -> list[tuple]:
    return [(layer, *row) for layer, rows in enumerate(EXPECTED[family]) for row in rows]


def ref_rows(refs) -> list[tuple]:
    return [(r.layer, r.kind, r.expert, r.shared_expert, r.shape) for r in refs]


class Built:
    """Per family: the model, its save_pretrained folder and a raw state_dict folder."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}

    def __call__(self, family: str) -> tuple[torch.nn.Module, Path, Path]:
        if family not in self.cache:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **CONFIGS[family]))
            saved, raw = self.root / family / "saved", self.root / family / "state_dict"
            model.save_pretrained(saved, max_shard_size="60KB")
            raw.mkdir(parents=True)
            shutil.copy(saved / "config.json", raw / "config.json")
            state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            save_file(state, raw / "model.safetensors", metadata={"format": "pt"})
            self.cache[family] = model, saved, raw
        return self.cache[family]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("moe"))


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_saved_checkpoint_gives_one_row_per_expert_matrix(family, built):
    _, saved, _ = built(family)
    ckpt = open_checkpoint(saved)
    refs, notes = find_matrices(ckpt)
    assert sorted(ref_rows(refs), key=repr) == sorted(expected_rows(family), key=repr)
    assert not [n for n in notes if "not in the" in n], notes  # every 2-D layer tensor is mapped
    for ref in refs:
        assert tuple(read_matrix(ckpt, ref).shape) == ref.shape, ref.name
    layer1 = [r for r in refs if r.layer == 1]
    assert [r.kind for r in layer1 if r.expert is None and not r.shared_expert][-1] == "router"  # KINDS order
    routed = [(r.kind, r.expert) for r in layer1 if r.expert is not None]  # kind by kind, experts in order
    assert routed == [(k, e) for k in ("gate", "up", "down") for e in range(EXPERTS)]


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_stacked_state_dict_splits_into_the_same_matrices(family, built):
    """A transformers-5 state_dict (experts stacked (E, 2*inter, hidden)) gives the matrices that
    save_pretrained's own conversion writes per expert, value for value."""
    _, saved, raw = built(family)
    on_disk, in_memory = open_checkpoint(saved), open_checkpoint(raw)
    disk_refs, _ = find_matrices(on_disk)
    mem_refs, notes = find_matrices(in_memory)
    assert not [n for n in notes if "not in the" in n], notes
    disk = {r.key: r for r in disk_refs}
    assert len(disk) == len(disk_refs) == len(mem_refs)  # the key identifies a matrix in both layouts
    assert sorted(disk, key=repr) == sorted((r.key for r in mem_refs), key=repr)
    for ref in mem_refs:
        twin = disk[ref.key]
        assert ref.shape == twin.shape
        assert torch.equal(read_matrix(in_memory, ref), read_matrix(on_disk, twin)), ref.name
    stacked = [r for r in mem_refs if r.expert_slice is not None]
    assert len(stacked) == EXPERTS * 3 * sum(any(row[1] is not None for row in rows) for rows in EXPECTED[family])


def test_gpt_oss_interleaved_gate_up_follows_the_forward(built):
    """gpt-oss computes gate_up = x @ gate_up_proj[e]; gate = gate_up[..., ::2], up = gate_up[..., 1::2]."""
    model, saved, _ = built("gpt_oss")
    ckpt = open_checkpoint(saved)
    refs, _ = find_matrices(ckpt)
    stacked = model.model.layers[1].mlp.experts.gate_up_proj.detach()
    down = model.model.layers[1].mlp.experts.down_proj.detach()
    x = torch.randn(5, HIDDEN)
    for e in range(EXPERTS):
        gate_up = x @ stacked[e]
        mats = {r.kind: read_matrix(ckpt, r) for r in refs if r.layer == 1 and r.expert == e}
        assert torch.allclose(x @ mats["gate"].T, gate_up[..., ::2], atol=1e-6)
        assert torch.allclose(x @ mats["up"].T, gate_up[..., 1::2], atol=1e-6)
        h = torch.randn(5, INTER)
        assert torch.allclose(h @ mats["down"].T, h @ down[e], atol=1e-6)


def test_llama4_gate_up_halves_follow_the_forward(built):
    """Llama 4 computes gate, up = (x @ gate_up_proj[e]).chunk(2, dim=-1)."""
    model, saved, _ = built("llama4_text")
    ckpt = open_checkpoint(saved)
    refs, _ = find_matrices(ckpt)
    stacked = model.model.layers[1].feed_forward.experts.gate_up_proj.detach()
    x = torch.randn(5, HIDDEN)
    for e in range(EXPERTS):
        gate, up = (x @ stacked[e]).chunk(2, dim=-1)
        mats = {r.kind: read_matrix(ckpt, r) for r in refs if r.layer == 1 and r.expert == e}
        assert torch.allclose(x @ mats["gate"].T, gate, atol=1e-6)
        assert torch.allclose(x @ mats["up"].T, up, atol=1e-6)


@pytest.mark.parametrize("family", ["gpt_oss", "mixtral", "llama4_text", "granitemoe"])
def test_write_matrix_inverts_read_on_stacked_experts(family, built):
    _, _, raw = built(family)
    ckpt = open_checkpoint(raw)
    refs, _ = find_matrices(ckpt)
    stacked = [r for r in refs if r.expert_slice is not None and r.layer == 1]
    for target in stacked:
        tensor = ckpt.read(target.tensor).clone()
        new = torch.randn(target.shape)
        write_matrix(tensor, target, new)
        for ref in (r for r in stacked if r.tensor == target.tensor):
            expected = new if ref == target else read_matrix(ckpt, ref)
            assert torch.equal(cut_matrix(tensor, ref), expected), (target.name, ref.name)


# ---- end to end: planted scalings of a few matrices, located by hand in the stored layout ----

View = Callable[[torch.Tensor], torch.Tensor]
WHOLE: View = lambda t: t  # noqa: E731
# family -> [(tensor, view, (layer, kind, expert, rows), factor)]
PLANTS: dict[str, list[tuple[str, View, tuple, float]]] = {
    "mixtral": [
        ("model.layers.1.block_sparse_moe.experts.2.w3.weight", WHOLE, (1, "up", 2, INTER), 1.1),
        ("model.layers.0.block_sparse_moe.experts.0.w2.weight", WHOLE, (0, "down", 0, HIDDEN), 0.9),
        ("model.layers.0.block_sparse_moe.gate.weight", WHOLE, (0, "router", None, EXPERTS), 1.2),
    ],
    "qwen2_moe": [
        ("model.layers.1.mlp.shared_expert.down_proj.weight", WHOLE, (1, "down", None, HIDDEN), 1.1),
        ("model.layers.0.mlp.experts.1.gate_proj.weight", WHOLE, (0, "gate", 1, MOE_INTER), 0.9),
        ("model.layers.1.mlp.shared_expert_gate.weight", WHOLE, (1, "router", None, 1), 1.3),
    ],
    "deepseek_v2": [
        ("model.layers.0.self_attn.kv_b_proj.weight", WHOLE, (0, "kv_b", None, HEADS * (NOPE + V_DIM)), 1.1),
        ("model.layers.1.self_attn.q_a_proj.weight", WHOLE, (1, "q_a", None, Q_LORA), 0.9),
        ("model.layers.1.mlp.experts.0.up_proj.weight", WHOLE, (1, "up", 0, MOE_INTER), 1.2),
    ],
    "gpt_oss": [  # (E, in, 2*inter): gate = columns 0::2, up = columns 1::2 of expert e
        ("model.layers.1.mlp.experts.gate_up_proj", lambda t: t[1][:, 1::2], (1, "up", 1, INTER), 1.1),
        ("model.layers.1.mlp.experts.gate_up_proj", lambda t: t[0][:, 0::2], (1, "gate", 0, INTER), 0.8),
        ("model.layers.0.mlp.experts.down_proj", lambda t: t[2], (0, "down", 2, HIDDEN), 0.9),
    ],
}


def plant(base: Path, folder: Path, plants) -> Path:
    shutil.copytree(base, folder)
    pending = {}
    for tensor, view, _, factor in plants:
        pending.setdefault(tensor, []).append((view, factor))
    for shard in sorted(folder.glob("*.safetensors")):
        tensors = load_file(shard)
        touched = [n for n in pending if n in tensors]
        for name in touched:
            for view, factor in pending.pop(name):
                view(tensors[name]).mul_(factor)
        if touched:
            save_file(tensors, shard, metadata={"format": "pt"})
    assert not pending
    return folder


@pytest.mark.parametrize("family", list(PLANTS))
def test_compare_finds_planted_expert_scalings(family, built, tmp_path):
    _, saved, _ = built(family)
    post = plant(saved, tmp_path / "post", PLANTS[family])
    result = orthoscope.compare(saved, post, metrics="sign-free")
    table = result.table
    assert result.skipped == [] and len(table) == len(expected_rows(family))
    assert json.loads(json.dumps(result.summary["base"]))["model_type"] == family
    assert table.expert.dtype == "Int64"
    assert sorted(table.expert.dropna().astype(int)) == sorted(r[2] for r in expected_rows(family) if r[2] is not None)
    planted = {key: factor for _, _, key, factor in PLANTS[family]}
    seen = set()
    for row in table.itertuples():
        expert = None if pd.isna(row.expert) else int(row.expert)
        key = (row.layer, row.kind, expert, row.rows)
        seen.add(key)
        assert row.a_geo == pytest.approx(planted.get(key, 1.0), abs=1e-6), row.name
    assert set(planted) <= seen


class _Stub:
    """A checkpoint whose source reports stored dtypes (safetensors headers do)."""

    model_type, path, config = "no_such_family", Path("stub"), {}
    tensors = {
        "model.layers.0.mlp.fc.weight": ((4, 4), "BF16"),
        "model.layers.0.mlp.packed.weight": ((4, 4), "I8"),
        "model.layers.0.mlp.mask.weight": ((4, 4), "BOOL"),
        "model.layers.0.mlp.phase.weight": ((4, 4), "C64"),
        "model.layers.1.mlp.fc.weight": ((4, 4), torch.float16),
        "model.layers.1.mlp.ids.weight": ((4, 4), torch.int64),
    }

    def names(self):
        return list(self.tensors)

    def shape(self, name):
        return self.tensors[name][0]

    def dtype(self, name):
        return self.tensors[name][1]


def test_fallback_skips_non_float_tensors_with_a_note():
    refs, notes = find_matrices(_Stub())
    assert [r.name for r in refs] == ["model.layers.0.mlp.fc.weight", "model.layers.1.mlp.fc.weight"]
    skipped = [n for n in notes if "non-floating-point" in n]
    assert len(skipped) == 1 and skipped[0].startswith("4 non-floating-point 2-D tensors skipped")
    assert "model.layers.0.mlp.packed.weight (I8)" in skipped[0]


FP8_BLOCK = 16


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3's block FP8: weight ~ q * scale_inv per (16, 16) block (here blocks of 16)."""
    rows, cols = weight.shape
    br, bc = -(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK)
    padded = torch.zeros(br * FP8_BLOCK, bc * FP8_BLOCK)
    padded[:rows, :cols] = weight
    tiles = padded.view(br, FP8_BLOCK, bc, FP8_BLOCK)
    scale_inv = tiles.abs().amax(dim=(1, 3)) / 448.0
    q = (tiles / scale_inv[:, None, :, None]).view_as(padded)[:rows, :cols].to(torch.float8_e4m3fn)
    return q, scale_inv


def fp8_copy(source: Path, folder: Path, double: str | None = None) -> Path:
    """Quantize the per-layer projections of `source` as DeepSeek-V3 ships them (routers stay float),
    optionally doubling one weight first."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}
    (folder / "config.json").write_text(json.dumps(config))
    index = folder / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    for shard in sorted(folder.glob("*.safetensors")):
        tensors = load_file(shard)
        names = [n for n, t in tensors.items()
                 if ".layers." in n and n.endswith(("proj.weight", "mqa.weight")) and t.ndim == 2]
        for name in names:
            weight = tensors[name] * (2.0 if name == double else 1.0)
            tensors[name], tensors[name + "_scale_inv"] = quantize_fp8(weight)
            weight_map[name + "_scale_inv"] = shard.name
        save_file(tensors, shard, metadata={"format": "pt"})
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_block_fp8_weights_are_read_dequantized(built, tmp_path):
    _, saved, _ = built("deepseek_v3")
    doubled = "model.layers.1.self_attn.kv_b_proj.weight"
    base, post = fp8_copy(saved, tmp_path / "base"), fp8_copy(saved, tmp_path / "post", double=doubled)
    full, fp8 = open_checkpoint(saved), open_checkpoint(base)
    refs, notes = find_matrices(fp8)
    assert ref_rows(refs) == ref_rows(find_matrices(full)[0])
    assert not [n for n in notes if "not in the" in n], notes  # scale tensors belong to their weights
    scaled = [r for r in refs if r.scale is not None]
    assert {r.kind for r in refs if r.scale is None} == {"router"}
    assert len(scaled) > 20 and all(r.scale == r.tensor + "_scale_inv" for r in scaled)
    originals = {r.key: r for r in find_matrices(full)[0]}
    for ref in refs:
        W, original = read_matrix(fp8, ref), read_matrix(full, originals[ref.key])
        assert W.dtype == (torch.float32 if ref.scale else original.dtype)
        assert torch.allclose(W, original, rtol=0.07, atol=1e-6), ref.name  # e4m3: 3 mantissa bits
    # doubling one weight doubles only its scales (same fp8 codes): a_geo is 2 only if scales are applied
    table = orthoscope.compare(base, post, metrics="sign-free").table
    assert (table.name == doubled).sum() == 1
    for row in table.itertuples():
        assert row.a_geo == pytest.approx(2.0 if row.name == doubled else 1.0, abs=1e-6), row.name
    with pytest.raises(OrthoscopeError, match="block-quantized FP8"):
        write_matrix(fp8.read(refs[0].tensor), refs[0], torch.zeros(refs[0].shape))
