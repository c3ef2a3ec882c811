"""Small file helpers shared by every writer: atomic writes and injective file names.

The run folder's layout and resume records live in `orthoscope.pipeline.runfolder`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_KEPT = 160  # longer names are cut and hashed: `.<name>.json.<8>.tmp` must fit in 255 bytes


def safe_name(name: str) -> str:
    """A file name for a matrix or post name, distinct for distinct names.

    Names made only of letters, digits, `.`, `_` and `-` (and not starting with
    a dot, at most MAX_KEPT characters) are kept; others have each other character
    replaced by `_`, are cut to 120 characters, and get a short hash of the original
    appended after a `~` (a character no kept name holds), so `a b` and `a_b` never
    share a file, and a file name (with its suffix and the temporary name of its
    write) stays under the file systems' 255 bytes.

    >>> safe_name("model.layers.0.q_proj.weight")
    'model.layers.0.q_proj.weight'
    >>> safe_name("a b") != safe_name("a_b") == "a_b"
    True
    >>> safe_name("a:b")
    'a_b~1a2ed37ca1'
    >>> len(safe_name("w" * 250))
    131
    """
    if name and not _UNSAFE.search(name) and not name.startswith(".") and len(name) <= MAX_KEPT:
        return name
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()
    return f"{_UNSAFE.sub('_', name)[:120]}~{digest}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read where Linux shows it (setting it to read it would, for a moment, be every
    thread's: the local executor's lanes write cache entries while the run folder is written)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """`atomic_write` of a text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text))
