"""Fetch a file into the cache: complete and verified, or not at all.

:func:`fetch` keeps these promises (docs/downloads.md explains them to users):

1. a file at its final path is complete and verified: each process streams into its own
   partial file beside the target, checks size and every pinned hash, fsyncs, then renames;
2. truncation is caught whatever the transport does (size check, ``Accept-Encoding: identity``);
3. transient failures (connection reset, timeouts, 408/429/5xx) retry with exponential
   backoff and honour ``Retry-After``; other 4xx and TLS errors fail fast; TLS verification is
   never disabled and ``requests`` honours the proxy and CA-bundle environment variables;
4. connect and read timeouts are always set;
5. downloads resume with HTTP Range within a call and across calls; a 206 counts only with a
   matching ``Content-Range``, a 200 restarts from zero;
6. concurrent processes fetch once (``filelock``) and stay correct when locks do not work;
7. partial files of killed processes are adopted or cleaned;
8. mirrors are tried in order;
9. free space is checked first and a full disk deletes the partial file;
10. tqdm progress that stays honest across resumes, off when not on a terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import errno
import hashlib
import logging
import os
import queue
import shutil
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import requests
import urllib3
from tqdm.auto import tqdm

from kzoo import cache
from kzoo.errors import ChecksumError, DownloadError, KzooError, OfflineError

__all__ = ["fetch", "fetch_cached", "file_digest", "is_offline", "verify"]

log = logging.getLogger("kzoo")

CHUNK = 4 << 20  # large chunks keep per-chunk Python overhead far below the hashing cost
_sleep = time.sleep  # the one place retries wait; tests replace it to record the waits
_TRUE = {"1", "true", "yes", "on"}


class _Retry(Exception):
    """A transient failure: try the same URL again after a pause."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _GiveUp(Exception):
    """This URL will not work (4xx, TLS, missing file, retries spent): try the next mirror."""


def is_offline() -> bool:
    """Whether ``KZOO_OFFLINE`` is set (``1``/``true``/``yes``): no network traffic at all."""
    return os.environ.get("KZOO_OFFLINE", "").strip().lower() in _TRUE


def _new_hash(algorithm: str):
    # These hashes check integrity, not secrets: this keeps md5 usable on FIPS-mode systems.
    return hashlib.new(algorithm, usedforsecurity=False)


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hash a file in chunks and return ``"<algorithm>:<hex>"``, e.g. ``"sha256:9f86..."``."""
    h = _new_hash(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


class _Sinks:
    """Hash a stream with several algorithms, and flush it to disk, in background threads.

    hashlib releases the GIL on large buffers, so md5 and sha256 run beside the network read
    instead of after it and the file is never read back. The flusher calls fdatasync every
    FLUSH bytes so the disk writes overlap the download and the final fsync is short.
    """

    def __init__(self, algorithms: Iterable[str], fd: int | None = None) -> None:
        self._hashes = {name: _new_hash(name) for name in algorithms}
        consumers = [h.update for h in self._hashes.values()]
        if fd is not None:
            consumers.append(_Flusher(fd))
        self._errors: list[BaseException] = []
        self._queues: list[queue.Queue[bytes | None]] = []
        self._threads: list[threading.Thread] = []
        for consume in consumers:
            q: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
            thread = threading.Thread(target=self._run, args=(consume, q), daemon=True)
            thread.start()
            self._queues.append(q)
            self._threads.append(thread)

    def _run(self, consume, q: queue.Queue[bytes | None]) -> None:
        failed = False
        while (chunk := q.get()) is not None:
            if failed:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                consume(chunk)
            except BaseException as exc:
                self._errors.append(exc)
                failed = True

    def update(self, chunk: bytes) -> None:
        for q in self._queues:
            q.put(chunk)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []

    def digests(self) -> dict[str, str]:
        self.close()
        if self._errors:
            raise self._errors[0]
        return {name: f"{name}:{h.hexdigest()}" for name, h in self._hashes.items()}


FLUSH = 64 << 20
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class _Flusher:
    """Start the disk writes of every FLUSH bytes early (called with chunks already written)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, 0

    def __call__(self, chunk: bytes) -> None:
        self.pending += len(chunk)
        if self.pending >= FLUSH:
            self.pending = 0
            with contextlib.suppress(OSError):  # the final fsync reports real errors
                _datasync(self.fd)


