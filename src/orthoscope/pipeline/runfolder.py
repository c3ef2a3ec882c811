"""The run folder: its layout, its lock, what it was made from, and the resumable per-matrix records.

Layout under OUT:
    run.json                          what the run was made from (inputs and settings)
    parts/<post>/<matrix>.json        one row (or a skip reason) + settings key + content hashes
    spectra/<post>/<matrix>.npz       singular values and binned ratio curves
    pairs/<matrix>.json               update_cos of every pair of posts for that matrix + content hashes
    metrics.parquet, metrics.csv      the table
    update_cos.parquet                post against post (two posts or more)
    summary.json                      aggregates, notes, verdicts
    report.html, figures/             written by the report
    experiment/                       written by the intervention experiment

Every file is written through a temporary file renamed into place, so a .json
that parses and carries the same key and hashes means "done". A second process
writing into the same folder is refused (an exclusive `flock` on `.orthoscope.lock`).

>>> import tempfile
>>> folder = RunFolder(Path(tempfile.mkdtemp()) / "run")
>>> with folder.open({"base": "b", "posts": {"p": "p"}, "settings": {}}):
...     folder.save_part("p", "w", {"seed": 0}, {"metrics": {"a_geo": 1.0}, "hashes": {"base": "x", "post": "y"}})
>>> folder.load_part("p", "w", {"seed": 0})["metrics"]
{'a_geo': 1.0}
>>> folder.load_part("p", "w", {"seed": 1}) is None
True
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.store import atomic_write, safe_name, write_text

MANIFEST = "run.json"
LOCK = ".orthoscope.lock"
# every entry a run writes: what --overwrite clears (nothing else in the folder is touched)
LAYOUT = (MANIFEST, "parts", "spectra", "pairs", "metrics.parquet", "metrics.csv", "update_cos.parquet",
          "summary.json", "report.html", "figures", "experiment", "eval.json")


class RunFolder:
    """One run folder on disk (see the module docstring for its layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ layout
    @property
    def metrics_parquet(self) -> Path:
        return self.path / "metrics.parquet"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def summary_json(self) -> Path:
        return self.path / "summary.json"

    @property
    def update_cos_parquet(self) -> Path:
        return self.path / "update_cos.parquet"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def experiment(self) -> Path:
        return self.path / "experiment"

    def part_path(self, post: str, name: str) -> Path:
        return self.path / "parts" / safe_name(post) / f"{safe_name(name)}.json"

    def spectra_path(self, post: str, name: str) -> Path:
        return self.path / "spectra" / safe_name(post) / f"{safe_name(name)}.npz"

    def pairs_path(self, name: str) -> Path:
        return self.path / "pairs" / f"{safe_name(name)}.json"

    # ------------------------------------------------------------------ opening
    @contextlib.contextmanager
    def open(self, identity: dict, overwrite: bool = False) -> Iterator["RunFolder"]:
        """Create the folder, hold its lock, and check it holds nothing of another run.

        A folder holding a run of other inputs or settings (its run.json differs from
        `identity`) is refused unless `overwrite`, which clears what runs write there.
        """
        self._create()
        with self.locked():
            self._claim(identity, overwrite)
            yield self

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise OrthoscopeError(f"output {self.path} is a file, not a folder: choose another --output")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OrthoscopeError(f"cannot create run folder {self.path}: {_why(error)}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the folder for this process; a second holder is refused with one line."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unlocked
            yield
            return
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise OrthoscopeError(f"run folder {self.path} is not writable: {_why(error)}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OrthoscopeError(f"cannot lock run folder {self.path}: {_why(error)}") from None
                raise OrthoscopeError(f"run folder {self.path} is in use by another orthoscope process; "
                                      f"wait for it to finish or choose another --output") from None
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            os.close(fd)  # releases the lock

    def _claim(self, identity: dict, overwrite: bool) -> None:
        stored = self.identity()
        held = [name for name in LAYOUT if (self.path / name).exists()]
        if overwrite:
            self.clear()
        elif stored is not None and stored != identity:
            raise OrthoscopeError(f"{self.path} holds a run of other inputs or settings "
                                  f"({_difference(stored, identity)}); use --overwrite to replace it, "
                                  f"or choose another --output")
        elif stored is None and held:
            raise OrthoscopeError(f"{self.path} holds files of an unknown run ({', '.join(held[:3])}); "
                                  f"use --overwrite to replace them, or choose another --output")
        self._write(self.path / MANIFEST, lambda p: write_text(p, json.dumps(identity, indent=2, sort_keys=True)))

    def identity(self) -> dict | None:
        """What the run stored here was made from (run.json), or None."""
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def clear(self) -> None:
        """Remove everything a run writes here (other files are left alone)."""
        for name in LAYOUT:
            target = self.path / name
            try:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            except OSError as error:
                raise OrthoscopeError(f"cannot clear {target}: {_why(error)}") from None

    # ------------------------------------------------------------------ records
    def load_part(self, post: str, name: str, key: dict) -> dict | None:
        """The stored record of (post, matrix) if complete and made with the same settings `key`."""
        return _load_keyed(self.part_path(post, name), key)

    def save_part(self, post: str, name: str, key: dict, record: dict, arrays: dict | None = None) -> None:
        """Store one result: its spectra (if any) first, then the record that marks it done."""
        if arrays is not None:
            self._write(self.spectra_path(post, name), lambda p: atomic_write(p, lambda tmp: _save_npz(tmp, arrays)))
        self._write(self.part_path(post, name), lambda p: write_text(p, json.dumps({**record, "key": key})))

    def load_pairs(self, name: str, key: dict) -> dict | None:
        """The stored post-against-post record of one matrix (made with the same `key`), or None."""
        return _load_keyed(self.pairs_path(name), key)

    def save_pairs(self, name: str, key: dict, record: dict) -> None:
        self._write(self.pairs_path(name), lambda p: write_text(p, json.dumps({**record, "key": key})))

    # ------------------------------------------------------------------ reading a finished run
    def read_table(self):
        """metrics.parquet as a DataFrame; a missing or damaged file is one line naming it."""
        import pandas as pd

        if not self.metrics_parquet.is_file():
            raise OrthoscopeError(f"no metrics.parquet in {self.path} "
                                  f"(run `orthoscope compare ... -o {self.path}` first)")
        try:
            return pd.read_parquet(self.metrics_parquet)
        except Exception as error:  # pyarrow raises several types for a truncated or foreign file
            raise OrthoscopeError(f"{self.metrics_parquet} is damaged ({type(error).__name__}); "
                                  f"rerun compare into {self.path} to rewrite it") from None

    def read_summary(self) -> dict:
        """summary.json as a dict; a missing or damaged file is one line naming it."""
        try:
            summary = json.loads(self.summary_json.read_text())
        except FileNotFoundError:
            raise OrthoscopeError(f"no summary.json in {self.path}") from None
        except (OSError, ValueError) as error:
            raise OrthoscopeError(f"{self.summary_json} is damaged ({type(error).__name__}); "
                                  f"rerun compare into {self.path} to rewrite it") from None
        if not isinstance(summary, dict):
            raise OrthoscopeError(f"{self.summary_json} is damaged (not a JSON object)")
        return summary

    # ------------------------------------------------------------------ outputs
    def write_table(self, table, update_cos=None) -> None:
        """metrics.parquet and metrics.csv (and update_cos.parquet when given)."""
        self._write(self.metrics_parquet, lambda p: atomic_write(p, lambda tmp: table.to_parquet(tmp, index=False)))
        self._write(self.metrics_csv, lambda p: atomic_write(p, lambda tmp: table.to_csv(tmp, index=False)))
        if update_cos is not None:
            self._write(self.update_cos_parquet,
                        lambda p: atomic_write(p, lambda tmp: update_cos.to_parquet(tmp, index=False)))

    def write_summary(self, summary: dict) -> None:
        self._write(self.summary_json, lambda p: write_text(p, json.dumps(summary, indent=2)))

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        """Run `write(path)`, turning a full disk or a refused write into one line."""
        try:
            write(path)
        except OSError as error:
            raise OrthoscopeError(f"cannot write {path}: {_why(error)}") from None


class MemoryRun:
    """The same records as RunFolder, kept in memory (compare without an output folder)."""

    path = None

    def __init__(self) -> None:
        self._parts: dict[tuple[str, str], dict] = {}
        self._pairs: dict[str, dict] = {}

    @contextlib.contextmanager
    def open(self, identity: dict, overwrite: bool = False) -> Iterator["MemoryRun"]:
        yield self

    def load_part(self, post: str, name: str, key: dict) -> dict | None:
        return self._parts.get((post, name))

    def save_part(self, post: str, name: str, key: dict, record: dict, arrays: dict | None = None) -> None:
        self._parts[(post, name)] = record

    def load_pairs(self, name: str, key: dict) -> dict | None:
        return self._pairs.get(name)

    def save_pairs(self, name: str, key: dict, record: dict) -> None:
        self._pairs[name] = record

    def write_table(self, table, update_cos=None) -> None:
        pass

    def write_summary(self, summary: dict) -> None:
        pass


def _load_keyed(path: Path, key: dict) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def _save_npz(path: Path, arrays: dict) -> None:
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _difference(stored: dict, identity: dict) -> str:
    """The first field that differs, for the refusal message.

    >>> _difference({"posts": {"a": "/x"}}, {"posts": {"b": "/x"}})
    "posts: ['a'] there, ['b'] now"
    """
    for name in sorted(set(stored) | set(identity)):
        old, new = stored.get(name), identity.get(name)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            if set(old) != set(new):
                return f"{name}: {sorted(old)} there, {sorted(new)} now"
            sub = next(k for k in sorted(old) if old[k] != new[k])
            return f"{name}.{sub}: {old[sub]!r} there, {new[sub]!r} now"
        return f"{name}: {old!r} there, {new!r} now"
    return "unknown difference"
