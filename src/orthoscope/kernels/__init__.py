"""Linear-algebra kernels: thin SVDs in the fast orientation, on CPU or CUDA."""

from orthoscope.kernels.svd import SVD, resolve_device, singular_values, svd, svdvals, top_subspaces

__all__ = ["SVD", "resolve_device", "singular_values", "svd", "svdvals", "top_subspaces"]