def _normalise(algorithm: str, value: str) -> str:
    value = value.strip().lower()
    return value if value.startswith(f"{algorithm}:") else f"{algorithm}:{value}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _pins(dest: Path, hashes: Mapping[str, str | None] | None) -> dict[str, str]:
    pins = {alg: _normalise(alg, val) for alg, val in (hashes or {}).items() if val}
    if not pins:  # trust on first use: the sha256 recorded by an earlier download
        with contextlib.suppress(OSError):
            recorded = _sidecar(dest).read_text().strip()
            if recorded:
                pins["sha256"] = _normalise("sha256", recorded)
    return pins


def _check(path: Path, size: int | None, pins: Mapping[str, str], seen: Mapping[str, str]) -> None:
    problems = []
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        problems.append(f"size: expected {size} bytes, got {got_size}")
    for alg, want in pins.items():
        if seen.get(alg) != want:
            problems.append(
                f"{alg}: expected {want.split(':', 1)[1]}, got {seen[alg].split(':', 1)[1]}"
            )
    if problems:
        raise ChecksumError("; ".join(problems))


def verify(
    path: str | os.PathLike[str],
    hashes: Mapping[str, str | None] | None = None,
    *,
    size: int | None = None,
) -> dict[str, str]:
    """Re-hash a cached file and compare it with its pinned hashes (``kzoo weights verify``).

    With no pinned hash the file is compared with the sha256 recorded beside it
    (``<file>.sha256``) when it was first downloaded.

    Returns:
        The digests seen, ``{"md5": "md5:<hex>", ...}``.

    Raises:
        ChecksumError: A size or hash differs, or there is nothing to verify against.
    """
    path = Path(path)
    pins = _pins(path, hashes)
    if not pins and size is None:
        raise ChecksumError(
            f"{path} has no pinned hash and no recorded sha256 ({_sidecar(path).name}): there "
            "is nothing to verify it against. Pin a hash in the manifest."
        )
    sinks = _Sinks(sorted({*pins, *(hashes or {})}))
    with open(path, "rb", buffering=0) as fh:  # one read, every algorithm
        while chunk := fh.read(CHUNK):
            sinks.update(chunk)
    seen = sinks.digests()
    try:
        _check(path, size, pins, seen)
    except ChecksumError as exc:
        raise ChecksumError(f"{path} is corrupt: {exc}. Delete it and fetch it again.") from None
    return seen


