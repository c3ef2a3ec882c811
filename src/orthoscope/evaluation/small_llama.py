"""A small Llama checkpoint scored without importing transformers: the same logits, greedy answers and states.

Importing transformers' modelling code costs more CPU than scoring the shipped lab models does
(docs/benchmarks.md). `load_small_llama` reads such a checkpoint (a plain Llama config, one
safetensors file, a `tokenizers` tokenizer.json used as it is, generation defaults that change no
greedy answer) into `SmallLlama`, which computes what `LlamaForCausalLM` of transformers 5 computes
with the same arithmetic in the same order (its sdpa and eager attention paths, masks, rotary
embedding, RMSNorm, greedy generation with a cache), so every score is bit for bit the one
transformers gives (tests/evaluation/test_small_llama checks logits, answers, attentions and hidden
states). Anything else returns None and is loaded by `load_model` through transformers.

For scoring only, under `torch.no_grad()`: elementwise steps run in place (the same values, no
copies), which autograd cannot differentiate.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

PLAIN_LLAMA = {"model_type": "llama", "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
               "pretraining_tp": 1}
"""Config values a checkpoint must have (or leave out) to be read as a `SmallLlama`."""
TOKENIZER_KEYS = {"backend", "bos_token", "eos_token", "model_max_length", "pad_token", "tokenizer_class",
                  "unk_token", "clean_up_tokenization_spaces"}
"""tokenizer_config.json keys whose meaning `SmallTokenizer` reproduces (another key: transformers loads it)."""
TOKENIZER_CLASSES = {None, "TokenizersBackend", "PreTrainedTokenizerFast"}
"""tokenizer_class values that use tokenizer.json as it is (a `LlamaTokenizer` builds its own pre-tokenizer)."""
GENERATION_IDS = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"}
"""generation_config.json ids `generate` never reads for a greedy answer given explicit pad and eos ids."""
GENERATION_NEUTRAL = {"use_cache": True, "output_attentions": False, "output_hidden_states": False,
                      "output_scores": False, "output_logits": False, "return_dict_in_generate": False,
                      "do_sample": False, "num_beams": 1}
"""Other generation_config.json keys `SmallLlama.generate` reproduces, with the one value each it does."""
GENERATION_NOTES = {"transformers_version", "_from_model_config"}
"""generation_config.json bookkeeping (no effect on `generate`)."""


@dataclass
class SmallConfig:
    """The shape of a plain Llama: what `SmallLlama` needs from config.json."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    _attn_implementation: str = "sdpa"

    @classmethod
    def read(cls, config: dict) -> SmallConfig | None:
        """The config of a plain Llama with default rotary embedding; None for anything else."""
        if any(config.get(key, value) != value for key, value in PLAIN_LLAMA.items()):
            return None
        rope = config.get("rope_parameters") or {"rope_type": "default", "rope_theta": config.get("rope_theta")}
        if config.get("rope_scaling") or rope.get("rope_type", "default") != "default" or set(rope) - {
                "rope_type", "rope_theta"}:
            return None
        heads = config["num_attention_heads"]
        return cls(config["vocab_size"], config["hidden_size"], config["intermediate_size"],
                   config["num_hidden_layers"], heads, config.get("num_key_value_heads") or heads,
                   config.get("head_dim") or config["hidden_size"] // heads, float(config.get("rms_norm_eps", 1e-6)),
                   float(rope.get("rope_theta") or 10000.0), bool(config.get("tie_word_embeddings", False)))


