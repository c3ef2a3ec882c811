"""Which tensors are the analysed linear maps, per `model_type`: data, not code.

Each family gives a layer prefix (a regex whose group is the layer index), the
per-layer matrices (suffix -> kind, or a fused tensor -> its parts), and the
embedding tensors analysed only on request. Layouts:

- `plain`: stored as (out, in), as nn.Linear does;
- `conv1d`: stored as (in, out) (GPT-2's Conv1D), transposed on read;
- `qkv`: fused rows [q | k | v] with GQA sizes from the config (Phi-3);
- `halves`: fused rows [gate | up] (Phi-3);
- `conv1d_thirds`: GPT-2 c_attn, (in, 3*out), transposed then split in three;
- `neox_qkv`: GPT-NeoX rows interleaved per head as (heads, 3, head_dim).
"""

from __future__ import annotations

LLAMA_LIKE = {
    "layer_prefix": r"(?:model\.)?layers\.(\d+)\.",
    "matrices": {
        "self_attn.q_proj.weight": "q",
        "self_attn.k_proj.weight": "k",
        "self_attn.v_proj.weight": "v",
        "self_attn.o_proj.weight": "o",
        "mlp.gate_proj.weight": "gate",
        "mlp.up_proj.weight": "up",
        "mlp.down_proj.weight": "down",
    },
    "fused": {},
    "embeddings": {
        r"(?:model\.)?embed_tokens\.weight": "embed",
        r"lm_head\.weight": "lm_head",
    },
}

PHI3 = {
    "layer_prefix": r"(?:model\.)?layers\.(\d+)\.",
    "matrices": {
        "self_attn.o_proj.weight": "o",
        "mlp.down_proj.weight": "down",
    },
    "fused": {
        "self_attn.qkv_proj.weight": {"layout": "qkv", "kinds": ["q", "k", "v"]},
        "mlp.gate_up_proj.weight": {"layout": "halves", "kinds": ["gate", "up"]},
    },
    "embeddings": LLAMA_LIKE["embeddings"],
}

GPT2 = {
    "layer_prefix": r"(?:transformer\.)?h\.(\d+)\.",
    "matrices": {
        "attn.c_proj.weight": "o",
        "mlp.c_fc.weight": "up",
        "mlp.c_proj.weight": "down",
    },
    "transposed": True,
    "fused": {
        "attn.c_attn.weight": {"layout": "conv1d_thirds", "kinds": ["q", "k", "v"]},
    },
    "embeddings": {
        r"(?:transformer\.)?wte\.weight": "embed",
        r"lm_head\.weight": "lm_head",
    },
}

GPT_NEOX = {
    "layer_prefix": r"(?:gpt_neox\.)?layers\.(\d+)\.",
    "matrices": {
        "attention.dense.weight": "o",
        "mlp.dense_h_to_4h.weight": "up",
        "mlp.dense_4h_to_h.weight": "down",
    },
    "fused": {
        "attention.query_key_value.weight": {"layout": "neox_qkv", "kinds": ["q", "k", "v"]},
    },
    "embeddings": {
        r"(?:gpt_neox\.)?embed_in\.weight": "embed",
        r"embed_out\.weight": "lm_head",
    },
}

BERT = {
    "layer_prefix": r"(?:bert\.)?encoder\.layer\.(\d+)\.",
    "matrices": {
        "attention.self.query.weight": "q",
        "attention.self.key.weight": "k",
        "attention.self.value.weight": "v",
        "attention.output.dense.weight": "o",
        "intermediate.dense.weight": "up",
        "output.dense.weight": "down",
    },
    "fused": {},
    "embeddings": {r"(?:bert\.)?embeddings\.word_embeddings\.weight": "embed"},
}

ARCHITECTURES: dict[str, dict] = {
    "llama": LLAMA_LIKE,
    "mistral": LLAMA_LIKE,
    "qwen2": LLAMA_LIKE,
    "qwen3": LLAMA_LIKE,
    "gemma": LLAMA_LIKE,
    "gemma2": LLAMA_LIKE,
    "phi3": PHI3,
    "gpt2": GPT2,
    "gpt_neox": GPT_NEOX,
    "bert": BERT,
}

KINDS = ("q", "k", "v", "o", "gate", "up", "down", "embed", "lm_head")
