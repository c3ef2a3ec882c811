"""Linear-algebra kernels: thin SVDs in the fast orientation, on CPU or CUDA; top singular values by block Krylov."""

from orthoscope.kernels.krylov import krylov_values
from orthoscope.kernels.svd import (
    SVD,
    resolve_device,
    singular_values,
    svd,
    svdvals,
    top_subspaces,
    values_and_top_left,
)

__all__ = ["SVD", "krylov_values", "resolve_device", "singular_values", "svd", "svdvals", "top_subspaces",
           "values_and_top_left"]
