"""kzoo.cache: roots and layers, lookups that write nothing, atomic writes, locks, partials."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import platformdirs
import pytest

from kzoo.download import cache
from kzoo.errors import DownloadError, KzooError


def tree(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    )


def test_cache_root_prefers_argument_then_env_then_platform_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_HOME", str(tmp_path / "env"))
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache.cache_root() == tmp_path / "env"
    monkeypatch.delenv("KZOO_HOME")
    assert cache.cache_root() == Path(platformdirs.user_cache_dir("kzoo", appauthor=False))
    monkeypatch.setenv("KZOO_HOME", "~/kz")
    assert cache.cache_root() == Path.home() / "kz"


def test_cache_root_does_not_create_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_HOME", str(tmp_path / "not-yet"))
    cache.cache_root()
    assert not (tmp_path / "not-yet").exists()


def test_readonly_layers_split_on_pathsep_and_skip_empty_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_READONLY_CACHES", os.pathsep.join(["", "/a/b", "", str(tmp_path)]))
    assert cache.readonly_layers() == [Path("/a/b"), tmp_path]
    monkeypatch.delenv("KZOO_READONLY_CACHES")
    assert cache.readonly_layers() == []


def test_find_looks_in_the_writable_root_then_each_layer_in_order(tmp_path, monkeypatch):
    home, first, second = tmp_path / "home", tmp_path / "l1", tmp_path / "l2"
    for base, text in ((first, "first"), (second, "second")):
        (base / "raw").mkdir(parents=True)
        (base / "raw" / "f.bin").write_text(text)
    monkeypatch.setenv("KZOO_HOME", str(home))
    monkeypatch.setenv("KZOO_READONLY_CACHES", os.pathsep.join([str(first), str(second)]))

    assert cache.find("raw/f.bin") == first / "raw" / "f.bin"
    assert cache.find("raw/f.bin", size=len("second")) == second / "raw" / "f.bin"
    assert cache.find("raw/missing.bin") is None

    (home / "raw").mkdir(parents=True)
    (home / "raw" / "f.bin").write_text("home")
    assert cache.find("raw/f.bin") == home / "raw" / "f.bin"


def test_find_writes_nothing(tmp_path, monkeypatch):
    layer = tmp_path / "layer"
    (layer / "raw").mkdir(parents=True)
    (layer / "raw" / "f.bin").write_text("x")
    monkeypatch.setenv("KZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KZOO_READONLY_CACHES", str(layer))
    before = tree(tmp_path)
    assert cache.find("raw/f.bin") is not None
    assert cache.find("raw/g.bin") is None
    assert tree(tmp_path) == before


@pytest.mark.parametrize("relpath", ["../escape.bin", "/etc/passwd", "a/../../b", ""])
def test_paths_that_leave_the_cache_are_refused(relpath):
    with pytest.raises(KzooError, match="must be relative"):
        cache.find(relpath)
    with pytest.raises(KzooError, match="must be relative"):
        cache.writable_path(relpath)


def test_writable_path_creates_the_folder_and_leaves_no_probe(tmp_path):
    path = cache.writable_path("raw/vgg19/top.h5", root=tmp_path)
    assert path == tmp_path / "raw" / "vgg19" / "top.h5"
    assert path.parent.is_dir()
    assert list(path.parent.iterdir()) == []


def test_writable_path_fails_clearly_when_the_root_cannot_be_written(tmp_path, monkeypatch):
    # Tests run as root, which ignores permission bits: a root below a regular file is
    # unwritable for everyone.
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("KZOO_HOME", str(blocker / "kzoo"))
    with pytest.raises(DownloadError, match=r"cannot be written.*KZOO_HOME.*Received:"):
        cache.writable_path("raw/f.bin")


def test_writable_path_refuses_a_root_listed_as_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_HOME", str(tmp_path))
    monkeypatch.setenv("KZOO_READONLY_CACHES", str(tmp_path))
    with pytest.raises(DownloadError, match="KZOO_READONLY_CACHES"):
        cache.writable_path("raw/f.bin")
    assert not (tmp_path / "raw").exists()


def test_atomic_write_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with cache.atomic_write(target) as tmp:
        assert tmp.parent == target.parent and str(os.getpid()) in tmp.name
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_atomic_write_keeps_the_old_file_and_deletes_the_temp_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half-way"), cache.atomic_write(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("half-way")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


TRY_LOCK = """
import sys, filelock
try:
    filelock.FileLock(sys.argv[1]).acquire(timeout=0.2)
except filelock.Timeout:
    sys.exit(3)
"""


def try_lock_elsewhere(path: Path) -> int:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, f"{path}.lock"]).returncode


def test_lock_excludes_other_processes_until_released(tmp_path):
    target = tmp_path / "f.bin"
    with cache.lock(target):
        assert try_lock_elsewhere(target) == 3
    assert try_lock_elsewhere(target) == 0


def test_lock_can_be_disabled(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    with cache.lock(target, enabled=False):
        assert try_lock_elsewhere(target) == 0
    monkeypatch.setenv("KZOO_NO_LOCKS", "1")
    with cache.lock(target):
        assert try_lock_elsewhere(target) == 0


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_claim_partial_adopts_the_largest_dead_partial_and_cleans_the_rest(tmp_path):
    dest = tmp_path / "w.bin"
    host = cache.partial_path(dest).name.split(".part.", 1)[1].rsplit(".", 1)[0]
    big = tmp_path / f"w.bin.part.{host}.{dead_pid()}"
    small = tmp_path / f"w.bin.part.{host}.{dead_pid()}"
    live = tmp_path / f"w.bin.part.{host}.{os.getppid()}"  # a running process: hands off
    far_old = tmp_path / "w.bin.part.other-host.42"
    far_new = tmp_path / "w.bin.part.other-host.43"
    other_file = tmp_path / "x.bin.part.other-host.44"
    big.write_bytes(b"b" * 300)
    small.write_bytes(b"s" * 100)
    for path in (live, far_old, far_new, other_file):
        path.write_bytes(b"keep?")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(far_old, (day_ago, day_ago))
    os.utime(other_file, (day_ago, day_ago))

    mine = cache.claim_partial(dest)

    assert mine == cache.partial_path(dest) and str(os.getpid()) in mine.name
    assert mine.read_bytes() == b"b" * 300
    assert not big.exists() and not small.exists() and not far_old.exists()
    assert live.exists() and far_new.exists() and other_file.exists()


def test_claim_partial_without_partials_returns_a_fresh_path(tmp_path):
    mine = cache.claim_partial(tmp_path / "w.bin")
    assert not mine.exists() and mine.parent == tmp_path
