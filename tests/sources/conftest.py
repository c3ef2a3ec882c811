import pytest
import torch


def tiny_llama(seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    settings = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    config = LlamaConfig(**{**settings, **overrides})
    return LlamaForCausalLM(config).eval()


def save_lora(root, name: str, model_factory, **lora):
    """Wrap a fresh model in a random LoRA, save the adapter to root/name and the merged model to
    root/name-merged; returns both folders."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(model_factory(), LoraConfig(init_lora_weights=False, **lora))
    peft_model.save_pretrained(root / name)
    peft_model.merge_and_unload().save_pretrained(root / f"{name}-merged")
    return root / name, root / f"{name}-merged"


@pytest.fixture(scope="session")
def lora(tmp_path_factory):
    """A tiny llama base folder and LoRA adapters of it, each with its merged model (peft's own merge)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("lora")
    tiny_llama().save_pretrained(root / "base")
    made = {"base": root / "base"}
    made["plain"] = save_lora(root, "plain", tiny_llama, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    made["rslora"] = save_lora(root, "rslora", tiny_llama, r=4, lora_alpha=16, use_rslora=True,
                               target_modules=["q_proj", "v_proj", "down_proj"],
                               rank_pattern={"layers.1.self_attn.q_proj": 2}, alpha_pattern={"v_proj": 4})
    made["saved"] = save_lora(root, "saved", tiny_llama, r=2, target_modules=["o_proj", "embed_tokens"],
                              modules_to_save=["lm_head"])
    return made
