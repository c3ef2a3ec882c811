"""Reading checkpoints lazily: a local folder, a Hugging Face hub id, one tensor at a time.

>>> from orthoscope.sources import open_checkpoint
>>> ckpt = open_checkpoint("./base")                  # doctest: +SKIP
>>> ckpt.shape("model.layers.0.self_attn.q_proj.weight")  # doctest: +SKIP
(896, 896)
"""

from orthoscope.sources.checkpoint import Checkpoint, open_checkpoint

__all__ = ["Checkpoint", "open_checkpoint"]
