"""The per-matrix random streams: seeded by (run seed, matrix name), so a matrix's draws do not depend
on the order matrices are measured in or on which executor runs them."""

from __future__ import annotations

import zlib

import numpy as np
import torch


def matrix_seed(seed: int, name: str) -> int:
    """One 64-bit seed from the run's seed and the matrix name (the Gaussian null, dW's randomized Krylov).

    >>> matrix_seed(0, "w") == matrix_seed(0, "w") != matrix_seed(1, "w")
    True
    """
    return seed * 1_000_003 + zlib.crc32(name.encode())


def null_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, matrix name): the same null whatever the order."""
    return torch.Generator().manual_seed(matrix_seed(seed, name))


def pair_rng(seed: int, name: str) -> np.random.Generator:
    """The sign draws of the pairing null, seeded by (seed, matrix name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])