def _local_source(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if len(parsed.scheme) <= 1:  # a plain path (or a Windows drive letter)
        return Path(url).expanduser()
    raise KzooError(
        f"unsupported URL scheme {parsed.scheme!r}; use https://, http://, file:// "
        f"or a path. Received: {url!r}"
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable; keeps type checkers calm


def _write(fh, chunk: bytes) -> None:
    """Write all of ``chunk`` to an unbuffered file (a raw write may be partial)."""
    view = memoryview(chunk)
    while view:
        view = view[fh.write(view) :]


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_RANGE = "bytes={}-"


@dataclasses.dataclass
class _Transfer:
    """One file's transfer into this process's partial file, tried URL by URL."""

    dest: Path
    part: Path
    size: int | None
    algorithms: Sequence[str]
    label: str
    bar: tqdm
    session: requests.Session
    timeout: float | tuple[float, float]
    retries: int
    backoff: float
    max_wait: float
    reused: bool = False  # the last attempt kept bytes that were already in the partial file

    def get(self, url: str, path: Path | None, pins: Mapping[str, str]) -> dict[str, str]:
        """Fetch from one source and verify the result; return the digests seen.

        Bytes kept from before (a resume, an adopted partial of a killed process) that fail
        verification get one fresh download from zero before the source is given up.
        """
        for fresh in (False, True):
            self.reused = False
            try:
                seen = self.local(path) if path is not None else self.http(url)
                _check(self.part, self.size, pins, seen)
                return seen
            except ChecksumError:
                with contextlib.suppress(OSError):
                    os.unlink(self.part)
                if fresh or not self.reused:
                    raise
                log.warning("%s: resumed bytes failed verification; starting over", self.label)
        raise AssertionError("unreachable")

    def _disk_full(self, need: int, free: int | None) -> DownloadError:
        have = "" if free is None else f" and only {_human(free)} is free"
        return DownloadError(
            f"the disk is full: {self.label} needs {_human(need)} ({need} bytes) in "
            f"{self.dest.parent}{have}. Free some space or set KZOO_HOME to a bigger disk."
        )

    def _check_space(self, need: int) -> None:
        free = shutil.disk_usage(self.part.parent).free
        if need > free:
            raise self._disk_full(need, free)

    def _stream(self, chunks: Iterable[bytes], offset: int, total: int | None) -> dict[str, str]:
        """Append ``chunks`` after the first ``offset`` bytes of the partial file, hashing all."""
        written = offset
        self.reused = self.reused or offset > 0
        try:
            with open(self.part, "r+b" if offset else "wb", buffering=0) as fh:
                sinks = _Sinks(self.algorithms, fh.fileno())
                try:  # the sinks must finish before the file (and its fd) is closed
                    while fh.tell() < offset and (chunk := fh.read(min(CHUNK, offset - fh.tell()))):
                        sinks.update(chunk)  # resuming: hash the bytes already there, once
                    fh.seek(offset)
                    fh.truncate()
                    self.bar.reset(total=total)
                    self.bar.update(offset)
                    for chunk in chunks:
                        written += len(chunk)
                        if self.size is not None and written > self.size:
                            raise ChecksumError(f"size: expected {self.size} bytes, got more")
                        _write(fh, chunk)
                        sinks.update(chunk)
                        self.bar.update(len(chunk))
                finally:
                    sinks.close()
        except OSError as exc:
            if exc.errno in _DISK_FULL and not isinstance(exc, requests.RequestException):
                with contextlib.suppress(OSError):
                    os.unlink(self.part)
                need = self.size if self.size is not None else (total or written)
                raise self._disk_full(need, None) from exc
            raise
        return sinks.digests()

    def local(self, src: Path) -> dict[str, str]:
        try:
            fh = open(src, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise _GiveUp(f"cannot read {src}: {exc.strerror or exc}") from None
        with fh:
            total = os.fstat(fh.fileno()).st_size
            self._check_space(total)
            return self._stream(iter(lambda: fh.read(CHUNK), b""), 0, total)

    def http(self, url: str) -> dict[str, str]:
        attempt = 0
        while True:
            try:
                return self._http_once(url)
            except _Retry as exc:
                if attempt >= self.retries:
                    raise _GiveUp(f"{exc} (gave up after {attempt + 1} attempts)") from None
                wait = exc.retry_after if exc.retry_after is not None else self.backoff * 2**attempt
                wait = max(0.0, min(wait, self.max_wait))
                log.warning("%s: %s; retrying in %.2f s", url, exc, wait)
                _sleep(wait)
                attempt += 1

    def _accept(self, resp: requests.Response, have: int) -> int:
        """Return the offset the body starts at, or raise for a status that is no body."""
        status = resp.status_code
        if status == 206:
            got = resp.headers.get("Content-Range", "")
            start, _, rest = got.removeprefix("bytes ").partition("-")
            end, _, total = rest.partition("/")
            ok = have > 0 and start == str(have) and end.isdigit()
            ok = ok and (total == "*" or (total.isdigit() and int(end) == int(total) - 1))
            ok = ok and (self.size is None or total in ("*", str(self.size)))
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(self.part)
                raise _Retry(
                    f"Range bytes={have}- answered with Content-Range {got!r}; "
                    "restarting from zero",
                    retry_after=0,
                )
            return have
        if status == 200:
            if have:
                log.info("%s ignores Range: downloading %s from the start", resp.url, self.label)
            return 0
        if status == 416 and have:
            with contextlib.suppress(OSError):
                os.unlink(self.part)
            raise _Retry(f"HTTP 416 for Range bytes={have}-; restarting from zero", retry_after=0)
        if status in (408, 429) or status >= 500:
            raise _Retry(
                f"HTTP {status} {resp.reason}", _retry_after(resp.headers.get("Retry-After"))
            )
        raise _GiveUp(f"HTTP {status} {resp.reason}")

    def _http_once(self, url: str) -> dict[str, str]:
        have = _size(self.part)
        if self.size is not None and have > self.size:
            os.unlink(self.part)
            have = 0
        if self.size is not None and have == self.size > 0:
            return self._stream((), have, self.size)  # a complete partial: verify, no request
        if self.size is not None:
            self._check_space(self.size - have)
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = _RANGE.format(have)
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise _GiveUp(
                f"TLS error (verification stays on; point REQUESTS_CA_BUNDLE at your "
                f"CA bundle behind an inspecting proxy): {exc}"
            ) from None
        except requests.RequestException as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        with resp:
            offset = self._accept(resp, have)
            total = self.size
            length = resp.headers.get("Content-Length", "")
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            if total is None and length.isdigit() and not encoded:
                total = offset + int(length)
                self._check_space(total - offset)
            try:
                digests = self._stream(_body(resp), offset, total)
            except (requests.exceptions.SSLError, urllib3.exceptions.SSLError) as exc:
                raise _GiveUp(f"TLS error: {exc}") from None
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise _Retry(
                    f"connection broke after {_size(self.part)} bytes: {type(exc).__name__}: {exc}"
                ) from None
        got = _size(self.part)
        if total is not None and got < total:  # whatever the transport let through
            raise _Retry(f"the body ended after {got} of {total} bytes")
        return digests


def _body(resp: requests.Response) -> Iterator[bytes]:
    """The response body as it arrives.

    ``read1`` hands over whatever the socket has (up to CHUNK), so the bytes received before
    a connection breaks are on disk for the resume; ``iter_content`` would buffer up to a
    full chunk and lose it with the exception. Older urllib3 has no ``read1``.
    """
    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:
        yield from resp.iter_content(CHUNK)
        return
    while chunk := read1(CHUNK):
        yield chunk


def _complete(dest: Path, size: int | None) -> bool:
    """A cache hit: one stat, no hashing (``kzoo weights verify`` re-hashes on demand)."""
    try:
        st = dest.stat()
    except OSError:
        return False
    return size is None or st.st_size == size


def _commit(part: Path, dest: Path) -> None:
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, dest)
    cache.fsync_dir(dest.parent)


def fetch(
    urls: Sequence[str] | str,
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    hashes: Mapping[str, str | None] | None = None,
    progress: bool | None = None,
    timeout: float | tuple[float, float] = (10, 60),
    retries: int = 5,
    what: str | None = None,
    import_hint: str | None = None,
    backoff: float = 0.5,
    max_wait: float = 30.0,
    locks: bool | None = None,
) -> Path:
    """Download ``dest`` from the first of ``urls`` that works, verified, or raise.

    Args:
        urls: Mirrors in order: ``https://``/``http://`` URLs, ``file://`` URLs or plain paths.
        dest: The final path. When it exists (with the right ``size``) it is returned at the
            cost of one stat: no request, no hashing.
        size: The expected size in bytes, checked before the file is kept.
        hashes: ``{"md5": "<hex>", "sha256": None}``: every value given is checked; a key with
            None is computed and logged. With no value at all, kzoo warns, records the sha256
            it saw in ``<dest>.sha256`` and checks later downloads against it.
        progress: Show a tqdm bar; None shows one only when stderr is a terminal.
        timeout: Seconds for ``(connect, read)``; a read timeout is the longest silence.
        retries: Extra attempts per URL after a transient failure.
        what: A name for messages (defaults to the file name).
        import_hint: The command that installs a file obtained elsewhere; shown offline.
        backoff: Seconds before the first retry, doubled each time.
        max_wait: Cap on any single wait, ``Retry-After`` included.
        locks: Take ``<dest>.lock`` (default: unless ``KZOO_NO_LOCKS=1``).

    Returns:
        ``dest``.

    Raises:
        OfflineError: ``KZOO_OFFLINE=1`` and ``dest`` is missing (no request is made).
        ChecksumError: Every source failed and one sent the wrong bytes; nothing is kept.
        DownloadError: Every source failed (each URL and its reason are listed), or the
            disk is full.
    """
    dest = Path(dest)
    if _complete(dest, size):
        return dest
    urls = [os.fspath(urls)] if isinstance(urls, (str, os.PathLike)) else [str(u) for u in urls]
    label = what or dest.name
    if not urls:
        raise DownloadError(f"no URL to fetch {label} from. Received: urls=[]")
    sources = [(url, _local_source(url)) for url in urls]
    if is_offline():
        sources = [(url, path) for url, path in sources if path is not None]
        if not sources:
            hint = (
                f"\n  to install a copy you obtained elsewhere: {import_hint}"
                if import_hint
                else ""
            )
            raise OfflineError(
                f"{label} is not in the kzoo cache and KZOO_OFFLINE=1 forbids downloading it."
                f"\n  expected file: {dest}{hint}\n  or unset KZOO_OFFLINE to fetch {urls[0]}"
            )
    pinned_by_caller = any((hashes or {}).values())
    pins = _pins(dest, hashes)
    algorithms = sorted(
        {*(hashes or {}), *pins, "sha256"} if not pins else {*(hashes or {}), *pins}
    )
    unknown = [alg for alg in algorithms if alg not in hashlib.algorithms_available]
    if unknown:
        raise KzooError(
            f"unknown hash algorithm {unknown[0]!r}. Received: hashes={dict(hashes or {})}"
        )
    if not pinned_by_caller:
        log.warning(
            "%s has no pinned hash, so kzoo cannot tell a corrupted or replaced file from the "
            "real one; %s",
            label,
            f"checking it against the sha256 recorded in {_sidecar(dest)}"
            if pins
            else f"the sha256 seen will be recorded in {_sidecar(dest)} and checked later",
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create {dest.parent} for {label}: {exc.strerror or exc}. "
            "Set KZOO_HOME to a writable folder."
        ) from exc
    with cache.lock(dest, locks, label):
        if _complete(dest, size):  # another process finished it while we waited
            return dest
        part = cache.claim_partial(dest)
        failures: list[str] = []
        bad_bytes = False
        show = sys.stderr.isatty() if progress is None else progress
        with (
            requests.Session() as session,
            tqdm(
                total=size,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not show,
                leave=False,
            ) as bar,
        ):
            job = _Transfer(dest, part, size, algorithms, label, bar, session, timeout,
                            retries, backoff, max_wait)  # fmt: skip
            for url, path in sources:
                try:
                    seen = job.get(url, path, pins)
                except _GiveUp as exc:
                    failures.append(f"  {url}: {exc}")
                    log.warning("%s: %s", url, exc)
                    continue
                except ChecksumError as exc:
                    bad_bytes = True
                    failures.append(f"  {url}: wrong bytes, deleted ({exc})")
                    log.error("%s sent a corrupt %s: %s", url, label, exc)
                    continue
                if not pinned_by_caller and not pins:
                    with cache.atomic_write(_sidecar(dest)) as tmp:
                        tmp.write_text(seen["sha256"] + "\n")
                _commit(part, dest)
                log.info("fetched %s from %s (%s)", label, url, ", ".join(seen.values()))
                return dest
    notes = []
    if part.exists():
        notes.append(f"The partial file {part.name} is kept; the next call resumes it.")
    if bad_bytes and not pinned_by_caller:
        notes.append(
            f"The expected sha256 was recorded at the first download in {_sidecar(dest)}; "
            "if the source really changed, delete that file."
        )
    error = ChecksumError if bad_bytes else DownloadError
    lines = [f"could not fetch {label} into {dest}; tried:", *failures, *notes]
    raise error("\n".join(lines))


def fetch_cached(
    relpath: str,
    urls: Sequence[str] | str,
    *,
    root: str | os.PathLike[str] | None = None,
    size: int | None = None,
    **kwargs,
) -> Path:
    """Return the cached copy of ``relpath`` (writable root, then read-only layers), fetching
    it into the writable root on a miss. A hit costs a stat per layer and writes nothing.

    ``kwargs`` go to :func:`fetch`.
    """
    hit = cache.find(relpath, root, size=size)
    if hit is not None:
        return hit
    if is_offline():  # name the expected path without touching a possibly read-only root
        return fetch(urls, cache.cache_root(root) / relpath, size=size, **kwargs)
    return fetch(urls, cache.writable_path(relpath, root), size=size, **kwargs)
