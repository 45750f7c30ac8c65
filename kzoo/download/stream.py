"""Moving one file's bytes into a partial file: streaming, Range resume, retries, hashing.

The internals behind :func:`kzoo.download.fetch`, which decides what to fetch, where from and
where the result goes. A :class:`PartialDownload` streams one source (an HTTP(S) URL or a local
file) into the calling process's partial file while background threads (:mod:`.sinks`) hash
the bytes and flush them to disk; it resumes with HTTP Range, retries transient failures with
exponential backoff (honouring ``Retry-After``), and raises :class:`SourceFailed` when the
source will not work. This is where the retry policy lives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import errno
import logging
import os
import shutil
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import requests
import urllib3
from tqdm.auto import tqdm

from kzoo.download.sinks import Sinks
from kzoo.errors import ChecksumError, DownloadError

__all__ = ["CHUNK", "PartialDownload", "SourceFailed", "check_file", "unreachable_reason"]

log = logging.getLogger("kzoo")

# 1 MiB: big enough that per-chunk Python work is negligible beside hashing, small enough that
# glibc reuses the freed buffers. Every read allocates a new bytes object, and 4 MiB ones were
# mapped fresh each time: the page faults tripled the CPU cost of receiving (0.4 vs 0.1 s for
# 500 MiB over loopback).
CHUNK = 1 << 20
_sleep = time.sleep  # the one place retries wait; tests replace it to record the waits


class _Retry(Exception):
    """A transient failure: try the same URL again after a pause."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SourceFailed(Exception):
    """This URL will not work (4xx, TLS, missing file, retries spent): try the next mirror.

    Attributes:
        unreachable: The host could not be reached at all (no DNS, refused, no answer).
    """

    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


def check_file(
    path: Path, size: int | None, pins: Mapping[str, str], seen: Mapping[str, str]
) -> None:
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
class PartialDownload:
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

    def get(
        self,
        url: str,
        path: Path | None,
        pins: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Fetch from one source and verify the result; return the digests seen.

        ``headers`` go with each HTTP request (a token for the host that wants it). Bytes kept
        from before (a resume, an adopted partial of a killed process) that fail verification
        get one fresh download from zero before the source is given up.
        """
        for fresh in (False, True):
            self.reused = False
            try:
                seen = self.local(path) if path is not None else self.http(url, headers)
                check_file(self.part, self.size, pins, seen)
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
                sinks = Sinks(self.algorithms, fh.fileno())
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
            raise SourceFailed(f"cannot read {src}: {exc.strerror or exc}") from None
        with fh:
            total = os.fstat(fh.fileno()).st_size
            self._check_space(total)
            return self._stream(iter(lambda: fh.read(CHUNK), b""), 0, total)

    def http(self, url: str, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        attempt = 0
        while True:
            try:
                return self._http_once(url, headers or {})
            except _Retry as exc:
                if attempt >= self.retries:
                    raise SourceFailed(f"{exc} (gave up after {attempt + 1} attempts)") from None
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
        raise SourceFailed(f"HTTP {status} {resp.reason}")

    def _http_once(self, url: str, extra: Mapping[str, str]) -> dict[str, str]:
        have = _size(self.part)
        if self.size is not None and have > self.size:
            os.unlink(self.part)
            have = 0
        if self.size is not None and have == self.size > 0:
            return self._stream((), have, self.size)  # a complete partial: verify, no request
        if self.size is not None:
            self._check_space(self.size - have)
        headers = {**extra, "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = _RANGE.format(have)
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise SourceFailed(
                f"TLS error (verification stays on; point REQUESTS_CA_BUNDLE at your "
                f"CA bundle behind an inspecting proxy): {exc}"
            ) from None
        except requests.RequestException as exc:
            unreachable = unreachable_reason(url, exc, self.timeout)
            if unreachable:  # nobody is listening: waiting and asking again changes nothing
                raise SourceFailed(unreachable, unreachable=True) from None
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        with resp:
            offset = self._accept(resp, have)
            total = self.size
            # Content-Length counts the bytes as sent, which is what _body stores, even when a
            # server applies a Content-Encoding in spite of "identity"
            length = resp.headers.get("Content-Length", "")
            if total is None and length.isdigit():
                total = offset + int(length)
                self._check_space(total - offset)
            try:
                digests = self._stream(_body(resp), offset, total)
            except (requests.exceptions.SSLError, urllib3.exceptions.SSLError) as exc:
                raise SourceFailed(f"TLS error: {exc}") from None
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise _Retry(
                    f"connection broke after {_size(self.part)} bytes: {type(exc).__name__}: {exc}"
                ) from None
        got = _size(self.part)
        if total is not None and got < total:  # whatever the transport let through
            raise _Retry(f"the body ended after {got} of {total} bytes")
        return digests


# urllib3 1.x reports a failed name lookup as a plain NewConnectionError
_NAME_RESOLUTION = getattr(urllib3.exceptions, "NameResolutionError", ())


def unreachable_reason(
    url: str, exc: requests.RequestException, timeout: float | tuple[float, float]
) -> str | None:
    """A one-line reason when ``url``'s host cannot be reached at all, else None.

    A failed name lookup, a refused connection and a connect timeout are not transient in
    the sense retries help with (no network, a dead mirror, a firewall): the next mirror, or
    the error, should come at once. Resets and timeouts once connected stay retryable.
    """
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or url
    where = f"{host}:{parsed.port}" if parsed.port else host
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"the proxy refused the connection to {where} (check HTTPS_PROXY / HTTP_PROXY)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        seconds = timeout[0] if isinstance(timeout, tuple) else timeout
        return f"no answer from {where} within {seconds:g} s"
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    if _NAME_RESOLUTION and isinstance(reason, _NAME_RESOLUTION):
        return f"cannot resolve the host name {host!r} (no network, or no DNS for it)"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        detail = str(reason).rsplit("] ", 1)[-1] if "] " in str(reason) else str(reason)
        return f"cannot connect to {where}: {detail}"
    return None


def _body(resp: requests.Response) -> Iterator[bytes]:
    """The response body as it arrives, as sent: never decoded.

    ``read1`` hands over whatever the socket has (up to CHUNK), so the bytes received before
    a connection breaks are on disk for the resume; ``stream`` would buffer up to a full chunk
    and lose it with the exception. Older urllib3 has no ``read1``. Neither decodes a
    Content-Encoding (``iter_content`` would): Content-Length and Range offsets count the
    bytes as sent, so decoded bytes could be neither checked for truncation nor resumed.
    """
    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:
        yield from resp.raw.stream(CHUNK, decode_content=False)
        return
    while chunk := read1(CHUNK):
        yield chunk
