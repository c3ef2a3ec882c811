"""The base-SVD cache, with the base's factors also held in memory between the monitor's steps.

The base does not change during training: its factors are computed (or read from the
disk cache, `pipeline/cache.py`) at the first step and kept here, up to `hold_gib`;
beyond that the disk cache serves them. Without a disk cache (`cache=False`) only the
held factors are reused. Like `SVDCache`, it may be used from several threads at once (a
worker's drain at close, `lanes.py`): the held factors are taken and added under their own
lock, the disk's reads and writes outside it.

>>> from orthoscope.kernels import svd
>>> cache = HeldSVDCache(None, hold_gib=1.0, disk=False)
>>> W = torch.eye(3)
>>> key = cache.key(W, torch.float32)
>>> cache.get(key) is None and cache.put(key, svd(W, torch.float32, torch.device("cpu")))
True
>>> cache.get(key).S.tolist(), cache.stats()["hits"]
([1.0, 1.0, 1.0], 1)
"""

from __future__ import annotations

import threading

import torch

from orthoscope.kernels import SVD
from orthoscope.pipeline.cache import SVDCache


class HeldSVDCache(SVDCache):
    """`SVDCache` with a bounded in-memory layer in front of the disk (which `disk=False` leaves out)."""

    def __init__(self, folder: str | None = None, limit_gib: float | None = None, protect_since: float | None = None,
                 *, hold_gib: float = 2.0, disk: bool = True):
        super().__init__(folder, limit_gib if disk else 0.0, protect_since)
        self.disk = disk
        self.writable = disk and self.writable
        self.hold_bytes = int(hold_gib * 2**30)
        self.held: dict[str, SVD] = {}
        self.held_bytes = 0
        self._held_lock = threading.Lock()  # `held` and `held_bytes`, taken and added by several lanes

    def get(self, key: str, device: torch.device | str = "cpu") -> SVD | None:
        with self._held_lock:
            factors = self.held.get(key)
        if factors is not None:
            self._count("hits")  # the process's count and this thread's (what a job reports)
            return SVD(factors.U.to(device), factors.S.to(device), factors.V.to(device))
        if not self.disk:
            self._count("misses")
            return None
        factors = super().get(key, device)
        if factors is not None:
            self._hold(key, factors)
        return factors

    def put(self, key: str, factors: SVD) -> bool:
        held = self._hold(key, factors)
        return super().put(key, factors) if self.disk else held

    def _hold(self, key: str, factors: SVD) -> bool:
        size = sum(t.numel() * t.element_size() for t in (factors.U, factors.S, factors.V))
        with self._held_lock:
            if key in self.held or self.held_bytes + size > self.hold_bytes:
                return key in self.held
            self.held[key] = SVD(factors.U.detach(), factors.S.detach(), factors.V.detach())
            self.held_bytes += size
            return True
