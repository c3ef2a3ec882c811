"""A tiny Llama (from_config), its saved base, and a few training steps with checkpoints saved on the way."""

import pandas as pd
import pytest
import torch

from orthoscope.metrics.registry import COLUMNS


def tiny_llama(seed: int = 0, dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).to(dtype)


def train_steps(model, steps: int, seed: int = 0, lr: float = 1e-2) -> None:
    """Plain AdamW steps on random tokens (enough to move every projection)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        ids = torch.randint(0, 64, (2, 16), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture(scope="session")
def base_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitor") / "base"
    tiny_llama().save_pretrained(folder)
    return folder


def numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The table's registered numeric columns, rows in (post, name) order: what two runs must agree on."""
    table = table.sort_values(["post", "name"]).reset_index(drop=True)
    return table[[c for c in COLUMNS if c in table]].astype(float)
