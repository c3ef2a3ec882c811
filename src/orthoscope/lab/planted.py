"""A planted pair: a tiny Qwen2 base and a post copy whose matrices follow the paper's framework.

In each analysed matrix of the post model, W_p = U_b Q (a S_b) Q^T V_b^T with a
random orthogonal Q near the identity and a per-kind factor a (o_proj scaled most,
as the paper reports), so every metric has a known answer.
"""

from __future__ import annotations

from pathlib import Path

import torch

KIND_SCALE = {"q": 1.05, "k": 1.05, "v": 1.08, "o": 1.2, "gate": 1.06, "up": 1.06, "down": 1.07}
SUFFIX_KIND = {
    "self_attn.q_proj.weight": "q", "self_attn.k_proj.weight": "k", "self_attn.v_proj.weight": "v",
    "self_attn.o_proj.weight": "o", "mlp.gate_proj.weight": "gate", "mlp.up_proj.weight": "up",
    "mlp.down_proj.weight": "down",
}


def near_identity_rotation(r: int, angle: float, generator: torch.Generator) -> torch.Tensor:
    """expm(A - A^T) with A Gaussian of scale `angle`: a random orthogonal Q close to I."""
    A = torch.randn(r, r, generator=generator, dtype=torch.float64) * angle
    return torch.linalg.matrix_exp(A - A.T)


def plant_consistent(W_b: torch.Tensor, a: float, angle: float, generator: torch.Generator) -> torch.Tensor:
    """W_p = U_b Q (a S_b) Q^T V_b^T: the paper's framework, exactly (float64)."""
    U, S, Vh = torch.linalg.svd(W_b.double(), full_matrices=False)
    Q = near_identity_rotation(S.numel(), angle, generator)
    return U @ Q @ torch.diag(a * S) @ Q.T @ Vh


def tiny_qwen2_config():
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=True,
    )


def build_planted_pair(folder: str | Path, seed: int = 0, angle: float = 0.02) -> tuple[Path, Path]:
    """Write `folder/base` and `folder/post` (sharded safetensors); returns both paths.

    >>> base, post = build_planted_pair("/tmp/planted")   # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    folder = Path(folder)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_qwen2_config())
    model.save_pretrained(folder / "base", max_shard_size="100KB")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            kind = next((k for s, k in SUFFIX_KIND.items() if name.endswith(s)), None)
            if kind is not None:
                param.copy_(plant_consistent(param, KIND_SCALE[kind], angle, generator).to(param.dtype))
    model.save_pretrained(folder / "post", max_shard_size="100KB")
    return folder / "base", folder / "post"
