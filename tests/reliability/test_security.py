"""Hostile inputs that try to reach outside what orthoscope may touch (issue 26, security).

Side files that link out of the model folder, a cache pointed at a folder of someone's
weights, hub revisions and refs that name a path, a lock file that is a link, and names
that carry rich markup or ANSI escapes. Each ends in a correct result or one line and
exit 2, and nothing outside is read, written or deleted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from orthoscope.lab.shipped import shipped_family
from orthoscope.pipeline import cache as cache_module
from orthoscope.pipeline.cache import TAG, SVDCache
from tests.reliability.in_process import cli, one_line

ENTRY = f"{'ab' * 16}-float32-{cache_module.FORMAT}.safetensors"  # named as the cache names its entries


def foreign_folder(tmp: Path) -> dict[Path, bytes]:
    """A folder of someone's weights, one file named exactly like a cache entry; returns every file's bytes."""
    folder = tmp / "weights"
    (folder / "ab").mkdir(parents=True)
    save_file({"w": torch.ones(2)}, folder / "model.safetensors")
    save_file({"w": torch.ones(3)}, folder / "ab" / "model.safetensors")
    save_file({"w": torch.ones(4)}, folder / "ab" / ENTRY)
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def unchanged(files: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == data for p, data in files.items())


# ---------------------------------------------------------------- side files


def intervene(post: Path, out: Path) -> tuple[int, str]:
    return cli("intervene", shipped_family()["base"], post, "-o", out, "--op", "break-left", "--layers", "0",
               "--kinds", "q", "-q")


def test_intervene_does_not_copy_a_side_file_that_links_outside_the_model(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$hash")
    post = shutil.copytree(shipped_family()["instruct"], tmp_path / "post")
    (post / "special_tokens_map.json").symlink_to(secret)
    (post / "added_tokens.json").symlink_to("/etc/hostname")
    (post / "vocab.json").symlink_to("tokenizer.json")  # a link inside the folder is a side file like any other
    os.mkfifo(post / "merges.txt")  # a FIFO would make the copy wait forever
    code, output = intervene(post, tmp_path / "out")
    assert code == 0, output
    copied = {p.name for p in (tmp_path / "out").iterdir()}
    assert not {"special_tokens_map.json", "added_tokens.json", "merges.txt"} & copied
    assert (tmp_path / "out" / "vocab.json").read_bytes() == (post / "tokenizer.json").read_bytes()
    assert not any("root:" in p.read_text(errors="replace") for p in (tmp_path / "out").iterdir() if p.is_file()
                   and p.suffix == ".json")


# ---------------------------------------------------------------- cache


def test_cache_clear_pointed_at_a_folder_of_weights_removes_nothing(tmp_path):
    files = foreign_folder(tmp_path)
    code, output = cli("cache", "clear", "--cache-dir", tmp_path / "weights")
    one_line(code, output, "no CACHEDIR.TAG written by orthoscope", "nothing removed")
    assert unchanged(files)


def test_cache_clear_removes_only_what_the_cache_wrote(planted, tmp_path):
    foreign_folder(tmp_path)
    folder = tmp_path / "weights"
    (files_outside := tmp_path / "outside.safetensors").write_bytes(b"keep")
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q",
                       "--cache-dir", folder)
    assert code == 0, output
    ours = SVDCache(folder).entries()
    assert len(ours) == 3 and (folder / TAG).is_file()  # two base SVDs and the planted foreign ENTRY look-alike
    (folder / "cd").mkdir(exist_ok=True)
    link = folder / "cd" / f"{'cd' * 16}-float32-{cache_module.FORMAT}.safetensors"
    link.symlink_to(files_outside)  # named like an entry, but a link: not something the cache wrote
    code, output = cli("cache", "clear", "--cache-dir", folder)
    assert code == 0 and "removed 3 entries" in output, output
    assert (folder / "model.safetensors").is_file() and (folder / "ab" / "model.safetensors").is_file()
    assert files_outside.read_bytes() == b"keep" and link.is_symlink()
    assert SVDCache(folder).entries() == []


def test_cache_eviction_under_a_small_limit_never_touches_foreign_files(planted, tmp_path):
    files = foreign_folder(tmp_path)
    folder = tmp_path / "weights"
    old = time.time() - 86400
    for path in files:
        os.utime(path, (old, old))
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q,k",
                       "--cache-dir", folder, "--cache-limit", "0.00005")
    assert code == 0, output
    assert unchanged({p: d for p, d in files.items() if p.name != ENTRY})  # only a file named as an entry may go


def test_a_leftover_of_a_killed_cache_write_is_counted_and_cleared(planted, tmp_path):
    folder = tmp_path / "cache"
    assert cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q",
               "--cache-dir", folder)[0] == 0
    leftover = folder / "ab" / f".{ENTRY}.x1y2z3.tmp"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_bytes(b"\0" * 1000)
    old = time.time() - 2 * cache_module.PARTIAL_AGE
    os.utime(leftover, (old, old))
    code, output = cli("cache", "ls", "--cache-dir", folder)
    assert code == 0 and "1 unfinished writes" in output, output
    code, output = cli("cache", "clear", "--cache-dir", folder)
    assert code == 0 and "removed 2 entries" in output, output
    assert not leftover.exists()


def test_cache_clear_on_read_only_storage_is_not_a_success(planted, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    assert cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q",
               "--cache-dir", folder)[0] == 0

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    code, output = cli("cache", "clear", "--cache-dir", folder)
    one_line(code, output, "cannot remove 2 of 2 entries", "Read-only file system")


@pytest.mark.parametrize("command", ["compare", "ls", "clear"])
def test_a_file_or_a_link_loop_as_cache_dir_is_one_line(planted, tmp_path, command):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for folder, needle in ((tmp_path / "file", "is not a folder"), (tmp_path / "loop", "symbolic links")):
        args = (["compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q"]
                if command == "compare" else ["cache", command])
        code, output = cli(*args, "--cache-dir", folder)
        one_line(code, output, str(folder), needle)


def test_a_cache_limit_beyond_any_disk_means_no_limit(planted, tmp_path):
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--kinds", "q",
                       "--cache-limit", "1e308")
    assert code == 0, output


# ---------------------------------------------------------------- hub


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub").mkdir()
    return tmp_path / "hub"


@pytest.mark.parametrize("revision", ["../../outside", "/etc", "main/../../x", "a\\..\\b\\..\\.."])
def test_a_hub_revision_that_is_a_path_is_refused(planted, tmp_path, hub_cache, revision):
    code, output = cli("compare", planted[0], f"lab/tiny@{revision}", "-o", tmp_path / "r", "-q", "--no-report")
    one_line(code, output, "is not a branch, tag or commit name")


def test_a_hub_refs_file_holding_a_path_is_refused(planted, tmp_path, hub_cache):
    repo = hub_cache / "models--lab--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots").mkdir()
    (repo / "refs" / "main").write_text("../../../outside")
    shutil.copytree(planted[1], tmp_path / "outside")  # where the ref points: a model the cache never held
    code, output = cli("compare", planted[0], "lab/tiny", "-o", tmp_path / "r", "-q", "--no-report")
    one_line(code, output, "lab/tiny", "outside the HF cache")
    assert not (tmp_path / "r" / "metrics.parquet").exists()


def test_revision_on_a_local_path_is_refused(planted, tmp_path):
    code, output = cli("compare", *planted, "-o", tmp_path / "r", "-q", "--no-report", "--revision", "v2")
    one_line(code, output, "--revision 'v2' applies to hub ids", str(planted[0]))


# ---------------------------------------------------------------- run folder lock


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_never_created(planted, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    target = tmp_path / "elsewhere" / "created"
    (tmp_path / "elsewhere").mkdir()
    (out / ".orthoscope.lock").symlink_to(target)
    code, output = cli("compare", *planted, "-o", out, "-q", "--no-report")
    one_line(code, output, "lock file .orthoscope.lock is a symbolic link")
    assert not target.exists()


# ---------------------------------------------------------------- markup and escapes


def test_markup_in_a_folder_name_is_shown_as_written(planted, tmp_path):
    post = shutil.copytree(planted[1], tmp_path / "[red]post[/]")
    config = json.loads((post / "config.json").read_text())
    (post / "config.json").write_text(json.dumps({**config, "model_type": "mystery[/]"}))
    base = shutil.copytree(planted[0], tmp_path / "[bold]base")
    (base / "config.json").write_text(json.dumps({**config, "model_type": "mystery[/]"}))
    code, output = cli("compare", base, post, "-o", tmp_path / "r", "--no-report", "--kinds", "self_attn.q_proj")
    assert code == 0, output
    assert "[bold]base" in output and "mystery[/]" in output


def test_ansi_escapes_in_tensor_names_never_reach_the_terminal(planted, tmp_path):
    post = shutil.copytree(planted[1], tmp_path / "post")
    base = shutil.copytree(planted[0], tmp_path / "base")
    for folder in (base, post):
        save_file({"model.layers.0.self_attn.\x1b[2J\x1b]0;owned\x07x.weight": torch.ones(4, 4)},
                  folder / "extra.safetensors")
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        index["weight_map"]["model.layers.0.self_attn.\x1b[2J\x1b]0;owned\x07x.weight"] = "extra.safetensors"
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    code, output = cli("compare", base, post, "-o", tmp_path / "r", "--no-report", "--kinds", "q")
    assert code == 0, output
    assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b[2J" in output  # the name is shown, escaped
