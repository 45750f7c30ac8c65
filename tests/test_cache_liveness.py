"""kzoo.download.cache: whose partial files are adopted, left alone or deleted, and the
writable root (``root=``, several files in one folder, the write probe).

The liveness probe must tell a dead downloader from a live one without disturbing the live
one; partial names carry the host, which may contain dots, and the pid.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kzoo.download import cache, fetch_cached
from kzoo.errors import DownloadError, KzooError

# Reports every signal it receives once its stdin closes; SIGKILL and SIGSTOP cannot be seen.
WATCHER = """
import signal, sys
got = []
for number in signal.valid_signals():
    try:
        signal.signal(number, lambda n, frame: got.append(n))
    except (OSError, RuntimeError, ValueError):
        pass
print("ready", flush=True)
sys.stdin.read()
print(sorted(set(got)), flush=True)
"""


@pytest.fixture
def live_process():
    """A running process of this user that records any signal sent to it."""
    child = subprocess.Popen(
        [sys.executable, "-c", WATCHER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline() == "ready\n"
    yield child
    if child.poll() is None:
        child.kill()
        child.wait()


def signals_seen(child: subprocess.Popen) -> str:
    """Close the watcher's stdin; return what it reports (``"[]"`` when no signal came)."""
    out, _ = child.communicate("", timeout=10)
    return out.strip()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def host() -> str:
    return cache.partial_path(Path("w.bin")).name.split(".part.", 1)[1].rsplit(".", 1)[0]


def aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_a_live_download_of_this_user_is_left_alone_and_sent_no_signal(tmp_path, live_process):
    dest = tmp_path / "w.bin"
    theirs = tmp_path / f"w.bin.part.{host()}.{live_process.pid}"
    theirs.write_bytes(b"still being written")

    mine = cache.claim_partial(dest)

    assert theirs.read_bytes() == b"still being written"
    assert not mine.exists()
    assert live_process.poll() is None
    assert signals_seen(live_process) == "[]"


def test_a_process_that_may_not_be_probed_counts_as_alive(tmp_path, monkeypatch):
    # A downloader of another user: os.kill(pid, 0) is refused, which proves it exists.
    def refused(pid, sig):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "kill", refused)
    theirs = tmp_path / f"w.bin.part.{host()}.4242"
    theirs.write_bytes(b"another user's bytes")
    mine = cache.claim_partial(tmp_path / "w.bin")
    assert theirs.read_bytes() == b"another user's bytes" and not mine.exists()


def test_on_windows_no_process_is_probed_and_no_partial_taken(tmp_path, monkeypatch):
    # os.kill(pid, 0) would terminate the process there, so every pid counts as alive.
    probed: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: probed.append(pid))
    theirs = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"
    theirs.write_bytes(b"maybe alive")
    monkeypatch.setattr(os, "name", "nt")
    try:  # only around the call: while os.name lies, no Path can be made
        mine = cache.claim_partial(tmp_path / "w.bin")
    finally:
        monkeypatch.undo()
    assert probed == [] and theirs.exists() and not mine.exists()


def test_a_dead_process_partial_is_resumed_on_a_host_with_dots_in_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_HOST", "node1.cluster.local")
    dest = tmp_path / "w.bin"
    dead = dead_pid()
    theirs = tmp_path / f"w.bin.part.node1.cluster.local.{dead}"
    theirs.write_bytes(b"half of it")
    # A host whose name is a prefix of ours is another host: its fresh partial stays.
    neighbour = tmp_path / f"w.bin.part.node1.cluster.{dead}"
    neighbour.write_bytes(b"the neighbour's")

    mine = cache.claim_partial(dest)

    assert mine.name == f"w.bin.part.node1.cluster.local.{os.getpid()}"
    assert mine.read_bytes() == b"half of it" and not theirs.exists()
    assert neighbour.read_bytes() == b"the neighbour's"


def test_another_hosts_fresh_partial_is_kept(tmp_path):
    theirs = tmp_path / "w.bin.part.other-host.42"
    theirs.write_bytes(b"theirs")
    aged(theirs, 3600)
    mine = cache.claim_partial(tmp_path / "w.bin")
    assert theirs.read_bytes() == b"theirs" and not mine.exists()


