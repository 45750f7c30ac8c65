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
import hashlib
import logging
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests
from tqdm.auto import tqdm

from kzoo.download import cache, hf_cache, hub
from kzoo.download.sinks import Sinks, new_hash
from kzoo.download.stream import CHUNK, PartialDownload, SourceFailed, check_file
from kzoo.errors import ChecksumError, DownloadError, Hint, HubError, KzooError, OfflineError

__all__ = ["fetch", "fetch_cached", "file_digest", "is_offline", "verify"]

log = logging.getLogger("kzoo")

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """Whether ``KZOO_OFFLINE`` is set (``1``/``true``/``yes``): no network traffic at all."""
    return os.environ.get("KZOO_OFFLINE", "").strip().lower() in _TRUE


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hash a file in chunks and return ``"<algorithm>:<hex>"``, e.g. ``"sha256:9f86..."``."""
    h = new_hash(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


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


# Strongest first. md5 runs at ~700 MB/s on one core and sha256 (with SHA extensions) at
# ~1.7 GB/s, both below a loopback copy, so the download hashes with one algorithm only.
_STRENGTH = (
    "sha512", "sha384", "sha256", "sha3_512", "sha3_256", "blake2b", "sha224", "sha1", "md5"
)  # fmt: skip


def _strongest(pins: dict[str, str]) -> dict[str, str]:
    if not pins:
        return {}
    best = min(pins, key=lambda alg: (_STRENGTH.index(alg) if alg in _STRENGTH else 99, alg))
    return {best: pins[best]}


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
    sinks = Sinks(sorted({*pins, *(hashes or {})}))
    with open(path, "rb", buffering=0) as fh:  # one read, every algorithm
        while chunk := fh.read(CHUNK):
            sinks.update(chunk)
    seen = sinks.digests()
    try:
        check_file(path, size, pins, seen)
    except ChecksumError as exc:
        raise ChecksumError(f"{path} is corrupt: {exc}. Delete it and fetch it again.") from None
    return seen


def _local_source(url: str) -> Path | None:
    if hub.is_hub_id(url):
        hub.parse(url)  # a malformed one fails now, before anything is tried
        return None
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
    hints: Sequence[Hint] = (),
    backoff: float = 0.5,
    max_wait: float = 30.0,
    locks: bool | None = None,
) -> Path:
    """Download ``dest`` from the first of ``urls`` that works, verified, or raise.

    Args:
        urls: Mirrors in order: ``https://``/``http://`` URLs, ``file://`` URLs, plain paths,
            or Hub files ``hf://org/name@revision/path`` (resolved with a HEAD each time they
            are tried; their sha256 is checked even when ``hashes`` pins none).
        dest: The final path. When it exists (with the right ``size``) it is returned at the
            cost of one stat: no request, no hashing.
        size: The expected size in bytes, checked before the file is kept.
        hashes: ``{"md5": "<hex>", "sha256": None}``: the strongest algorithm given a value
            is computed while the bytes stream in and checked (one strong hash proves the
            bytes; a second would only cost CPU); None means unknown. With no value at all,
            kzoo warns, records the sha256 it saw in ``<dest>.sha256`` and checks later
            downloads against it. ``kzoo weights verify`` checks every pinned value.
        progress: Show a tqdm bar; None shows one only when stderr is a terminal.
        timeout: Seconds for ``(connect, read)``; a read timeout is the longest silence.
        retries: Extra attempts per URL after a transient failure.
        what: A name for messages (defaults to the file name).
        hints: Fixes to attach to the error when the file cannot be had (e.g. how to install
            a copy obtained elsewhere).
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
    sources = _sources(urls, dest, label, hints)
    pinned_by_caller = any((hashes or {}).values())
    pins = _checked_pins(dest, hashes, label, pinned_by_caller)
    created = _make_folder(dest.parent, label)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with cache.lock(dest, locks, label):
            if _complete(dest, size):  # another process finished it while we waited
                return dest
            part = cache.claim_partial(dest)
            bar = tqdm(total=size, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                       disable=not show, leave=False)  # fmt: skip
            with requests.Session() as session, bar:
                job = PartialDownload(dest, part, size, sorted(pins) or ["sha256"], label, bar,
                                      session, timeout, retries, backoff, max_wait)  # fmt: skip
                failures = _try_sources(job, sources, pins, dest, pinned_by_caller)
            if failures is None:
                return dest
    finally:
        if not dest.exists():
            _remove_empty(created)
    raise _failure(label, dest, part, failures, pinned_by_caller, hints)


