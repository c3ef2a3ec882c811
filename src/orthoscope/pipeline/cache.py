"""Base-SVD cache on disk: the factors of a matrix, keyed by a hash of its bytes.

The key is the 128-bit XXH3 hash of the tensor's dtype, shape and raw bytes (not its
file or tensor name), plus the SVD dtype: a base analysed against a second post
model, in a second run, or under another name is decomposed once. Entries are
safetensors files written through a temporary file and renamed into place, so
a killed run or two workers writing the same entry never leave a torn file.

The size limit is kept without thrashing: an entry is stored only if room can
be made by evicting entries last used before the run started (least recently
used first; `protect_since`, shared by every worker of a run). A model larger
than the limit therefore caches its first matrices and keeps them, instead of
each matrix evicting the one before it. A process rescans the folder only when
its own running total nears the limit (not on every write), so processes writing
at the same time can overshoot the limit by what the others wrote meanwhile. A cache the process cannot
write (read-only shared storage, a full disk) still serves hits: failed writes
count as not stored; a write that fails for want of space (an OSError, or the
SafetensorError the bindings raise for it) stops further writes for this process:
the run goes on without caching.

One cache may serve jobs on several threads at once (the local executor's lanes): the
running total and eviction are kept under a lock, the hash a job hands to `key` is the
calling thread's own, and each thread also counts its own hits, misses and entries not
stored (`thread_counts`), so a job's counts are its own however many run beside it.
Two lanes on matrices of identical bytes at once both miss and both decompose (a lookup
does not wait for a write under way); the entry then written twice holds the same factors.

The cache only ever removes what it wrote, whatever folder it is pointed at: entries
are files named `<32 hex>-<dtype>-svd-vN.safetensors` in a folder named by their first
two digits, and removal (`clear`, eviction) happens only in a folder holding the
`CACHEDIR.TAG` the cache writes beside its first entry. A model's weights, a link or a
folder under another name is never touched. Temporary files of a write killed midway
are counted and removed once an hour old.

Every entry carries a 64-bit XXH3 checksum of its factors in its metadata, verified
on read: a damaged entry (flipped bits, length intact) is a miss and is replaced.
Both hashes guard against accidents (a changed or corrupted tensor), not against
someone who crafts collisions: XXH3 is not cryptographic, and a cache folder is as
trusted as the code that reads it. XXH3 reads about 28 GB/s here, SHA-256 1.5 GB/s:
hashing a 4864x896 bfloat16 matrix costs 0.3 ms instead of 6.

>>> cache = SVDCache("/tmp/orthoscope-svd")            # doctest: +SKIP
>>> key = cache.key(W_b, torch.float32)                # doctest: +SKIP
>>> cache.get(key) or cache.put(key, svd(W_b, torch.float32))  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import xxhash
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from orthoscope.errors import OrthoscopeError
from orthoscope.kernels import SVD
from orthoscope.pipeline.store import atomic_write

DIR_ENV = "ORTHOSCOPE_CACHE_DIR"
LIMIT_ENV = "ORTHOSCOPE_CACHE_LIMIT"
DEFAULT_LIMIT_GIB = 20.0
# bump when the stored factors would differ (routine, orientation, layout)
FORMAT = "svd-v4"  # v2: entries carry a checksum; v3: CRC-32 instead of SHA-256; v4: XXH3 key and checksum
SUFFIX = ".safetensors"
ENTRY = re.compile(r"([0-9a-f]{2})[0-9a-f]{30}-[a-z0-9_]+-svd-v\d+\.safetensors")  # what this cache names its entries
PARTIAL = re.compile(r"\.([0-9a-f]{32}-[a-z0-9_]+-svd-v\d+\.safetensors)\.[^/]*\.tmp")  # an unfinished write
PARTIAL_AGE = 3600.0  # seconds after which an unfinished write is a leftover of a killed process
TAG = "CACHEDIR.TAG"  # https://bford.info/cachedir/: also tells backup tools to skip the folder
TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
            "# This folder is an orthoscope base-SVD cache: `orthoscope cache clear` removes its entries.\n")
MAX_LIMIT_BYTES = 1 << 62  # a limit beyond any disk (--cache-limit 1e308 means "no limit")


def default_dir() -> Path:
    """$ORTHOSCOPE_CACHE_DIR, else $XDG_CACHE_HOME/orthoscope/svd, else ~/.cache/orthoscope/svd."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "orthoscope" / "svd"


def default_limit_gib() -> float:
    """$ORTHOSCOPE_CACHE_LIMIT in GiB, else 20."""
    text = os.environ.get(LIMIT_ENV)
    if not text:
        return DEFAULT_LIMIT_GIB
    try:
        value = float(text)
    except ValueError:
        raise OrthoscopeError(f"{LIMIT_ENV}={text!r} is not a number of GiB") from None
    if not math.isfinite(value) or value < 0:
        raise OrthoscopeError(f"{LIMIT_ENV}={text!r} must be a finite number of GiB >= 0")
    return value


