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


# ---- updates planted in the base frame: W_p = W_b + U_b D V_b^T with a chosen D (SPEC: pairing null)

def consistent_delta(r: int, generator: torch.Generator) -> torch.Tensor:
    """A symmetric r x r D (a consistent rotation to first order): z_pair far above 5.

    >>> D = consistent_delta(4, torch.Generator().manual_seed(0))
    >>> bool(torch.equal(D, D.T))
    True
    """
    G = torch.randn(r, r, generator=generator, dtype=torch.float64)
    return (G + G.T) / 2


def magnitude_only_delta(r: int, generator: torch.Generator, decay: float = 4.0) -> torch.Tensor:
    """|D_ij| = c_i c_j with c_i = exp(-i / decay) (concentrated on the top directions) and independent signs.

    sym_frac sits well above the Gaussian null (the diagonal carries a large share)
    while left and right rotations are unrelated: |z_pair| small.
    """
    c = torch.exp(-torch.arange(r, dtype=torch.float64) / decay)
    signs = torch.randint(0, 2, (r, r), generator=generator).double() * 2 - 1
    return signs * torch.outer(c, c)


def isotropic_delta(r: int, generator: torch.Generator) -> torch.Tensor:
    """An i.i.d. Gaussian D: what noise of any size looks like in the base frame."""
    return torch.randn(r, r, generator=generator, dtype=torch.float64)


def plant_update(W_b: torch.Tensor, D: torch.Tensor, size: float = 0.05) -> torch.Tensor:
    """W_p = W_b + U_b D' V_b^T (float64) with D' = D scaled so that ||dW||_F = size ||W_b||_F.

    >>> W = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    >>> W_p = plant_update(W, torch.eye(4, dtype=torch.float64), 0.1)
    >>> round((torch.linalg.matrix_norm(W_p - W) / torch.linalg.matrix_norm(W)).item(), 12)
    0.1
    """
    W_b = W_b.double()
    U, S, Vh = torch.linalg.svd(W_b, full_matrices=False)
    D = D.double() * (size * torch.linalg.matrix_norm(W_b) / torch.linalg.matrix_norm(D))
    return W_b + U @ D @ Vh


PLANTS = ("consistent", "magnitude", "isotropic", "lora", "self")


def build_planted_family(folder: str | Path, seed: int = 0, size: float = 0.02) -> dict[str, Path]:
    """A tiny Qwen2 base and five posts with known truth (issue: trust), each written as safetensors.

    - consistent: every analysed matrix gets W_b + U_b D V_b^T with a symmetric D (same rotation
      on both sides): the only post whose rotations agree beyond the pairing null;
    - magnitude: |D| concentrated on the top directions with independent signs: sym_frac above the
      Gaussian null, nothing beyond the pairing null;
    - isotropic: an i.i.d. Gaussian D;
    - lora: only q and v change, by a rank-4 product B A (the others are bit-identical);
    - self: the base itself, written again.

    >>> paths = build_planted_family("/tmp/planted-family")   # doctest: +SKIP
    >>> sorted(paths)                                          # doctest: +SKIP
    ['base', 'consistent', 'isotropic', 'lora', 'magnitude', 'self']
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    folder = Path(folder)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_qwen2_config())
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    paths = {"base": folder / "base"}
    model.save_pretrained(paths["base"])
    deltas = {"consistent": consistent_delta, "magnitude": magnitude_only_delta, "isotropic": isotropic_delta}
    for plant in PLANTS:
        generator = torch.Generator().manual_seed(seed * 1000 + PLANTS.index(plant))
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(base[name])
                kind = next((k for s, k in SUFFIX_KIND.items() if name.endswith(s)), None)
                if kind is None or plant == "self":
                    continue
                if plant in deltas:
                    r = min(param.shape)
                    param.copy_(plant_update(base[name], deltas[plant](r, generator), size).to(param.dtype))
                elif plant == "lora" and kind in ("q", "v"):
                    B = torch.randn(param.shape[0], 4, generator=generator, dtype=torch.float64)
                    A = torch.randn(4, param.shape[1], generator=generator, dtype=torch.float64)
                    scale = size * torch.linalg.matrix_norm(base[name].double()) / torch.linalg.matrix_norm(B @ A)
                    update = B @ A * scale
                    param.copy_((base[name].double() + update).to(param.dtype))
        paths[plant] = folder / plant
        model.save_pretrained(paths[plant])
    return paths