def test_another_hosts_abandoned_partial_is_deleted_not_resumed(tmp_path):
    theirs = tmp_path / "w.bin.part.other-host.42"
    theirs.write_bytes(b"bytes of an unknown download")
    aged(theirs, 2 * 24 * 3600)
    mine = cache.claim_partial(tmp_path / "w.bin")
    assert not theirs.exists() and not mine.exists()


def test_another_hosts_partial_untouched_exactly_a_day_is_not_yet_abandoned(tmp_path, monkeypatch):
    theirs = tmp_path / "w.bin.part.other-host.42"
    theirs.write_bytes(b"theirs")
    mtime = theirs.stat().st_mtime
    monkeypatch.setattr(time, "time", lambda: mtime + 24 * 3600)
    try:
        cache.claim_partial(tmp_path / "w.bin")
    finally:
        monkeypatch.undo()
    assert theirs.exists()


def test_an_empty_partial_of_a_dead_process_is_deleted_not_resumed(tmp_path):
    dest = tmp_path / "w.bin"
    empty = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"
    empty.write_bytes(b"")
    mine = cache.claim_partial(dest)
    assert not empty.exists() and not mine.exists()


# --- the writable root ------------------------------------------------------------------


def test_find_honours_root_before_kzoo_home(tmp_path, monkeypatch):
    home, root = tmp_path / "home", tmp_path / "root"
    for base, text in ((home, "home"), (root, "root")):
        (base / "raw").mkdir(parents=True)
        (base / "raw" / "f.bin").write_text(text)
    monkeypatch.setenv("KZOO_HOME", str(home))
    assert cache.find("raw/f.bin", root=root) == root / "raw" / "f.bin"
    assert cache.find("raw/f.bin") == home / "raw" / "f.bin"


def test_two_files_fetched_into_one_cache_folder(tmp_path):
    sources = {}
    for name in ("a.bin", "b.bin"):
        sources[name] = tmp_path / f"source-{name}"
        sources[name].write_bytes(name.encode() * 100)
    root = tmp_path / "cache"
    for name, source in sources.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        got = fetch_cached(
            f"raw/m/{name}", [str(source)], root=root, hashes={"sha256": digest}, progress=False
        )
        assert got == root / "raw" / "m" / name
    assert sorted(p.name for p in (root / "raw" / "m").iterdir()) == ["a.bin", "b.bin"]


@pytest.fixture
def probes(monkeypatch):
    """Every write probe made, and the folders where it is made to fail as on a read-only mount."""
    real_mkstemp = tempfile.mkstemp
    made: list[Path] = []
    read_only: list[Path] = []

    def mkstemp(*args, **kwargs):
        if Path(kwargs.get("dir", "")) in read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        fd, path = real_mkstemp(*args, **kwargs)
        made.append(Path(path))
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return made, read_only


def test_the_write_probe_is_a_hidden_file_in_the_target_folder_removed_at_once(tmp_path, probes):
    made, _ = probes
    path = cache.writable_path("raw/vgg19/top.h5", root=tmp_path)
    assert len(made) == 1
    assert made[0].parent == path.parent and made[0].name.startswith(".kzoo-write-probe-")
    assert not made[0].exists() and list(path.parent.iterdir()) == []


def test_a_folder_that_exists_but_cannot_be_written_is_found_by_the_probe(tmp_path, probes):
    _, read_only = probes
    folder = tmp_path / "raw" / "vgg19"
    folder.mkdir(parents=True)  # mkdir succeeds (it exists): only the probe can tell
    read_only.append(folder)
    with pytest.raises(
        DownloadError,
        match=r"cache at .* cannot be written, so 'raw/vgg19/top\.h5' cannot be stored\. .*"
        r"Received: OSError: \[Errno 30\] Read-only file system",
    ):
        cache.writable_path("raw/vgg19/top.h5", root=tmp_path)


def test_an_adopted_partial_of_one_byte_is_resumed_and_logged(tmp_path, caplog):
    theirs = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"
    theirs.write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="kzoo"):
        mine = cache.claim_partial(tmp_path / "w.bin")
    assert mine.read_bytes() == b"x" and not theirs.exists()
    assert [r.getMessage() for r in caplog.records if r.name == "kzoo"] == [
        "resuming w.bin from a partial download of 1 bytes"
    ]


