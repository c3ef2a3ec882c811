"""Reading checkpoints lazily, one tensor at a time, whatever holds them.

A model is named by a folder, a weights file, a hub id (`owner/name@rev`), a GGUF file,
a PEFT LoRA adapter (read against its base), an `nn.Module` or a state dict. One
module per format (`safetensors_files`, `torch_files`, `gguf`, `adapter`, `memory`,
`hub`), chosen by `registry`; `Checkpoint.reference()` gives a picklable `ModelRef`
that reopens the same weights in another process.

>>> import torch
>>> ckpt = open_checkpoint({"model.layers.0.self_attn.q_proj.weight": torch.eye(3)})
>>> ckpt.shape("model.layers.0.self_attn.q_proj.weight")
(3, 3)
"""

from orthoscope.sources.checkpoint import Checkpoint, open_checkpoint
from orthoscope.sources.reference import ModelRef

__all__ = ["Checkpoint", "ModelRef", "open_checkpoint"]