def tensor_digest(W: torch.Tensor) -> str:
    """128-bit XXH3 of dtype, shape and the raw bytes of `W` (32 hex digits).

    >>> tensor_digest(torch.zeros(2, 2)) == tensor_digest(torch.zeros(2, 2))
    True
    >>> tensor_digest(torch.zeros(2, 2)) == tensor_digest(torch.zeros(4, 1))
    False
    """
    h = xxhash.xxh3_128(f"{W.dtype}|{tuple(W.shape)}|".encode())
    h.update(_bytes(W))
    return h.hexdigest()


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """64-bit XXH3 (hex) over the names, dtypes, shapes and bytes of `tensors` (what a cache entry must still hold).

    >>> checksum({"S": torch.ones(3)}) == checksum({"S": torch.ones(3)})
    True
    >>> checksum({"S": torch.ones(3)}) == checksum({"S": torch.tensor([1.0, 1.0, 1.0 + 2**-20])})
    False
    """
    h = xxhash.xxh3_64()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_bytes(t))
    return h.hexdigest()


def _bytes(W: torch.Tensor) -> memoryview:
    """The raw bytes of `W` (on the CPU, contiguous) without a copy when it is already so."""
    return memoryview(W.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())


@dataclass(frozen=True)
class CacheEntry:
    """One cached factorisation: its file, size in bytes and last use (epoch seconds)."""

    path: Path
    size: int
    last_used: float