def test_a_partial_gone_before_it_is_looked_at_does_not_stop_the_others(tmp_path, monkeypatch):
    dest = tmp_path / "w.bin"
    gone = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"  # deleted by another process
    theirs = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"
    theirs.write_bytes(b"half of it")
    listing = [gone, theirs]
    monkeypatch.setattr(type(tmp_path), "glob", lambda self, pattern: iter(listing))
    try:
        mine = cache.claim_partial(dest)
    finally:
        monkeypatch.undo()
    assert mine.read_bytes() == b"half of it"


def test_a_partial_adopted_by_another_process_first_is_no_error(tmp_path, monkeypatch):
    # With locks off, two processes may adopt (or delete) the same partial at once.
    theirs = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"
    theirs.write_bytes(b"half of it")
    other = tmp_path / f"w.bin.part.{host()}.{dead_pid()}"
    other.write_bytes(b"less")

    def too_late(src, *dst):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(src))

    monkeypatch.setattr(os, "replace", too_late)
    monkeypatch.setattr(os, "unlink", too_late)
    try:
        mine = cache.claim_partial(tmp_path / "w.bin")
    finally:
        monkeypatch.undo()
    assert mine == cache.partial_path(tmp_path / "w.bin") and not mine.exists()


def test_the_default_root_on_windows_has_no_author_folder(tmp_path, monkeypatch):
    import platformdirs
    import platformdirs.windows

    local = tmp_path / "AppData" / "Local"
    monkeypatch.delenv("KZOO_HOME")
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.windows.Windows)
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", lambda name: str(local))
    assert cache.cache_root() == local / "kzoo" / "Cache"


def test_an_empty_root_argument_means_no_root_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_HOME", str(tmp_path / "env"))
    assert cache.cache_root("") == tmp_path / "env"
    assert cache.cache_root(None) == tmp_path / "env"


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("1", False), ("true", False), ("Yes", False), (" ON ", False), ("0", True), ("", True)],
)
def test_kzoo_no_locks_reads_the_usual_spellings_of_true(monkeypatch, value, enabled):
    monkeypatch.setenv("KZOO_NO_LOCKS", value)
    assert cache.locks_enabled() is enabled


def test_a_path_leaving_the_cache_is_refused_with_the_rule_and_the_path():
    with pytest.raises(KzooError) as info:
        cache.find("../escape.bin")
    assert str(info.value) == (
        "a cache path must be relative and stay inside the cache (no leading '/', no '..'). "
        "Received: relpath='../escape.bin'"
    )


FIX = (
    "Set KZOO_HOME (or pass root=) to a writable folder, or pre-fill a read-only cache listed "
    "in KZOO_READONLY_CACHES."
)


def test_a_root_listed_as_read_only_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_READONLY_CACHES", str(tmp_path))
    with pytest.raises(DownloadError) as info:
        cache.writable_path("raw/f.bin", root=tmp_path)
    assert str(info.value) == (
        f"the kzoo cache root {str(tmp_path)!r} is listed in KZOO_READONLY_CACHES, so kzoo will "
        f"not write 'raw/f.bin' there. {FIX}"
    )


def test_a_read_only_layer_at_the_filesystem_root_covers_every_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_READONLY_CACHES", os.sep)
    with pytest.raises(DownloadError, match="is listed in KZOO_READONLY_CACHES"):
        cache.writable_path("raw/f.bin", root=tmp_path)


def test_an_unwritable_root_is_refused_with_the_fix_and_the_cause(tmp_path, probes):
    _, read_only = probes
    read_only.append(tmp_path / "raw")
    (tmp_path / "raw").mkdir()
    with pytest.raises(DownloadError) as info:
        cache.writable_path("raw/f.bin", root=tmp_path)
    assert str(info.value) == (
        f"the kzoo cache at {str(tmp_path)!r} cannot be written, so 'raw/f.bin' cannot be "
        f"stored. {FIX} Received: OSError: [Errno 30] Read-only file system"
    )


def test_atomic_write_names_its_temp_file_after_the_process_and_thread(tmp_path):
    target = tmp_path / "out.bin"
    with cache.atomic_write(target) as tmp:
        assert tmp == tmp_path / f"out.bin.tmp.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_atomic_write_succeeds_where_folders_cannot_be_fsynced(tmp_path, monkeypatch):
    # Some filesystems (and Windows, which cannot open a folder) refuse to flush a folder.
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "out.bin"
    with cache.atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
