"""Which tensors are the analysed linear maps, per `model_type`: data, not code.

Each `Family` gives a layer prefix (a regex whose one group is the layer index),
the per-layer matrices (suffix -> kind), shared-expert matrices, fused tensors
(one stored tensor -> several matrices) and the embedding tensors analysed only
on request. Every entry is checked when the module loads (`Family.__post_init__`).

Mixture-of-experts conventions:

- a suffix holding `{expert}` is a routed expert; its number is `MatrixRef.expert`;
- `shared` suffixes are shared (always-on) experts: `shared_expert=True` and
  `expert=None` (DeepSeek's `n_shared_experts` are stored as one wider MLP, so
  there is one shared matrix per kind and layer; a layer never holds both a dense
  MLP and a shared expert, so (layer, kind, expert=None) stays unique);
- routers (`gate` of the MoE block, Qwen2-MoE's `shared_expert_gate`) are kind
  `router`: they are small (experts x hidden) and post-training does move them;
  `--kinds gate,up,down` leaves them out;
- 3-D stacked experts (`experts.gate_up_proj`, shape (E, ...)) are split into one
  matrix per expert (`Fused(experts=True)`), as transformers 5 holds them in
  memory (E, out, in) and as gpt-oss / Llama 4 store them (E, in, out).

Splits of a fused tensor's (out, in) rows (after the optional transpose):
`equal` (len(kinds) equal blocks: Phi-3 gate|up, GPT-2 q|k|v), `qkv` (GQA sizes
from the config), `neox_qkv` (GPT-NeoX rows interleaved per head as
(heads, 3, head_dim)), `interleaved` (row i belongs to part i % len(kinds): gpt-oss).

>>> FAMILIES["mixtral"].matrices["block_sparse_moe.experts.{expert}.w1.weight"]
'gate'
>>> kind_order("q") < kind_order("kv_b") < kind_order("router") < kind_order("down") < kind_order("lm_head")
True
>>> sort_kinds(["down", "zzz", "q"])
['q', 'down', 'zzz']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KINDS = (
    "q", "q_a", "q_b", "k", "v", "kv_a", "kv_b", "o",
    "router", "gate", "up", "down",
    "embed", "lm_head",
)
"""Every kind a map can give, in display order: the one order used for sorting, filters and figures."""

EXPERT = "{expert}"
SPLITS = ("equal", "qkv", "neox_qkv", "interleaved")
_ORDER = {kind: i for i, kind in enumerate(KINDS)}


def kind_order(kind: str) -> int:
    """Position of `kind` in KINDS; unknown kinds (fallback module names) sort last."""
    return _ORDER.get(kind, len(KINDS))


def sort_kinds(kinds: Iterable[str]) -> list[str]:
    """Distinct `kinds` in KINDS order, unknown ones after in first-seen order."""
    distinct = list(dict.fromkeys(kinds))
    return sorted(distinct, key=lambda k: (kind_order(k), distinct.index(k)))


@dataclass(frozen=True)
class Fused:
    """One stored tensor holding several matrices (or one per expert)."""

    kinds: tuple[str, ...]
    split: str = "equal"
    transposed: bool = False  # stored (in, out): GPT-2 Conv1D, gpt-oss / Llama 4 experts
    experts: bool = False  # 3-D, experts along dim 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r} (known: {', '.join(SPLITS)})")
        _check_kinds(self.kinds)
        if self.split in ("qkv", "neox_qkv") and self.kinds != ("q", "k", "v"):
            raise ValueError(f"split {self.split!r} needs kinds ('q', 'k', 'v'), not {self.kinds}")

    @property
    def ndim(self) -> int:
        return 3 if self.experts else 2


@dataclass(frozen=True)
class Family:
    """The analysed matrices of one architecture family."""

    layer_prefix: str
    matrices: Mapping[str, str]
    shared: Mapping[str, str] = field(default_factory=dict)
    fused: Mapping[str, Fused] = field(default_factory=dict)
    embeddings: Mapping[str, str] = field(default_factory=dict)
    transposed: bool = False  # every plain matrix stored (in, out) (GPT-2)

    def __post_init__(self) -> None:
        prefix = re.compile(self.layer_prefix)
        if prefix.groups != 1:
            raise ValueError(f"layer_prefix {self.layer_prefix!r} needs exactly one group (the layer)")
        for table in (self.matrices, self.shared, self.embeddings):
            _check_kinds(table.values())
        suffixes = [*self.matrices, *self.shared, *self.fused]
        if len(set(suffixes)) != len(suffixes):
            raise ValueError("a suffix is listed twice")
        for suffix in suffixes:
            if suffix.count(EXPERT) > (1 if suffix in self.matrices else 0):
                raise ValueError(f"{EXPERT} may appear once, in a routed-expert suffix: {suffix!r}")
        for pattern in self.embeddings:
            re.compile(pattern)
        for name in ("matrices", "shared", "fused", "embeddings"):  # read-only once checked
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def expert_patterns(self) -> dict[str, tuple[re.Pattern, str]]:
        """Routed-expert suffixes as regexes (group: the expert number) -> (regex, kind)."""
        return {s: (re.compile(r"(\d+)".join(re.escape(p) for p in s.split(EXPERT))), k)
                for s, k in self.matrices.items() if EXPERT in s}


def _check_kinds(kinds: Iterable[str]) -> None:
    unknown = [k for k in kinds if k not in _ORDER]
    if unknown:
        raise ValueError(f"unknown kinds {unknown} (add them to KINDS)")


def with_prefix(family: Family, layer_prefix: str, embeddings: Mapping[str, str]) -> Family:
    """The same per-layer matrices under another prefix (a text model inside a multimodal one)."""
    return Family(layer_prefix, family.matrices, family.shared, family.fused, embeddings, family.transposed)


DECODER_PREFIX = r"(?:model\.)?layers\.(\d+)\."
ATTENTION = {
    "self_attn.q_proj.weight": "q",
    "self_attn.k_proj.weight": "k",
    "self_attn.v_proj.weight": "v",
    "self_attn.o_proj.weight": "o",
}
MLP = {"mlp.gate_proj.weight": "gate", "mlp.up_proj.weight": "up", "mlp.down_proj.weight": "down"}
DECODER_EMBEDDINGS = {r"(?:model\.)?embed_tokens\.weight": "embed", r"lm_head\.weight": "lm_head"}


def _experts(block: str, names: Mapping[str, str]) -> dict[str, str]:
    """Routed experts `<block>.experts.{expert}.<name>` -> kind."""
    return {f"{block}.experts.{EXPERT}.{name}": kind for name, kind in names.items()}


def _shared(block: str) -> dict[str, str]:
    return {f"{block}.{p}_proj.weight": p for p in ("gate", "up", "down")}


PROJ = {"gate_proj.weight": "gate", "up_proj.weight": "up", "down_proj.weight": "down"}
# transformers >= 5 in memory (state_dict of a loaded model): experts stacked as (E, out, in)
STACKED = {
    "mlp.experts.gate_up_proj": Fused(("gate", "up"), experts=True),
    "mlp.experts.down_proj": Fused(("down",), experts=True),
}

LLAMA_LIKE = Family(DECODER_PREFIX, {**ATTENTION, **MLP}, embeddings=DECODER_EMBEDDINGS)

PHI3 = Family(
    DECODER_PREFIX,
    {"self_attn.o_proj.weight": "o", "mlp.down_proj.weight": "down"},
    fused={
        "self_attn.qkv_proj.weight": Fused(("q", "k", "v"), "qkv"),
        "mlp.gate_up_proj.weight": Fused(("gate", "up")),
    },
    embeddings=DECODER_EMBEDDINGS,
)

GPT2 = Family(
    r"(?:transformer\.)?h\.(\d+)\.",
    {"attn.c_proj.weight": "o", "mlp.c_fc.weight": "up", "mlp.c_proj.weight": "down"},
    fused={"attn.c_attn.weight": Fused(("q", "k", "v"), transposed=True)},
    embeddings={r"(?:transformer\.)?wte\.weight": "embed", r"lm_head\.weight": "lm_head"},
    transposed=True,
)

GPT_NEOX = Family(
    r"(?:gpt_neox\.)?layers\.(\d+)\.",
    {"attention.dense.weight": "o", "mlp.dense_h_to_4h.weight": "up", "mlp.dense_4h_to_h.weight": "down"},
    fused={"attention.query_key_value.weight": Fused(("q", "k", "v"), "neox_qkv")},
    embeddings={r"(?:gpt_neox\.)?embed_in\.weight": "embed", r"embed_out\.weight": "lm_head"},
)

BERT = Family(
    r"(?:bert\.)?encoder\.layer\.(\d+)\.",
    {
        "attention.self.query.weight": "q",
        "attention.self.key.weight": "k",
        "attention.self.value.weight": "v",
        "attention.output.dense.weight": "o",
        "intermediate.dense.weight": "up",
        "output.dense.weight": "down",
    },
    embeddings={r"(?:bert\.)?embeddings\.word_embeddings\.weight": "embed"},
)

MIXTRAL = Family(
    DECODER_PREFIX,
    {
        **ATTENTION,
        "block_sparse_moe.gate.weight": "router",
        **_experts("block_sparse_moe", {"w1.weight": "gate", "w3.weight": "up", "w2.weight": "down"}),
        "mlp.gate.weight": "router",  # transformers >= 5 in memory
    },
    fused=STACKED,
    embeddings=DECODER_EMBEDDINGS,
)

PHIMOE = Family(
    DECODER_PREFIX,
    {**MIXTRAL.matrices, "mlp.router.weight": "router"},  # transformers >= 5 in memory: mlp.router
    fused=STACKED,
    embeddings=DECODER_EMBEDDINGS,
)

# Granite MoE stores experts stacked (E, out, in): input_linear = gate | up halves, output_linear = down
GRANITEMOE = Family(
    DECODER_PREFIX,
    {**ATTENTION, "block_sparse_moe.router.layer.weight": "router",
     "block_sparse_moe.router.weight": "router"},  # transformers >= 5 in memory
    fused={
        "block_sparse_moe.input_linear.weight": Fused(("gate", "up"), experts=True),
        "block_sparse_moe.output_linear.weight": Fused(("down",), experts=True),
        "block_sparse_moe.experts.gate_up_proj": Fused(("gate", "up"), experts=True),
        "block_sparse_moe.experts.down_proj": Fused(("down",), experts=True),
    },
    embeddings=DECODER_EMBEDDINGS,
)

# Qwen2/3-MoE and OLMoE: routed experts under mlp.experts; dense layers (mlp_only_layers) keep mlp.*_proj
QWEN_MOE = Family(
    DECODER_PREFIX,
    {**ATTENTION, **MLP, "mlp.gate.weight": "router", **_experts("mlp", PROJ)},
    fused=STACKED,
    embeddings=DECODER_EMBEDDINGS,
)

QWEN2_MOE = Family(
    DECODER_PREFIX,
    dict(QWEN_MOE.matrices),
    shared={**_shared("mlp.shared_expert"), "mlp.shared_expert_gate.weight": "router"},
    fused=STACKED,
    embeddings=DECODER_EMBEDDINGS,
)

# DeepSeek-V2/V3: multi-head latent attention (q_proj when q_lora_rank is None), dense first layers
DEEPSEEK = Family(
    DECODER_PREFIX,
    {
        "self_attn.q_proj.weight": "q",
        "self_attn.q_a_proj.weight": "q_a",
        "self_attn.q_b_proj.weight": "q_b",
        "self_attn.kv_a_proj_with_mqa.weight": "kv_a",
        "self_attn.kv_b_proj.weight": "kv_b",
        "self_attn.o_proj.weight": "o",
        **MLP,
        "mlp.gate.weight": "router",
        **_experts("mlp", PROJ),
    },
    shared=_shared("mlp.shared_experts"),
    fused=STACKED,
    embeddings=DECODER_EMBEDDINGS,
)

# GLM-4.5 (glm4_moe): grouped-query attention with DeepSeek's experts, shared experts and dense first layers
GLM4_MOE = Family(
    DECODER_PREFIX,
    {**ATTENTION, **MLP, "mlp.gate.weight": "router", **_experts("mlp", PROJ)},
    shared=_shared("mlp.shared_experts"),
    fused=STACKED,
    embeddings=DECODER_EMBEDDINGS,
)

# gpt-oss stores experts (E, in, out) with gate and up interleaved along out (gate = 0::2)
GPT_OSS = Family(
    DECODER_PREFIX,
    {**ATTENTION, "mlp.router.weight": "router"},
    fused={
        "mlp.experts.gate_up_proj": Fused(("gate", "up"), "interleaved", transposed=True, experts=True),
        "mlp.experts.down_proj": Fused(("down",), transposed=True, experts=True),
    },
    embeddings=DECODER_EMBEDDINGS,
)

# Llama 4 text: experts (E, in, out) with gate | up halves; a shared expert; dense layers between
LLAMA4_TEXT = Family(
    DECODER_PREFIX,
    {
        **ATTENTION,
        "feed_forward.router.weight": "router",
        **{f"feed_forward.{p}_proj.weight": p for p in ("gate", "up", "down")},
    },
    shared=_shared("feed_forward.shared_expert"),
    fused={
        "feed_forward.experts.gate_up_proj": Fused(("gate", "up"), transposed=True, experts=True),
        "feed_forward.experts.down_proj": Fused(("down",), transposed=True, experts=True),
    },
    embeddings=DECODER_EMBEDDINGS,
)

# Gemma 3 multimodal: the text model under language_model.model. (on disk) or model.language_model. (in
# memory); the vision tower is not analysed (find_matrices notes its tensors)
GEMMA3 = with_prefix(
    LLAMA_LIKE,
    r"(?:language_model\.model\.|model\.language_model\.)layers\.(\d+)\.",
    {r"(?:language_model\.model\.|model\.language_model\.)embed_tokens\.weight": "embed",
     r"(?:language_model\.)?lm_head\.weight": "lm_head"},
)

FAMILIES: dict[str, Family] = {
    "llama": LLAMA_LIKE,
    "mistral": LLAMA_LIKE,
    "qwen2": LLAMA_LIKE,
    "qwen3": LLAMA_LIKE,
    "gemma": LLAMA_LIKE,
    "gemma2": LLAMA_LIKE,
    "gemma3_text": LLAMA_LIKE,
    "gemma3": GEMMA3,
    "olmo2": LLAMA_LIKE,
    "granite": LLAMA_LIKE,
    "phi3": PHI3,
    "gpt2": GPT2,
    "gpt_neox": GPT_NEOX,
    "bert": BERT,
    "mixtral": MIXTRAL,
    "phimoe": PHIMOE,
    "granitemoe": GRANITEMOE,
    "glm4_moe": GLM4_MOE,
    "qwen2_moe": QWEN2_MOE,
    "qwen3_moe": QWEN_MOE,
    "olmoe": QWEN_MOE,
    "deepseek_v2": DEEPSEEK,
    "deepseek_v3": DEEPSEEK,
    "gpt_oss": GPT_OSS,
    "llama4_text": LLAMA4_TEXT,
}
