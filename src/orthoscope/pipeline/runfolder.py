"""The run folder: its layout, its lock, what it was made from, and the resumable per-matrix records.

Layout under OUT:
    run.json                          what the run was made from (inputs and settings) and the
                                      folder's schema version (`pipeline/schema.py` reads older ones)
    parts/<post>/<matrix>.json        one row (or a skip reason) + settings key + content hashes
    spectra/<post>/<matrix>.npz       singular values and binned ratio curves
    pairs/<matrix>.json               update_cos of every pair of posts for that matrix + content hashes
    metrics.parquet, metrics.csv      the table
    update_cos.parquet                post against post (two posts or more)
    summary.json                      aggregates, notes, verdicts
    report.html, figures/<name>.png   written by the report (`adding`, `write_page`, `write_figure`)
    eval.json                         the evaluation of the run's models (the demo: `write_evaluation`)
    experiment/                       written by the intervention experiment (`ExperimentFolder`):
        conditions/<label>.json       one evaluated condition + its key (the resume marker)
        experiment.parquet/.csv       one row per condition; claims.csv; experiment.png

compare, monitor, experiment, report, summary and demo all go through this module: the layout,
the lock, atomic writes, keyed resume records and damage-checked reading live here and nowhere
else. `RunFolder` (compare, monitor, report, summary, demo) and `ExperimentFolder` share one base
for the file-not-folder refusal, creation, the lock and one-line write refusals. What writes into a
finished run (the report, the demo's evaluation) holds the same lock as the run (`adding`).

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
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.schema import SCHEMA, check_schema, upgrade
from orthoscope.pipeline.store import atomic_write, safe_name

MANIFEST = "run.json"
LOCK = ".orthoscope.lock"
REPORT, FIGURES, EVALUATION = "report.html", "figures", "eval.json"
# every entry a run writes: what --overwrite clears (nothing else in the folder is touched)
LAYOUT = (MANIFEST, "parts", "spectra", "pairs", "metrics.parquet", "metrics.csv", "update_cos.parquet",
          "summary.json", REPORT, FIGURES, "experiment", EVALUATION)


class _Folder:
    """What every folder orthoscope writes shares: the file-not-folder refusal, creation, the lock,
    and atomic writes whose failures (full disk, read-only) are one line.

    >>> import tempfile
    >>> folder = _Folder(Path(tempfile.mkdtemp()) / "out")
    >>> folder._create()
    >>> with folder.locked():
    ...     folder._write_json(folder.path / "a.json", {"x": 1})
    >>> (folder.path / "a.json").read_text()
    '{"x": 1}'
    """

    noun = "output folder"  # how refusals name it

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def check(self) -> None:
        """Refuse an output that is a file (callers check before any work is done)."""
        if self.path.is_symlink() and not self.path.exists():  # a dangling link or a link loop
            try:
                os.stat(self.path)
                why = "a link that leads nowhere"
            except OSError as error:
                why = "a link that leads nowhere" if error.errno == errno.ENOENT else _why(error)
            raise OrthoscopeError(f"output {self.path} is {why}: choose another --output")
        if self.path.exists() and not self.path.is_dir():
            raise OrthoscopeError(f"output {self.path} is a file, not a folder: choose another --output")

    def _create(self) -> None:
        self.check()
        with _refused(f"cannot create {self.noun} {self.path}"):
            self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the folder for this process; a second holder is refused with one line."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unlocked
            yield
            return
        lock = self.path / LOCK
        if lock.is_symlink():  # opening it would create or lock its target, wherever that is
            raise OrthoscopeError(f"{self.noun} {self.path}: its lock file {LOCK} is a symbolic link; "
                                  f"remove it and rerun")
        with _refused(f"{self.noun} {self.path} is not writable"):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OrthoscopeError(f"cannot lock {self.noun} {self.path}: {_why(error)}") from None
                raise OrthoscopeError(f"{self.noun} {self.path} is in use by another orthoscope process; "
                                      f"wait for it to finish or choose another --output") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        """`write(tmp)` into a temporary file renamed over `path`; a full disk or a refused write is one line."""
        with _refused(f"cannot write {path}"):
            atomic_write(path, write)

    def _write_json(self, path: Path, value: dict, **dumps: Any) -> None:
        """`value` as JSON (`dumps`: json.dumps options), written as `_write` does."""
        self._write(path, lambda tmp: tmp.write_text(json.dumps(value, **dumps)))


def verdicts_damage(verdicts) -> str | None:
    """What in a summary's verdicts is not the shape the terminal and the report read (each post's `overall` and
    `kinds` groups, each with its `scaling` and `rotation` parts and `n_used`), or None.

    >>> group = {"scaling": {}, "rotation": {}, "n_used": 3}
    >>> verdicts_damage({"posts": {"p": {"overall": group, "kinds": {"q": group}}}}) is None
    True
    >>> verdicts_damage({"posts": {"p": {"overall": group, "kinds": {"q": {"rotation": {}, "n_used": 3}}}}})
    "the verdicts of post 'p', kind 'q' lack 'scaling'"
    """
    posts = (verdicts or {}).get("posts") if isinstance(verdicts, dict) else None
    if not isinstance(posts, dict):
        return "its verdicts are not a mapping of posts"
    for post, entry in posts.items():
        kinds = entry.get("kinds") if isinstance(entry, dict) else None
        if not isinstance(kinds, dict) or not isinstance(entry.get("overall"), dict):
            return f"the verdicts of post {post!r} lack their groups"
        for where, group in [("overall", entry["overall"]), *((f"kind {k!r}", g) for k, g in kinds.items())]:
            if not isinstance(group, dict):
                return f"the verdicts of post {post!r}, {where} are not a mapping"
            for part in ("scaling", "rotation"):
                if not isinstance(group.get(part), dict):
                    return f"the verdicts of post {post!r}, {where} lack {part!r}"
    return None


class RunFolder(_Folder):
    """One run folder on disk (see the module docstring for its layout)."""

    noun = "run folder"

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
        return self.path / REPORT

    @property
    def evaluation_json(self) -> Path:
        return self.path / EVALUATION

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
    def open(self, identity: dict, overwrite: bool = False) -> Iterator[RunFolder]:
        """Create the folder, hold its lock, and check it holds nothing of another run.

        A folder holding a run of other inputs or settings (its run.json differs from
        `identity`) is refused unless `overwrite`, which clears what runs write there.
        """
        self._create()
        with self.locked():
            self._claim(identity, overwrite)
            yield self

    def _claim(self, identity: dict, overwrite: bool) -> None:
        stored = self.identity()
        held = [name for name in LAYOUT if (self.path / name).exists()]
        if not overwrite:
            check_schema(self.schema(), self.path)
        if overwrite:
            self.clear()
        elif stored is not None and stored != identity:
            raise OrthoscopeError(f"{self.path} holds a run of other inputs or settings "
                                  f"({_difference(stored, identity)}); use --overwrite to replace it, "
                                  f"or choose another --output")
        elif stored is None and held:
            raise OrthoscopeError(f"{self.path} holds files of an unknown run ({', '.join(held[:3])}); "
                                  f"use --overwrite to replace them, or choose another --output")
        self._write_json(self.path / MANIFEST, {**identity, "schema": SCHEMA}, indent=2, sort_keys=True)

    def identity(self) -> dict | None:
        """What the run stored here was made from (run.json without its `schema`), or None (absent, or not a
        JSON object)."""
        value = _read_json(self.path / MANIFEST)
        return {k: v for k, v in value.items() if k != "schema"} if isinstance(value, dict) else None

    def schema(self) -> int:
        """The folder's schema version (run.json's `schema`; 0 for a folder written before it was recorded)."""
        value = _read_json(self.path / MANIFEST)
        schema = value.get("schema") if isinstance(value, dict) else None
        return schema if isinstance(schema, int) and not isinstance(schema, bool) else 0

    def clear(self) -> None:
        """Remove everything a run writes here (other files are left alone)."""
        for name in LAYOUT:
            target = self.path / name
            with _refused(f"cannot clear {target}"):
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)

    # ------------------------------------------------------------------ records
    def load_part(self, post: str, name: str, key: dict) -> dict | None:
        """The stored record of (post, matrix) if complete and made with the same settings `key`."""
        return _load_keyed(self.part_path(post, name), key, one_of=("metrics", "skipped"))

    def save_part(self, post: str, name: str, key: dict, record: dict, arrays: dict | None = None) -> None:
        """Store one result: its spectra (if any) first, then the record that marks it done."""
        if arrays is not None:
            self._write(self.spectra_path(post, name), lambda tmp: _save_npz(tmp, arrays))
        self._write_json(self.part_path(post, name), {**record, "key": key})

    def load_pairs(self, name: str, key: dict) -> dict | None:
        """The stored post-against-post record of one matrix (made with the same `key`), or None."""
        return _load_keyed(self.pairs_path(name), key)

    def save_pairs(self, name: str, key: dict, record: dict) -> None:
        self._write_json(self.pairs_path(name), {**record, "key": key})

    # ------------------------------------------------------------------ reading a finished run
    def read_run(self):
        """(table, summary) in the current schema, whatever version wrote the folder: the one reader of a
        finished run (`pipeline/schema.upgrade`; verdicts computed where summary.json lacks them).

        A missing or damaged file is one line naming it; a folder of a newer orthoscope is refused.
        """
        schema = self.schema()
        check_schema(schema, self.path)
        table, summary = self.read_table(), self.read_summary(required=False)  # both checked first
        table, summary = upgrade(table, summary, schema)
        damage = verdicts_damage(summary.get("verdicts"))
        if damage:
            raise OrthoscopeError(f"{self.summary_json} is damaged ({damage}); rerun the command that wrote it")
        return table, summary

    def read_table(self):
        """metrics.parquet as a DataFrame; a missing or damaged file is one line naming it."""
        self._require_run()
        table = read_frame(self.metrics_parquet)
        if "post" not in table or "kind" not in table:
            raise OrthoscopeError(f"{self.metrics_parquet} is damaged (no post/kind columns); "
                                  f"rerun the command that wrote it")
        check_numeric(table, self.metrics_parquet)
        return table

    def read_summary(self, required: bool = True) -> dict:
        """summary.json as a dict ({} when absent and not `required`); a damaged file is one line naming it."""
        if not _present(self.summary_json):
            if required:
                raise OrthoscopeError(f"no summary.json in {self.path}")
            return {}
        return check_fields(read_record(self.summary_json), SUMMARY_FIELDS, self.summary_json)

    def read_update_cos(self):
        """update_cos.parquet (two posts or more), or None."""
        if not _present(self.update_cos_parquet):
            return None
        return check_numeric(read_frame(self.update_cos_parquet), self.update_cos_parquet)

    def read_evaluation(self) -> dict | None:
        """eval.json (a lab folder's evaluation), or None."""
        path = self.evaluation_json
        return check_fields(read_record(path), {}, path) or None if _present(path) else None

    def read_experiment(self):
        """The experiment table of this folder or of one of its subfolders (experiment/, ...), or None."""
        found = sorted(self.path.glob(ExperimentFolder.TABLE)) + sorted(self.path.glob(f"*/{ExperimentFolder.TABLE}"))
        return ExperimentFolder(found[0].parent).read_table() if found else None

    def read_spectra(self, post: str, name: str) -> dict[str, np.ndarray] | None:
        """The stored spectra of (post, matrix), or None; a damaged file is one line naming it."""
        path = self.spectra_path(post, name)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise _damaged(path, error) from None

    # ------------------------------------------------------------------ outputs
    def write_table(self, table, update_cos=None) -> None:
        """metrics.parquet and metrics.csv (and update_cos.parquet when given)."""
        self._write(self.metrics_parquet, lambda tmp: table.to_parquet(tmp, index=False))
        self._write(self.metrics_csv, lambda tmp: table.to_csv(tmp, index=False))
        if update_cos is not None:
            self._write(self.update_cos_parquet, lambda tmp: update_cos.to_parquet(tmp, index=False))

    def write_summary(self, summary: dict) -> None:
        self._write_json(self.summary_json, summary, indent=2)

    # ------------------------------------------------------------------ adding to a finished run
    @contextlib.contextmanager
    def adding(self) -> Iterator[RunFolder]:
        """Hold the run's lock while adding to a finished run (the report, an evaluation): a compare or
        another report writing here at the same time is refused. A folder without a run is one line.

        >>> import tempfile
        >>> with RunFolder(tempfile.mkdtemp()).adding():  # doctest: +ELLIPSIS
        ...     pass
        Traceback (most recent call last):
        orthoscope.errors.OrthoscopeError: no metrics.parquet in ... (run `orthoscope compare ... -o ...` first)
        """
        self.check()
        self._require_run()
        with self.locked():
            yield self

    def _require_run(self) -> None:
        if not _present(self.metrics_parquet):
            raise OrthoscopeError(f"no metrics.parquet in {self.path} "
                                  f"(run `orthoscope compare ... -o {self.path}` first)")

    def write_page(self, page: str) -> Path:
        """report.html (inside `adding`)."""
        self._write(self.report_html, lambda tmp: tmp.write_text(page))
        return self.report_html

    def write_figure(self, name: str, save: Callable[[Path], None]) -> Path:
        """figures/`name`, written by `save(tmp)` into a temporary file renamed into place (inside `adding`)."""
        path = self.path / FIGURES / safe_name(name)
        self._write(path, save)
        return path

    def write_evaluation(self, evaluation: dict) -> None:
        """eval.json: the evaluation of the run's models (inside `adding`)."""
        self._write_json(self.evaluation_json, evaluation, indent=2)


class MemoryRun:
    """The same records as RunFolder, kept in memory (compare without an output folder)."""

    path = None

    def __init__(self) -> None:
        self._parts: dict[tuple[str, str], dict] = {}
        self._pairs: dict[str, dict] = {}

    @contextlib.contextmanager
    def open(self, identity: dict, overwrite: bool = False) -> Iterator[MemoryRun]:
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


class ExperimentFolder(_Folder):
    """The intervention experiment's folder (standalone, or `<run>/experiment`): its layout, lock and records.

    >>> import tempfile
    >>> folder = ExperimentFolder(Path(tempfile.mkdtemp()) / "exp")
    >>> with folder.open():
    ...     folder.save_condition("post", {"version": 1}, {"condition": "post", "ppl": 5.0})
    >>> folder.load_condition("post", {"version": 1})
    {'condition': 'post', 'ppl': 5.0}
    >>> folder.load_condition("post", {"version": 2}) is None
    True
    """

    TABLE = "experiment.parquet"
    noun = "experiment folder"

    @contextlib.contextmanager
    def open(self) -> Iterator[ExperimentFolder]:
        """Create the folder and hold its lock (a second experiment writing here is refused)."""
        self._create()
        with self.locked():
            yield self

    @property
    def table_parquet(self) -> Path:
        return self.path / self.TABLE

    @property
    def plot(self) -> Path:
        return self.path / "experiment.png"

    def condition_path(self, label: str) -> Path:
        return self.path / "conditions" / f"{safe_name(label)}.json"

    def load_condition(self, label: str, key: dict) -> dict | None:
        """The finished condition `label` made with the same inputs and settings `key` (without its key), or None."""
        record = _load_keyed(self.condition_path(label), key)
        if record is not None:
            record.pop("key")
        return record

    def save_condition(self, label: str, key: dict, row: dict) -> None:
        self._write_json(self.condition_path(label), {**row, "key": key})

    def write_tables(self, table, claims) -> None:
        """experiment.parquet and .csv (one row per condition) and claims.csv, each written atomically."""
        self._write(self.table_parquet, lambda tmp: table.to_parquet(tmp, index=False))
        self._write(self.path / "experiment.csv", lambda tmp: table.to_csv(tmp, index=False))
        self._write(self.path / "claims.csv", lambda tmp: claims.to_csv(tmp, index=False))

    def read_table(self):
        """experiment.parquet, damage-checked (None when absent)."""
        if not self.table_parquet.is_file():
            return None
        return check_numeric(read_frame(self.table_parquet), self.table_parquet)


# columns of a run's tables that must hold numbers: every metric, and these
NUMERIC_COLUMNS = ("step", "layer", "expert", "rows", "cols", "update_cos", "scale", "t", "seconds", "ppl")
# summary.json fields and the JSON types they must have when present
SUMMARY_FIELDS = {"verdicts": dict, "notes": list, "settings": dict, "per_kind": dict, "cache": dict,
                  "inputs": dict, "posts": dict, "skipped": list, "matrices": int, "seconds": (int, float)}
MAX_RECORD_BYTES = 256 << 20  # a run's JSON files are small; a larger one is not ours


def read_frame(path: Path):
    """A parquet file of a run as a DataFrame; a truncated or foreign file is one line naming it."""
    import pandas as pd

    _regular(path)
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...: all mean "cannot read this file"
        raise _damaged(path, error) from None


def check_numeric(table, path: Path):
    """`table` if every metric column (and NUMERIC_COLUMNS) holds numbers or booleans; else one line naming it.

    >>> import pandas as pd
    >>> check_numeric(pd.DataFrame({"post": ["p"], "a_geo": ["0.5"]}), Path("m.parquet"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.OrthoscopeError: m.parquet is damaged (column 'a_geo' holds text, not numbers); rerun the ...
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    from orthoscope.metrics.registry import COLUMNS as METRIC_COLUMNS

    for column in table.columns:
        if column not in NUMERIC_COLUMNS and column not in METRIC_COLUMNS:
            continue
        values = table[column]
        if not (is_numeric_dtype(values) or is_bool_dtype(values) or values.isna().all()):
            raise OrthoscopeError(f"{path} is damaged (column {column!r} holds text, not numbers); "
                                  f"rerun the command that wrote it")
    return table


def check_fields(record: dict, fields: dict, path: Path) -> dict:
    """`record` if each of `fields` it holds has its JSON type; else one line naming the field.

    >>> check_fields({"verdicts": []}, SUMMARY_FIELDS, Path("summary.json"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.OrthoscopeError: summary.json is damaged ('verdicts' is a list, not a dict); rerun the command ...
    """
    for name, kind in fields.items():
        value = record.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else "number"
            raise OrthoscopeError(f"{path} is damaged ({name!r} is a {type(value).__name__}, not a {expected}); "
                                  f"rerun the command that wrote it")
    return record


def read_record(path: Path) -> dict:
    """A JSON object of a run; a corrupt file, or one that is not an object, is one line naming it."""
    _regular(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
        if len(raw) > MAX_RECORD_BYTES:
            raise ValueError(f"larger than {MAX_RECORD_BYTES >> 20} MiB")
        value = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _damaged(path, error) from None
    if not isinstance(value, dict):
        raise OrthoscopeError(f"{path} is damaged (not a JSON object); rerun the command that wrote it")
    return value


def _present(path: Path) -> bool:
    """Whether a run's file is there (a FIFO or a folder under its name counts: the reader refuses it)."""
    return path.exists() or path.is_symlink()


def _regular(path: Path) -> None:
    """Refuse a FIFO, a device or a folder where a run's file should be (opening a FIFO waits forever)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # absent or unreadable: the reader says so
    if not stat.S_ISREG(mode):
        raise OrthoscopeError(f"{path} is not a regular file; rerun the command that wrote it")


def _read_json(path: Path):
    """The JSON value in a run's file, or None (absent, unreadable, damaged or not a regular file)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
        with path.open("rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
        return json.loads(raw) if len(raw) <= MAX_RECORD_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None


def _damaged(path: Path, error: BaseException) -> OrthoscopeError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    reason = reason.replace(f"'{path}'", "the file").replace(str(path), "the file")  # named once, in front
    if len(reason) > 120:
        reason = reason[:120].rsplit(" ", 1)[0] + " ..."
    return OrthoscopeError(f"{path} is damaged ({type(error).__name__}: {reason}); rerun the command that wrote it")


@contextlib.contextmanager
def _refused(what: str) -> Iterator[None]:
    """An OSError inside becomes one line: `what: <reason>`."""
    try:
        yield
    except OSError as error:
        raise OrthoscopeError(f"{what}: {_why(error)}") from None


# fields of a stored record and the JSON types they must have; a record that breaks one is not done
RECORD_FIELDS = {"metrics": dict, "hashes": dict, "pairs": dict, "skipped": str}


def _load_keyed(path: Path, key: dict, one_of: tuple[str, ...] = ()) -> dict | None:
    """The record at `path` if it is a JSON object made with `key` whose fields have their types; else None
    (absent, torn, damaged: the work is done again)."""
    record = _read_json(path)
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    for name, kind in RECORD_FIELDS.items():
        if name in record and record[name] is not None and not isinstance(record[name], kind):
            return None
    if one_of and not any(isinstance(record.get(name), RECORD_FIELDS[name]) for name in one_of):
        return None
    from orthoscope.pipeline.summary import NOTE  # the one text entry of a row

    metrics = record.get("metrics")
    if isinstance(metrics, dict) and (any(isinstance(v, (str, list, dict)) for k, v in metrics.items() if k != NOTE)
                                      or not isinstance(metrics.get(NOTE, ""), str)):
        return None
    return record


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
