"""A model reference: where a checkpoint's weights are, small and picklable.

`Checkpoint.reference()` makes one; `open_checkpoint(ref)` opens the same weights again,
in this process or another (a Ray worker): the local path when it exists there, else
the hub id at the exact commit the first process resolved. The fingerprint taken when
the reference was made is checked on reopening, so a worker never reads other weights.

>>> import pickle
>>> ref = ModelRef("./base", "/models/base")
>>> pickle.loads(pickle.dumps(ref)) == ref
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRef:
    spec: str  # as the user named it (labels and messages)
    path: str  # absolute local folder or weights file
    hub_id: str | None = None
    revision: str | None = None  # the revision the user asked for (or the commit)
    commit: str | None = None  # the hub snapshot the path holds
    base: ModelRef | None = None  # an adapter's base model
    fingerprint: str | None = None
