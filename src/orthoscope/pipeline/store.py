"""Per-matrix results written atomically as they finish, so a killed run resumes.

Layout under OUT:
    parts/<post>/<matrix>.json    one row (or a skip reason) + the run key
    spectra/<post>/<matrix>.npz   singular values and binned ratio curves
The .npz is written before the .json, and each through a temporary file renamed
into place, so a .json that parses and carries the same key means "done".
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def safe_name(name: str) -> str:
    """A file name for a matrix name (`a.b:q` -> `a.b_q`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


class RunStore:
    """Results of one run: on disk under `out`, or in memory when `out` is None."""

    def __init__(self, out: Path | None):
        self.out = out
        self._memory: dict[tuple[str, str], dict] = {}

    def _part(self, post: str, name: str) -> Path:
        return self.out / "parts" / safe_name(post) / f"{safe_name(name)}.json"

    def spectra_path(self, post: str, name: str) -> Path:
        return self.out / "spectra" / safe_name(post) / f"{safe_name(name)}.npz"

    def load(self, post: str, name: str, key: dict) -> dict | None:
        """The stored record if it is complete and was made with the same key."""
        if self.out is None:
            return self._memory.get((post, name))
        try:
            record = json.loads(self._part(post, name).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return record if record.get("key") == key else None

    def save(self, post: str, name: str, key: dict, record: dict, arrays: dict | None) -> None:
        record = {**record, "key": key}
        if self.out is None:
            self._memory[(post, name)] = record
            return
        if arrays is not None:
            atomic_write(self.spectra_path(post, name), lambda tmp: _save_npz(tmp, arrays))
        write_text(self._part(post, name), json.dumps(record))


def _save_npz(path: Path, arrays: dict) -> None:
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