def load_small_llama(folder: str | Path):
    """(model, tokenizer) of a small plain-Llama checkpoint folder, or None when it is not one.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> model, tok = load_small_llama(shipped_family()["instruct"])
    >>> type(model).__name__, tok.decode(tok("12 + 30")["input_ids"])
    ('SmallLlama', '12 + 30')
    >>> load_small_llama("/nonexistent") is None
    True
    """
    folder = Path(folder)
    files = [folder / name for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors")]
    if not all(path.is_file() for path in files) or any(folder.glob("*.safetensors.index.json")):
        return None
    if not _transformers_5():
        return None
    try:
        config = SmallConfig.read(json.loads(files[0].read_text()))
        tokenizer_config = json.loads(files[2].read_text())
        generation = folder / "generation_config.json"
        neutral = not generation.exists() or _neutral_generation(json.loads(generation.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return None  # transformers gives the one-line error
    if config is None or not neutral or not _plain_tokenizer(tokenizer_config):
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    model = SmallLlama(config)
    try:
        weights = load_file(str(files[3]))
        if config.tie_word_embeddings:
            weights.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except (SafetensorError, RuntimeError, OSError):  # truncated file, a shape that is not the config's
        return None
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected or any(w.dtype != torch.float32 for w in weights.values()):
        return None
    try:
        core = Tokenizer.from_file(str(files[1]))
    except Exception:  # tokenizers raises a bare Exception for a file it cannot read
        return None
    tokenizer = SmallTokenizer(core, tokenizer_config)
    if tokenizer.pad_token_id is None:
        return None
    return model.eval(), tokenizer


def _transformers_5() -> bool:
    """Whether the installed transformers is 5 or later, the release `SmallLlama` mirrors (read, not imported)."""
    try:
        return int(importlib.metadata.version("transformers").split(".")[0]) >= 5
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def _plain_tokenizer(config: dict) -> bool:
    """Whether transformers would use tokenizer.json as it is, with string special tokens `SmallTokenizer` reads."""
    tokens = [config.get(key) for key in ("bos_token", "eos_token", "pad_token", "unk_token")]
    return (not set(config) - TOKENIZER_KEYS and config.get("backend", "tokenizers") == "tokenizers"
            and not config.get("clean_up_tokenization_spaces") and config.get("tokenizer_class") in TOKENIZER_CLASSES
            and all(token is None or isinstance(token, str) for token in tokens))


def _neutral_generation(config: dict) -> bool:
    """Whether generation_config.json leaves transformers' greedy `generate` as `SmallLlama.generate` runs it."""
    return all(key in GENERATION_IDS | GENERATION_NOTES or
               (key in GENERATION_NEUTRAL and value == GENERATION_NEUTRAL[key]
                and type(value) is type(GENERATION_NEUTRAL[key])) for key, value in config.items())


class SmallTokenizer:
    """The calls the evaluation makes of a transformers fast tokenizer, on the same `tokenizers` object."""

    def __init__(self, core, config: dict):
        self.core = core
        self.padding_side = "right"
        self.eos_token = config.get("eos_token")
        pad = config.get("pad_token") or self.eos_token
        self.pad_token_id = core.token_to_id(pad) if pad else None

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.core.token_to_id(token)

    def __call__(self, texts, return_tensors: str | None = None, padding: bool = False, truncation: bool = False,
                 max_length: int | None = None) -> dict:
        """input_ids and attention_mask of one text (lists) or of several (padded tensors with return_tensors="pt")."""
        if isinstance(texts, str):
            ids = self.core.encode(texts, add_special_tokens=True).ids
            return {"input_ids": ids, "attention_mask": [1] * len(ids)}
        rows = [encoding.ids for encoding in self.core.encode_batch(texts, add_special_tokens=True)]
        if truncation and max_length is not None:
            rows = [row[:max_length] for row in rows]
        width = max(map(len, rows)) if padding else None
        ids, mask = [], []
        for row in rows:
            pad = (width or len(row)) - len(row)
            before, after = (pad, 0) if self.padding_side == "left" else (0, pad)
            ids.append([self.pad_token_id] * before + row + [self.pad_token_id] * after)
            mask.append([0] * before + [1] * len(row) + [0] * after)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.core.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, rows, skip_special_tokens: bool = False) -> list[str]:
        return self.core.decode_batch([[int(i) for i in row] for row in rows], skip_special_tokens=skip_special_tokens)


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(variance.add_(self.eps))).mul_(self.weight)  # in place: the same values, no copies


class Attention(nn.Module):
    def __init__(self, c: SmallConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.groups, self.scaling = self.heads // self.kv_heads, self.head_dim**-0.5
        self.q_proj = nn.Linear(c.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, cache: list | None, eager: bool):
        shape = (*x.shape[:-1], -1, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = (q * cos).add_(_rotate_half(q).mul_(sin)), (k * cos).add_(_rotate_half(k).mul_(sin))
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=-2), torch.cat([cache[1], v], dim=-2)
            cache[:] = [k, v]
        out, weights = (self._eager if eager else self._sdpa)(q, k, v, mask)
        return self.o_proj(out.reshape(*x.shape[:-1], -1).contiguous()), weights

    def _sdpa(self, q, k, v, mask):
        """transformers' sdpa_attention_forward for a CPU model: the same branch for the same inputs."""
        batch, _, length, _ = q.shape
        extra = {}
        if self.groups > 1:
            if mask is None and k.shape[-1] == v.shape[-1] <= 256:
                extra["enable_gqa"] = True
            elif length == 1:
                q = q.reshape(batch, self.heads // self.groups, self.groups, self.head_dim)
            else:
                k, v = _repeat_kv(k, self.groups), _repeat_kv(v, self.groups)
        causal = length > 1 and mask is None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.scaling,
                                             is_causal=causal, **extra)
        return out.reshape(batch, -1, length, v.shape[-1]).transpose(1, 2).contiguous(), None

    def _eager(self, q, k, v, mask):
        k, v = _repeat_kv(k, self.groups), _repeat_kv(v, self.groups)
        weights = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if mask is not None:
            weights = weights + mask
        weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(weights, v).transpose(1, 2).contiguous(), weights


class MLP(nn.Module):
    def __init__(self, c: SmallConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x), inplace=True).mul_(self.up_proj(x)))