def _sources(
    urls: list[str], dest: Path, label: str, hints: Sequence[Hint]
) -> list[tuple[str, Path | None]]:
    """``(url, local path or None)`` to try in order; raises when none may be tried."""
    if not urls:
        raise DownloadError(f"no URL to fetch {label} from. Received: urls=[]")
    sources = [(url, _local_source(url)) for url in urls]
    if is_offline():
        sources = [(url, path) for url, path in sources if path is not None]
    elif hub.hub_offline():  # HF_HUB_OFFLINE: no request to the Hub, other mirrors stay
        sources = [(url, path) for url, path in sources if not hub.is_hub_id(url)]
    if not sources:
        variable = "KZOO_OFFLINE" if is_offline() else "HF_HUB_OFFLINE"
        raise OfflineError(
            f"{label} is not in the kzoo cache and {variable}=1 forbids downloading it."
            f"\n  expected file: {dest}\n  or unset {variable} to fetch {urls[0]}",
            hints=hints,
        )
    return sources


def _checked_pins(
    dest: Path, hashes: Mapping[str, str | None] | None, label: str, pinned_by_caller: bool
) -> dict[str, str]:
    """The one hash the download is checked against (the strongest pinned, else recorded)."""
    unknown = sorted(alg for alg in {*(hashes or {})} if alg not in hashlib.algorithms_available)
    if unknown:
        raise KzooError(
            f"unknown hash algorithm {unknown[0]!r}. Received: hashes={dict(hashes or {})}"
        )
    pins = _strongest(_pins(dest, hashes))
    if not pinned_by_caller:
        log.warning(
            "%s has no pinned hash, so kzoo cannot tell a corrupted or replaced file from the "
            "real one; %s",
            label,
            f"checking it against the sha256 recorded in {_sidecar(dest)}"
            if pins
            else f"the sha256 seen will be recorded in {_sidecar(dest)} and checked later",
        )
    return pins


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _make_folder(folder: Path, label: str) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create {folder} for {label}: {exc.strerror or exc}. "
            "Set KZOO_HOME to a writable folder."
        ) from exc
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download created, where nothing else landed in them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (a partial kept for resuming, another writer's file)


def _try_sources(
    job: PartialDownload,
    sources: list[tuple[str, Path | None]],
    pins: dict[str, str],
    dest: Path,
    pinned_by_caller: bool,
) -> list[tuple[str, Exception]] | None:
    """Fetch from each source in turn until one verifies; None then, else each failure."""
    failures: list[tuple[str, Exception]] = []
    for position, (url, path) in enumerate(sources):
        try:
            from_hub = hub.is_hub_id(url)
            seen = _get_from_hub(job, url, pins) if from_hub else job.get(url, path, pins)
        except HubError as exc:
            failures.append((url, exc))
            if position < len(sources) - 1:
                log.warning("%s: %s; trying the next mirror", url, exc.message)
            continue
        except SourceFailed as exc:
            failures.append((url, exc))
            if position < len(sources) - 1:  # the final error lists them all
                log.warning("%s: %s; trying the next mirror", url, exc)
            continue
        except ChecksumError as exc:
            failures.append((url, exc))
            log.error("%s sent a corrupt %s: %s", url, job.label, exc)
            continue
        if not pinned_by_caller and not pins:  # a Hub's sha256 is recorded too
            with cache.atomic_write(_sidecar(dest)) as tmp:
                tmp.write_text(seen["sha256"] + "\n")
        _commit(job.part, dest)
        log.info("fetched %s from %s (%s)", job.label, url, ", ".join(seen.values()))
        return None
    return failures


def _get_from_hub(job: PartialDownload, url: str, pins: dict[str, str]) -> dict[str, str]:
    """Fetch an ``hf://`` source: resolve it, then GET where it points; return the digests.

    The HEAD (or this process's answer of the last 30 s: a file just located costs no second
    HEAD) names the file's sha256, which is checked whatever the caller pinned (a different
    pinned sha256 fails before any byte moves). The storage URL is signed, so the token stays
    with the Hub; a URL that stopped working (expired) is resolved afresh and the download
    resumes from where it stopped.
    """
    ident = hub.parse(url)
    if ident.filename is None:
        raise KzooError(
            f"a hub URL to fetch must name a file: hf://org/name@rev/FILE. Received: {url!r}"
        )
    job_algorithms, job_size = job.algorithms, job.size
    try:
        for attempt in (0, 1):
            resolved = hub.resolve(ident.repo, ident.filename, ident.rev, session=job.session,
                                   timeout=job.timeout, max_age=0 if attempt else 30)  # fmt: skip
            source_pins = dict(pins)
            info = resolved.info
            if info.sha256 is not None:
                want = pins.get("sha256")
                if want is not None and want != f"sha256:{info.sha256}":
                    raise ChecksumError(
                        f"the Hub's file has sha256 {info.sha256}, not the pinned "
                        f"{want.split(':', 1)[1]}: the repo changed at {resolved.commit}"
                    )
                source_pins = {"sha256": f"sha256:{info.sha256}"}
            if job.size is None and info.size is not None:
                job.size = info.size
            elif job.size is not None and info.size is not None and job.size != info.size:
                raise ChecksumError(f"the Hub's file has {info.size} bytes, not {job.size}")
            job.algorithms = sorted(source_pins) or list(job_algorithms)
            try:
                seen = job.get(resolved.location, None, source_pins, hub.headers_of(resolved))
            except SourceFailed as exc:
                if attempt or exc.unreachable:
                    raise
                log.info("%s: %s; resolving it again", url, exc)
                continue
            return seen
    finally:
        job.algorithms, job.size = job_algorithms, job_size
    raise AssertionError("unreachable")


def _failure(
    label: str,
    dest: Path,
    part: Path,
    failures: list[tuple[str, Exception]],
    pinned_by_caller: bool,
    hints: Sequence[Hint],
) -> DownloadError:
    """One error listing each URL and why it failed, and what to do about it."""
    hub_errors = [exc for _, exc in failures if isinstance(exc, HubError)]
    if hub_errors and len(hub_errors) == len(failures):  # the Hub's own words say what to do
        raise hub_errors[0]
    bad_bytes = any(isinstance(exc, ChecksumError) for _, exc in failures)
    lines = [
        f"  {url}: wrong bytes, deleted ({exc})"
        if isinstance(exc, ChecksumError)
        else f"  {url}: {exc}"
        for url, exc in failures
    ]
    notes = []
    if part.exists():
        notes.append(f"The partial file {part.name} is kept; the next call resumes it.")
    if bad_bytes and not pinned_by_caller:
        notes.append(
            f"The expected sha256 was recorded at the first download in {_sidecar(dest)}; "
            "if the source really changed, delete that file."
        )
    if all(getattr(exc, "unreachable", False) for _, exc in failures):
        notes.append(
            "No source could be reached. Offline? Set KZOO_OFFLINE=1 and kzoo uses only the "
            "cache, failing at once; or add a mirror you can reach with a KZOO_MANIFEST file "
            "(docs/downloads.md)."
        )
    error = ChecksumError if bad_bytes else DownloadError
    lines = [f"could not fetch {label} into {dest}; tried:", *lines, *notes]
    return error("\n".join(lines), hints=hints)


def _in_hf_cache(
    urls: list[str], size: int | None, hashes: Mapping[str, str | None] | None
) -> Path | None:
    """An ``hf://`` source's blob in a Hugging Face cache, its sha256 checked; else None.

    Used where it is: kzoo never writes into that cache, and a blob whose bytes are not what
    its name (or the pinned hash) says is skipped, not touched.
    """
    for url in urls:
        if not hub.is_hub_id(url):
            continue
        ident = hub.parse(url)
        commit = hf_cache.ref_commit(ident.repo, ident.rev) if ident.filename else None
        blob = hf_cache.snapshot_file(ident.repo, commit, ident.filename) if commit else None
        if blob is None:
            continue
        pinned = (hashes or {}).get("sha256") or hf_cache.blob_digest(blob)
        if not pinned:
            continue
        try:
            verify(blob, {**(hashes or {}), "sha256": pinned}, size=size)
        except ChecksumError as exc:
            log.warning("not using %s from the Hugging Face cache: %s", blob, exc)
            continue
        log.info("using %s from the Hugging Face cache (%s)", url, blob)
        return blob
    return None


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
    urls = [os.fspath(urls)] if isinstance(urls, (str, os.PathLike)) else [str(u) for u in urls]
    hit = _in_hf_cache(urls, size, kwargs.get("hashes"))
    if hit is not None:
        return hit
    if is_offline():  # name the expected path without touching a possibly read-only root
        return fetch(urls, cache.cache_root(root) / relpath, size=size, **kwargs)
    dest = cache.cache_root(root) / relpath
    created = _missing_folders(dest.parent)  # writable_path creates them to probe the disk
    try:
        return fetch(urls, cache.writable_path(relpath, root), size=size, **kwargs)
    finally:
        if not dest.exists():
            _remove_empty(created)
