"""`litezoo cache list|clear`: see every decode cache, clear by dataset, age or all; never a cache being built."""

from __future__ import annotations

import calendar
import errno
import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litezoo.cli.main import main as cli_main
from litezoo.data import cache as cache_mod
from litezoo.data import open_dataset


def folder(root: Path, n: int = 3, side: int = 8) -> Path:
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for cls in ("x", "y"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def listing(capsys, cache: Path) -> dict:
    assert cli_main(["cache", "list", "--cache-dir", str(cache), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def two_datasets(tmp_path):
    cache = tmp_path / "c"
    a, b = folder(tmp_path / "a"), folder(tmp_path / "b", n=2)
    for root in (a, b):
        open_dataset(root, "train", cache_dir=cache)
        open_dataset(root, "test", cache_dir=cache)
    return a, b, cache


def test_list_shows_every_cache(two_datasets, capsys):
    a, b, cache = two_datasets
    got = listing(capsys, cache)
    images = [c for c in got["caches"] if c["kind"] == "images"]
    assert sorted((c["dataset"], c["split"], c["images"], c["stored_size"]) for c in images) == [
        (str(a.resolve()), "test", 6, 8), (str(a.resolve()), "train", 6, 8),
        (str(b.resolve()), "test", 4, 8), (str(b.resolve()), "train", 4, 8)]
    for c in images:
        assert c["bytes"] == Path(c["path"]).stat().st_size
        assert abs(time.time() - calendar.timegm(time.strptime(c["last_used"], "%Y-%m-%dT%H:%M:%SZ"))) < 600
    assert got["total_bytes"] == sum(c["bytes"] for c in got["caches"])
    assert cli_main(["cache", "list", "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert str(a.resolve()) in text and "train" in text and "6 file(s)" in text  # 4 image caches, 2 stats files


def test_clear_by_dataset_path_keeps_the_others(two_datasets, capsys):
    a, b, cache = two_datasets
    assert cli_main(["cache", "clear", str(a), "--cache-dir", str(cache), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {r["dataset"] for r in result["removed"]} == {str(a.resolve())} and result["kept"] == []
    assert result["freed_bytes"] == sum(r["bytes"] for r in result["removed"]) > 0
    left = {c["dataset"] for c in listing(capsys, cache)["caches"]}
    assert left == {str(b.resolve())}
    assert open_dataset(a, cache_dir=cache).decoded  # cleared: rebuilt from the images when next needed
    assert not open_dataset(b, cache_dir=cache).decoded
    # a folder holding datasets (e.g. the parent of cifar-10-batches-py) selects the caches of all inside it
    assert cli_main(["cache", "clear", str(a.parent), "--cache-dir", str(cache), "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)["removed"]
    assert {r["dataset"] for r in removed} == {str(a.resolve()), str(b.resolve())}
    assert listing(capsys, cache)["caches"] == []
    # but not a folder inside a dataset
    open_dataset(a, cache_dir=cache)
    assert cli_main(["cache", "clear", str(a / "train"), "--cache-dir", str(cache)]) == 2
    assert "no cache of" in capsys.readouterr().err


def test_clear_older_than_uses_last_use(two_datasets, capsys):
    a, b, cache = two_datasets
    month_ago = time.time() - 30 * 86400
    for c in listing(capsys, cache)["caches"]:  # a's files were last used a month ago
        if c["dataset"] == str(a.resolve()):
            target = Path(c["path"])
            stamp = cache_mod._stamp_path(target)
            os.utime(stamp if stamp.exists() else target, (month_ago, month_ago))
    assert cli_main(["cache", "clear", "--older-than", "7", "--cache-dir", str(cache), "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)["removed"]
    assert removed and {r["dataset"] for r in removed} == {str(a.resolve())}
    open_dataset(b, cache_dir=cache)  # using a cache makes it recent
    assert cli_main(["cache", "clear", "--older-than", "1", "--cache-dir", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == []


def test_clear_all_but_not_a_cache_being_built(two_datasets, capsys):
    a, b, cache = two_datasets
    slot = next(Path(c["path"]) for c in listing(capsys, cache)["caches"] if c["kind"] == "images")
    unfinished = slot.with_name(slot.name + ".tmp-999-abcd")  # a build in progress holds the slot lock
    unfinished.write_bytes(b"LZCACHE1")
    with open(slot.with_name(slot.name + ".lock"), "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        assert cli_main(["cache", "clear", "--all", "--cache-dir", str(cache), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
    kept = {Path(k["path"]) for k in result["kept"]}
    assert kept == {slot, unfinished} and all("being built" in k["why"] for k in result["kept"])
    assert slot.exists() and unfinished.exists()
    # once no build is running, the leftover of a dead build goes too
    assert cli_main(["cache", "clear", "--all", "--cache-dir", str(cache)]) == 0
    assert "removed 2 file(s)" in capsys.readouterr().out
    assert [c for c in listing(capsys, cache)["caches"]] == []


def test_clear_usage_errors(two_datasets, capsys, tmp_path):
    a, b, cache = two_datasets
    for argv in (["cache", "clear"], ["cache", "clear", "--all", str(a)], ["cache", "clear", "--older-than", "-1"]):
        assert cli_main(argv + ["--cache-dir", str(cache)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert cli_main(["cache", "clear", str(tmp_path / "nope"), "--cache-dir", str(cache)]) == 2
    assert "no cache of" in capsys.readouterr().err
    assert len(listing(capsys, cache)["caches"]) == 6  # nothing was removed by a refused command


def test_empty_cache_folder(tmp_path, capsys):
    assert cli_main(["cache", "list", "--cache-dir", str(tmp_path / "none")]) == 0
    assert "no decoded-image caches" in capsys.readouterr().out


def test_cli_full_disk_exits_1_naming_the_path(tmp_path, capsys, monkeypatch):
    root = folder(tmp_path / "ds")

    def enospc(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_mod, "_preallocate", enospc)
    assert cli_main(["data", "info", str(root), "--cache-dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "no space left for the image cache" in err and str(tmp_path / "c" / "decoded") in err
    assert err.count("\n") == 1


def test_caches_of_an_older_version_are_listed_as_outdated(tmp_path, capsys):
    decoded = tmp_path / "c" / "decoded"
    decoded.mkdir(parents=True)
    old = decoded / "ds-train-32px-0123456789.lzc"  # the previous format: no CRC in its tail
    old.write_bytes(b"LZCACHE1" + b"\0" * 5000 + b'{"n":1}' + (7).to_bytes(8, "little") + b"LZCEND01")
    junk = decoded / "junk-train-32px-0123456789.lzc"
    junk.write_bytes(b"not a cache at all")
    kinds = {Path(c["path"]).name: c["kind"] for c in listing(capsys, tmp_path / "c")["caches"]}
    assert kinds == {old.name: "outdated", junk.name: "unreadable"}
    assert cli_main(["cache", "clear", "--all", "--cache-dir", str(tmp_path / "c")]) == 0
    assert not old.exists() and not junk.exists()
