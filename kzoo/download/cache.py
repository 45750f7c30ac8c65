"""Where kzoo keeps downloaded and converted files, and how a file gets there safely.

The cache is one writable root plus any number of read-only layers:

* the writable root is the ``root`` argument, else ``KZOO_HOME``, else the platform cache
  folder (``~/.cache/kzoo`` on Linux);
* ``KZOO_READONLY_CACHES`` lists pre-filled folders (``os.pathsep``-separated, like ``PATH``)
  that kzoo reads but never writes, e.g. a shared copy on an air-gapped cluster.

A lookup (:func:`find`) costs a few ``stat`` calls and writes nothing, so a cache on a
read-only filesystem works. New files go through :func:`atomic_write`, so a path in the
cache is either absent or complete.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import filelock
import platformdirs

from kzoo.errors import DownloadError, KzooError

__all__ = [
    "atomic_write",
    "cache_root",
    "claim_partial",
    "find",
    "lock",
    "partial_path",
    "readonly_layers",
    "writable_path",
]

log = logging.getLogger("kzoo")

_TRUE = {"1", "true", "yes", "on"}
_PART = ".part."  # partial downloads: <name>.part.<host>.<pid>
_HOST = socket.gethostname().replace(os.sep, "_") or "localhost"
_STALE_SECONDS = 24 * 3600  # another host's partial untouched this long is abandoned
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the writable cache root, without creating it.

    Args:
        root: An explicit folder. Takes precedence over the environment.

    Returns:
        ``root``, else ``$KZOO_HOME``, else ``platformdirs.user_cache_dir("kzoo")``.
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get("KZOO_HOME", "")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("kzoo", appauthor=False))


def readonly_layers() -> list[Path]:
    """Return the pre-filled, read-only cache folders named by ``KZOO_READONLY_CACHES``.

    Empty entries are ignored; folders that do not exist are kept (a lookup simply misses).
    """
    value = os.environ.get("KZOO_READONLY_CACHES", "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def _check_relpath(relpath: str) -> PurePosixPath:
    rel = PurePosixPath(str(relpath).replace(os.sep, "/"))
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise KzooError(
            "a cache path must be relative and stay inside the cache "
            f"(no leading '/', no '..'). Received: relpath={relpath!r}"
        )
    return rel


def find(
    relpath: str, root: str | os.PathLike[str] | None = None, *, size: int | None = None
) -> Path | None:
    """Return the first existing copy of ``relpath``: the writable root, then each read-only layer.

    A hit costs a ``stat`` per candidate; nothing is hashed and nothing is written.

    Args:
        relpath: The file's path relative to a cache root, e.g. ``"raw/vgg19/top.h5"``.
        root: The writable root (see :func:`cache_root`).
        size: When given, a candidate whose size differs is skipped (a half-copied file
            in a layer must not count as a hit).

    Returns:
        The path of the file, or None when no layer has it.
    """
    rel = _check_relpath(relpath)
    for base in [cache_root(root), *readonly_layers()]:
        candidate = base.joinpath(*rel.parts)
        try:
            st = candidate.stat()
        except OSError:
            continue
        if candidate.is_file() and (size is None or st.st_size == size):
            return candidate
    return None


def _is_readonly_layer(folder: Path) -> bool:
    target = os.path.realpath(folder)
    for layer in readonly_layers():
        base = os.path.realpath(layer)
        if target == base or target.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def writable_path(relpath: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Return where a new copy of ``relpath`` goes, after proving its folder can be written.

    The folder is created and probed with a real temporary file (permission bits alone do
    not say whether a write works: root ignores them, read-only mounts do not show in them).

    Args:
        relpath: The file's path relative to the cache root.
        root: The writable root (see :func:`cache_root`).

    Returns:
        The absolute target path inside the writable root.

    Raises:
        DownloadError: The root is one of the read-only layers, or its folder cannot be
            created or written. kzoo never falls back to another folder silently.
    """
    rel = _check_relpath(relpath)
    base = cache_root(root)
    path = base.joinpath(*rel.parts)
    fix = (
        "Set KZOO_HOME (or pass root=) to a writable folder, or pre-fill a read-only cache "
        "listed in KZOO_READONLY_CACHES."
    )
    if _is_readonly_layer(path.parent):
        raise DownloadError(
            f"the kzoo cache root {str(base)!r} is listed in KZOO_READONLY_CACHES, so kzoo will "
            f"not write {relpath!r} there. {fix}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".kzoo-write-probe-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DownloadError(
            f"the kzoo cache at {str(base)!r} cannot be written, so {relpath!r} cannot be "
            f"stored. {fix} Received: {type(exc).__name__}: {exc}"
        ) from exc
    return path


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """Return a temporary path beside ``path`` owned by this process and thread.

    The name is ``<name>.<kind>.<pid>.<thread id>``, so two writers never share a temp file,
    whether or not a lock keeps them apart.
    """
    return path.with_name(f"{path.name}.{kind}.{os.getpid()}.{threading.get_ident()}")


def fsync_dir(folder: Path) -> None:
    """Flush a folder entry after a rename, where the platform allows it (not on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Write ``path`` all at once or not at all.

    Yields a temporary path beside ``path`` whose name carries this process's id. When the
    block ends normally the temporary file is fsynced and renamed over ``path`` with
    ``os.replace`` (atomic on POSIX and Windows); on any exception it is deleted.

    Example::

        with atomic_write(target) as tmp:
            tmp.write_bytes(payload)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def locks_enabled() -> bool:
    """Whether kzoo takes file locks; ``KZOO_NO_LOCKS=1`` turns them off (and tests use it to
    prove that correctness never rests on the lock alone)."""
    return os.environ.get("KZOO_NO_LOCKS", "").strip().lower() not in _TRUE


@contextlib.contextmanager
def lock(path: Path, enabled: bool | None = None, what: str | None = None) -> Iterator[None]:
    """Hold the lock of ``path`` (``<path>.lock``) so concurrent processes produce it once.

    Threads of one process are serialised by an in-process lock as well. With locks disabled
    (``enabled=False`` or ``KZOO_NO_LOCKS=1``) only the in-process lock is taken; callers stay
    correct through per-process temporary files and atomic renames.
    """
    key = os.path.abspath(path)
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.Lock())
    with thread_lock:
        if not (locks_enabled() if enabled is None else enabled):
            yield
            return
        file_lock = filelock.FileLock(f"{key}.lock")
        try:
            file_lock.acquire(timeout=0.2)
        except filelock.Timeout:
            log.info("waiting for another process to finish %s (lock %s.lock)", what or key, key)
            file_lock.acquire()
        try:
            yield
        finally:
            file_lock.release()
            # Leave no lock file behind. Another process may lock this inode meanwhile and a
            # newcomer create a fresh one: both then work in their own partial files, and the
            # atomic rename keeps the result right (correctness never rests on the lock).
            with contextlib.suppress(OSError):
                os.unlink(f"{key}.lock")


def partial_path(dest: Path) -> Path:
    """Return this process's partial-download path beside ``dest``:
    ``<name>.part.<host>.<pid>``. The host keeps processes on a shared filesystem apart."""
    return dest.with_name(f"{dest.name}{_PART}{_HOST}.{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive but not ours
        return True
    return True


def claim_partial(dest: Path) -> Path:
    """Adopt or clean the partial downloads of ``dest`` left by dead processes.

    Partials from this host whose process is gone (SIGKILL, power loss) or from this very
    process are stale: the largest is renamed to this process's partial path so the download
    resumes from it, the others are deleted. Partials from live processes are left alone
    (locks may be disabled and they may be writing); partials from another host are deleted
    only when untouched for a day.

    Returns:
        This process's partial path (which may or may not exist).
    """
    mine = partial_path(dest)
    stale: list[tuple[int, Path]] = []
    for part in dest.parent.glob(f"{glob.escape(dest.name)}{_PART}*"):
        host, _, pid = part.name[len(dest.name) + len(_PART) :].rpartition(".")
        try:
            st = part.stat()
        except OSError:
            continue
        if host == _HOST and pid.isdigit():
            if int(pid) == os.getpid() or not _pid_alive(int(pid)):
                stale.append((st.st_size, part))
        elif time.time() - st.st_mtime > _STALE_SECONDS:
            stale.append((-1, part))
    stale.sort(key=lambda item: item[0], reverse=True)
    for index, (size, part) in enumerate(stale):
        # Another process may adopt or delete the same file at the same moment (locks off).
        with contextlib.suppress(OSError):
            if index == 0 and size > 0:
                if part != mine:
                    os.replace(part, mine)
                    log.info("resuming %s from a partial download of %d bytes", dest.name, size)
            else:
                os.unlink(part)
    return mine