class SVDCache:
    """Base-matrix SVDs on disk under `folder`, at most `limit_gib` GiB in all."""

    def __init__(self, folder: str | Path | None = None, limit_gib: float | None = None,
                 protect_since: float | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_dir()
        _check_folder(self.folder)
        gib = limit_gib if limit_gib is not None else default_limit_gib()
        self.limit = int(min(gib * 2**30, MAX_LIMIT_BYTES))
        self.protect_since = protect_since if protect_since is not None else time.time()
        self._used: set[Path] = set()  # entries this process read or wrote: never evicted by it
        self._size: int | None = None  # bytes in the folder as of the last scan plus our writes since
        self.hits = self.misses = self.not_stored = 0
        self.writable = True  # False after a write failed for want of space or rights
        self._lock = threading.Lock()  # the counters, the running total and eviction
        self._mine = threading.local()  # per thread: its counters and the hash `remember`ed for its next `key`

    def key(self, W: torch.Tensor, dtype: torch.dtype) -> str:
        """The entry name for the SVD of `W` computed in `dtype`."""
        known, self._mine.known = getattr(self._mine, "known", None), None
        digest = known[1] if known is not None and known[0] is W else tensor_digest(W)
        return f"{digest}-{str(dtype).removeprefix('torch.')}-{FORMAT}"

    def remember(self, W: torch.Tensor, digest: str) -> None:
        """`tensor_digest(W)` computed by the caller: this thread's next `key(W, ...)` uses it instead of hashing."""
        self._mine.known = (W, digest)

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)
        counts = self._thread_counts()
        counts[counter] += 1

    def _thread_counts(self) -> dict:
        if not hasattr(self._mine, "counts"):
            self._mine.counts = {"hits": 0, "misses": 0, "not_stored": 0}
        return self._mine.counts

    def thread_counts(self) -> dict:
        """Hits, misses and entries not stored by the calling thread (a job's own: the difference around it).

        >>> cache = SVDCache("/nonexistent/orthoscope-doctest")
        >>> cache.get("0" * 32 + "-float32-" + FORMAT) is None, cache.thread_counts()
        (True, {'hits': 0, 'misses': 1, 'not_stored': 0})
        """
        return dict(self._thread_counts())

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str, device: torch.device | str = "cpu") -> SVD | None:
        """The cached factors, or None (a missing or unreadable entry counts as a miss)."""
        path = self._path(key)
        try:
            with safe_open(str(path), framework="pt") as handle:
                stored = (handle.metadata() or {}).get("checksum")
                tensors = {name: handle.get_tensor(name) for name in ("U", "S", "V")}
            factors = SVD(U=tensors["U"], S=tensors["S"], V=tensors["V"])
            if stored != checksum(tensors):
                raise ValueError("checksum mismatch")
        except (SafetensorError, KeyError, ValueError, RuntimeError):
            _remove(path)  # torn, damaged or foreign file: recompute and rewrite
            self._count("misses")
            return None
        except OSError:  # absent, or unreadable here: a miss, the file is left alone
            self._count("misses")
            return None
        _touch(path)
        self._used.add(path)
        self._count("hits")
        return SVD(*(t.to(device) for t in (factors.U, factors.S, factors.V)))

    def put(self, key: str, factors: SVD) -> bool:
        """Store `factors` if the limit allows after evicting stale entries; False if not stored."""
        tensors = {"U": factors.U, "S": factors.S, "V": factors.V}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        with self._lock:  # room is made and the size counted before the write: two threads never share it
            room = self.writable and self._make_room(size)
            if room:
                self._size += size
        if not room:
            self._count("not_stored")
            return False
        cpu = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
        metadata = {"format": FORMAT, "checksum": checksum(cpu)}
        try:
            self._tag()
            atomic_write(self._path(key), lambda tmp: save_file(cpu, str(tmp), metadata=metadata))
        except (OSError, SafetensorError):  # read-only or full storage: the run goes on without caching
            self.writable = False
            with self._lock:
                self._size -= size
            self._count("not_stored")
            return False
        self._used.add(self._path(key))
        return True

    def _tag(self) -> None:
        """Write CACHEDIR.TAG (once): the mark that lets this cache remove entries in its folder."""
        if not self.tagged():
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.folder / TAG, lambda tmp: tmp.write_text(TAG_TEXT))

    def tagged(self) -> bool:
        """True if the folder holds the CACHEDIR.TAG this cache writes (a regular file, not a link)."""
        path = self.folder / TAG
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False
            with path.open("rb") as handle:
                return handle.read(len(TAG_TEXT) + 1).decode("utf-8", "replace") == TAG_TEXT
        except OSError:
            return False

    def _make_room(self, size: int) -> bool:
        # the folder is scanned only when the running total says the limit is near, not on every put
        if self._size is not None and self._size + size <= self.limit:
            return True
        entries = self.entries()
        self._size = sum(e.size for e in entries)
        if not self.tagged():  # not a folder this cache marked: nothing in it is removed
            return self._size + size <= self.limit
        for leftover in self.partials(stale_only=True):
            _remove(leftover.path)
        stale = [e for e in entries if e.path not in self._used and e.last_used < self.protect_since]
        for entry in stale:  # entries() is oldest use first
            if self._size + size <= self.limit:
                break
            if _remove(entry.path):
                self._size -= entry.size
        return self._size + size <= self.limit

    def entries(self) -> list[CacheEntry]:
        """Every entry this cache wrote (its naming; regular files, not links), oldest use first."""
        return sorted(self._scan(lambda name, sub: (m := ENTRY.fullmatch(name)) is not None and m.group(1) == sub),
                      key=lambda e: e.last_used)

    def partials(self, stale_only: bool = False) -> list[CacheEntry]:
        """Temporary files of unfinished writes (of a killed process when older than PARTIAL_AGE)."""
        found = self._scan(lambda name, sub: (m := PARTIAL.fullmatch(name)) is not None and m.group(1)[:2] == sub)
        cutoff = time.time() - PARTIAL_AGE
        return [e for e in found if not stale_only or e.last_used < cutoff]

    def _scan(self, ours) -> list[CacheEntry]:
        found = []
        try:
            subfolders = [d for d in os.scandir(self.folder) if re.fullmatch(r"[0-9a-f]{2}", d.name)
                          and d.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        for sub in subfolders:
            try:
                items = list(os.scandir(sub.path))
            except OSError:  # removed meanwhile, or unreadable
                continue
            for item in items:
                if not ours(item.name, sub.name):
                    continue
                try:
                    info = item.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed by another process meanwhile
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append(CacheEntry(Path(item.path), info.st_size, info.st_mtime))
        return found

    def clear(self) -> tuple[int, int]:
        """Delete every entry this cache wrote (and leftovers of killed writes); returns (entries, bytes) removed.

        A folder without the cache's CACHEDIR.TAG is left alone (one line says so); an entry
        that cannot be removed (read-only storage) is one line, not a success.
        """
        entries, partials = self.entries(), self.partials(stale_only=True)
        if not entries and not partials:
            return 0, 0
        if not self.tagged():
            raise OrthoscopeError(f"{self.folder} holds files named like cache entries but no {TAG} written by "
                                  "orthoscope: nothing removed (delete them by hand if they are yours to delete)")
        failed: list[OSError] = []
        removed = [e for e in entries + partials if _remove(e.path, failed)]
        if failed:
            raise OrthoscopeError(f"cannot remove {len(failed)} of {len(entries) + len(partials)} entries from "
                                  f"{self.folder}: {failed[0].strerror or failed[0]} "
                                  f"({len(removed)} removed)")
        done = [e for e in removed if e in entries]
        return len(done), sum(e.size for e in done)

    def stats(self) -> dict:
        """Hits, misses and entries not stored (limit reached) in this process."""
        return {"folder": str(self.folder), "limit_gib": round(self.limit / 2**30, 3),
                "hits": self.hits, "misses": self.misses, "not_stored": self.not_stored}


def _remove(path: Path, failed: list | None = None) -> bool:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:  # read-only storage, or open elsewhere on Windows
        if failed is not None:
            failed.append(error)
        return False
    return True


def _check_folder(folder: Path) -> None:
    """Refuse a cache folder that is a file, a link loop or cannot be looked at; an absent one is fine."""
    try:
        mode = os.stat(folder).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        if error.errno == errno.ENOTDIR:
            raise OrthoscopeError(f"cache folder {folder}: a part of the path is a file, not a folder") from None
        raise OrthoscopeError(f"cache folder {folder}: {error.strerror or error}") from None
    if not stat.S_ISDIR(mode):
        raise OrthoscopeError(f"cache folder {folder} is not a folder: choose another --cache-dir")


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only shared cache still serves hits
        pass