class Layer(nn.Module):
    def __init__(self, c: SmallConfig):
        super().__init__()
        self.self_attn, self.mlp = Attention(c), MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache, eager):
        attended, weights = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, eager)
        x = attended.add_(x)  # a + b == b + a in floating point: the residual sums in the attention's buffer
        return self.mlp(self.post_attention_layernorm(x)).add_(x), weights


class Body(nn.Module):
    def __init__(self, c: SmallConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class SmallLlama(nn.Module):
    """`LlamaForCausalLM`'s forward, greedy `generate` and parameter names for a plain Llama, in plain torch.

    Called as `model(input_ids=..., attention_mask=..., output_attentions=..., output_hidden_states=...)`
    it returns `.logits`, `.hidden_states` (embeddings, each layer, the last one normed) and
    `.attentions` (eager attention, as transformers computes them when asked).
    """

    def __init__(self, config: SmallConfig):
        super().__init__()
        self.config = config
        self.model = Body(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_attn_implementation(self, name: str) -> None:
        """"sdpa" or "eager" (the one that returns attention weights), as transformers' method of the name."""
        self.config._attn_implementation = name

    def forward(self, input_ids, attention_mask=None, output_attentions: bool = False,
                output_hidden_states: bool = False, position_ids=None, cache: list | None = None, keep: int = 0):
        eager = self.config._attn_implementation == "eager"
        x = self.model.embed_tokens(input_ids)
        past = cache[0][0].shape[-2] if cache and cache[0] else 0
        if position_ids is None:
            position_ids = (torch.arange(x.shape[1], device=x.device) + past).unsqueeze(0)
        mask = _mask(attention_mask, x.shape[0], x.shape[1], past, eager, x.dtype)
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        states, attentions = [x], []
        for i, layer in enumerate(self.model.layers):
            x, weights = layer(x, cos, sin, mask, None if cache is None else cache[i], eager)
            states.append(x)
            attentions.append(weights)
        x = self.model.norm(x)
        states[-1] = x
        return SimpleNamespace(logits=self.lm_head(x[:, -keep:, :]),
                               hidden_states=tuple(states) if output_hidden_states else None,
                               attentions=tuple(attentions) if output_attentions else None)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, max_new_tokens: int, pad_token_id: int, eos_token_id: int,
                 do_sample: bool = False) -> torch.Tensor:
        """Greedy completions as transformers' `generate` makes them (a cache; finished rows padded)."""
        assert not do_sample, "SmallLlama generates greedily"
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        cache = [[] for _ in self.model.layers]
        unfinished = torch.ones(input_ids.shape[0], dtype=torch.long)
        ids, step, limit = input_ids, input_ids, input_ids.shape[1] + max_new_tokens
        while True:
            logits = self(input_ids=step, attention_mask=attention_mask, position_ids=positions, cache=cache,
                          keep=1).logits
            token = torch.argmax(logits[:, -1].to(copy=True, dtype=torch.float32), dim=-1)
            token = token * unfinished + pad_token_id * (1 - unfinished)
            ids = torch.cat([ids, token[:, None]], dim=-1)
            unfinished = unfinished & ~((token == eos_token_id) | (ids.shape[1] >= limit))
            if unfinished.max() == 0:
                return ids
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
            positions, step = positions[..., -1:] + 1, token[:, None]


def _mask(attention_mask, batch: int, length: int, past: int, eager: bool, dtype):
    """transformers' causal mask for sdpa (None where is_causal suffices) or eager (0 / the dtype's minimum)."""
    padding = None if attention_mask is None else attention_mask.bool()
    if not eager and (length == 1 or past == 0) and (padding is None or bool(padding.all())):
        return None
    kv = torch.arange(past + length)
    allowed = (kv[None, None, None, :] <= (torch.arange(length) + past)[None, None, :, None])
    if padding is not None:
        allowed = allowed & padding[:, None, None, :]
    allowed = allowed.expand(batch, -1, length, past + length)
    return torch.where(allowed, torch.zeros((), dtype=dtype), torch.finfo(dtype).min) if eager else allowed


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return x
    batch, heads, length, dim = x.shape
    return x[:, :, None, :, :].expand(batch, heads, groups, length, dim).reshape(batch, heads * groups, length, dim)
