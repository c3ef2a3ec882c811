"""From tensor names to analysed matrices: (layer, kind) and how to cut fused tensors.

>>> from orthoscope.architectures import find_matrices
>>> refs, notes = find_matrices(ckpt)                 # doctest: +SKIP
>>> refs[0].name, refs[0].layer, refs[0].kind          # doctest: +SKIP
('model.layers.0.self_attn.q_proj.weight', 0, 'q')
"""

from orthoscope.architectures.maps import FAMILIES, KINDS
from orthoscope.architectures.matrices import MatrixRef, find_matrices, prefetch_matrix, read_matrix, write_matrix

__all__ = ["FAMILIES", "KINDS", "MatrixRef", "find_matrices", "prefetch_matrix", "read_matrix", "write_matrix"]
