"""The Hugging Face Hub's file protocol: ids, tokens, resolving a file, pinned revisions.

A file is resolved with ``HEAD {endpoint}/{repo}/resolve/{revision}/{file}``, following only
relative redirects (a renamed repo). An LFS file answers 302 with ``Location`` (a signed URL on
a storage host), ``X-Repo-Commit``, ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``; a
small git file answers 200 with ``ETag`` (its git blob sha1). Errors carry ``X-Error-Code``
and become typed :class:`~kzoo.errors.HubError` subclasses that say what to do.

* The endpoint is ``HF_ENDPOINT`` (a mirror), else the public Hub.
* The token is ``HF_TOKEN``, else the file at ``HF_TOKEN_PATH`` (default ``$HF_HOME/token``);
  it is sent to the endpoint's host only, never to the storage host a redirect names.
* ``HF_HUB_OFFLINE=1`` means what ``KZOO_OFFLINE=1`` means: no request at all.
* A revision resolved online is pinned in kzoo's cache (``hub/models--org--name/refs/``), and
  what each file resolved to is recorded beside it, so an offline load of the same id uses the
  commit it saw and costs no request.

The bytes themselves go through :func:`kzoo.download.fetch` (:mod:`.fetcher` treats
``hf://org/name@revision/file`` URLs as sources) or, for small git files, :func:`fetch_small`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import requests

from kzoo.download import cache, hf_cache
from kzoo.download.stream import unreachable_reason as _unreachable
from kzoo.errors import (
    ChecksumError,
    DownloadError,
    EntryNotFoundError,
    GatedRepoError,
    HubError,
    KzooError,
    OfflineError,
    RepoNotFoundError,
    RevisionNotFoundError,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "FileInfo",
    "HubId",
    "Resolved",
    "auth_headers",
    "endpoint",
    "fetch_small",
    "forget_resolved",
    "git_blob_sha1",
    "headers_of",
    "hub_offline",
    "is_commit",
    "is_hub_id",
    "offline_variable",
    "parse",
    "pin_revision",
    "pinned_commit",
    "record_file",
    "recorded_file",
    "resolve",
    "resolve_url",
    "small_relpath",
    "token",
]

log = logging.getLogger("kzoo")

DEFAULT_ENDPOINT = "https://huggingface.co"
SCHEME = "hf://"
_TRUE = {"1", "true", "yes", "on"}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SMALL_LIMIT = 16 << 20  # a git (non-LFS) file bigger than this is not a config file
_REDIRECTS = 5
_TIMEOUT = (10, 60)


@dataclasses.dataclass(frozen=True)
class HubId:
    """``hf://org/name[@revision][/file]`` taken apart.

    Attributes:
        repo: ``"org/name"``.
        revision: A branch, tag or commit; None for the default branch (``main``).
        filename: A file in the repo (``"model.safetensors"``), or None for the repo itself.
    """

    repo: str
    revision: str | None = None
    filename: str | None = None

    @property
    def rev(self) -> str:
        """The revision, ``"main"`` when none was given."""
        return self.revision or "main"

    def url(self, filename: str | None = None, revision: str | None = None) -> str:
        """The ``hf://`` form, e.g. ``hf://timm/vgg19.tv_in1k@<commit>/model.safetensors``."""
        rev = revision or self.revision
        file = filename or self.filename
        return f"{SCHEME}{self.repo}{'@' + rev if rev else ''}{'/' + file if file else ''}"


def is_hub_id(name: object) -> bool:
    """Whether ``name`` is an ``hf://`` id (a string starting with ``hf://``)."""
    return isinstance(name, str) and name.strip().lower().startswith(SCHEME)


def is_commit(revision: str | None) -> bool:
    """Whether ``revision`` is a full 40-hex commit id (which never moves)."""
    return bool(revision) and bool(_COMMIT.match(revision or ""))


def parse(hf_id: str) -> HubId:
    """Take ``hf://org/name[@revision][/path/in/repo]`` apart.

    A revision holds no ``/`` in this form (``refs/pr/1`` cannot be written; use its commit).

    Raises:
        KzooError: Not an ``hf://`` id, or a malformed one.
    """
    text = hf_id.strip()
    if not is_hub_id(text):
        raise KzooError(f"not a hub id: expected 'hf://org/name[@revision]'. Received: {hf_id!r}")
    body = text[len(SCHEME) :]
    head, at, tail = body.partition("@")
    parts = head.split("/")
    if at:
        revision, _, filename = tail.partition("/")
        if len(parts) != 2 or not revision:
            raise _malformed(hf_id)
    else:
        revision, filename = None, "/".join(parts[2:])
        parts = parts[:2]
    if len(parts) != 2 or not all(_PART.match(p) for p in parts):
        raise _malformed(hf_id)
    file_parts = filename.split("/") if filename else []
    if any(p in ("", ".", "..") for p in file_parts):
        raise _malformed(hf_id)
    return HubId("/".join(parts), revision or None, filename or None)


def _malformed(hf_id: str) -> KzooError:
    return KzooError(
        "malformed hub id: expected 'hf://org/name', 'hf://org/name@revision' or "
        f"'hf://org/name@revision/path/in/repo' (e.g. 'hf://timm/vgg19.tv_in1k'). "
        f"Received: {hf_id!r}"
    )


def endpoint() -> str:
    """``HF_ENDPOINT`` (a mirror) without its trailing slash, else the public Hub."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """``KZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: no request to the Hub at all."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("KZOO_OFFLINE", "HF_HUB_OFFLINE")
    )


def offline_variable() -> str:
    """The variable that made :func:`hub_offline` true, as ``NAME=1`` for messages."""
    return _offline_variable()


def _offline_variable() -> str:
    kzoo = os.environ.get("KZOO_OFFLINE", "").strip().lower() in _TRUE
    return "KZOO_OFFLINE=1" if kzoo else "HF_HUB_OFFLINE=1"


def token() -> str | None:
    """``HF_TOKEN``, else the first line of ``HF_TOKEN_PATH`` (default ``$HF_HOME/token``)."""
    value = os.environ.get("HF_TOKEN", "").strip()
    if value:
        return value
    path = os.environ.get("HF_TOKEN_PATH", "")
    file = Path(path).expanduser() if path else hf_cache.hf_home() / "token"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        lines = file.read_text("utf-8").split()
        return lines[0] if lines else None
    return None


def _same_host(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def auth_headers(url: str) -> dict[str, str]:
    """``Authorization: Bearer <token>`` for a URL on the endpoint's host, else nothing.

    A redirect's storage URL is signed: the token never leaves the Hub.
    """
    value = token()
    return {"Authorization": f"Bearer {value}"} if value and _same_host(url, endpoint()) else {}


def resolve_url(repo: str, filename: str, revision: str) -> str:
    """``{endpoint}/{repo}/resolve/{revision}/{filename}``, each part quoted."""
    rev = urllib.parse.quote(revision, safe="")
    return f"{endpoint()}/{repo}/resolve/{rev}/{urllib.parse.quote(filename)}"


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What a file of a repo at a commit is: enough to find or verify it with no request.

    Attributes:
        sha256: An LFS file's sha256 (hex), None for a git file.
        etag: A git file's blob sha1 (hex), None for an LFS file.
        size: Its size in bytes, when known.
    """

    sha256: str | None
    etag: str | None
    size: int | None


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A file resolved by one HEAD.

    Attributes:
        repo, filename, revision: What was asked for.
        commit: ``X-Repo-Commit``: the commit the revision points at now.
        info: Its sha256 (LFS) or git etag, and size.
        location: Where to GET the bytes: the signed storage URL of an LFS file, else the
            resolve URL (fetch it with :func:`auth_headers`).
    """

    repo: str
    filename: str
    revision: str
    commit: str
    info: FileInfo
    location: str

    @property
    def lfs(self) -> bool:
        return self.info.sha256 is not None


def _etag(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    value = value.removeprefix("W/").strip('"').lower()
    return value or None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def resolve(
    repo: str,
    filename: str,
    revision: str = "main",
    *,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = _TIMEOUT,
    retries: int = 3,
    backoff: float = 0.5,
    max_age: float = 0.0,
) -> Resolved:
    """Resolve one file with a HEAD request: its commit, hash, size and where its bytes are.

    Args:
        max_age: Seconds for which an answer this process already got (same endpoint, repo,
            file, revision and token) still serves, so that a file located and then fetched
            costs one HEAD. Signed URLs live far longer; a fetch that fails with a reused one
            resolves afresh. 0 always asks.

    Raises:
        OfflineError: ``KZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set (no request is made).
        RepoNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError: The Hub
            said so (never retried).
        DownloadError: The Hub cannot be reached, or answers what the protocol does not allow.
    """
    if hub_offline():
        raise OfflineError(
            f"{SCHEME}{repo}@{revision}/{filename} would need a request to {endpoint()}, and "
            f"{_offline_variable()} forbids it; load it once online (the revision is then "
            "pinned in kzoo's cache) or use a commit that is cached"
        )
    key = (endpoint(), repo, filename, revision, token())
    with _recent_lock:
        recent = _recent.get(key)
    if recent is not None and time.monotonic() - recent[0] <= max_age:
        return recent[1]
    url = resolve_url(repo, filename, revision)
    own = session is None
    session = session or requests.Session()
    try:
        for attempt in range(retries + 1):
            try:
                resolved = _resolve_once(session, url, repo, filename, revision, timeout)
            except _Transient as exc:
                if attempt >= retries:
                    raise DownloadError(
                        f"cannot resolve {SCHEME}{repo}@{revision}/{filename} at {endpoint()}: "
                        f"{exc} (gave up after {attempt + 1} attempts). Offline? Set "
                        "HF_HUB_OFFLINE=1 to use what is cached, or HF_ENDPOINT for a mirror."
                    ) from None
                wait = min(backoff * 2**attempt, 30.0) if exc.wait is None else exc.wait
                log.warning("%s: %s; retrying in %.2f s", url, exc, wait)
                time.sleep(min(wait, 30.0))
                continue
            with _recent_lock:  # the answer for a branch is the answer for its commit too
                _recent[key] = _recent[(*key[:3], resolved.commit, key[4])] = (
                    time.monotonic(),
                    resolved,
                )
                while len(_recent) > 64:  # oldest first: dicts keep insertion order
                    _recent.pop(next(iter(_recent)))
            return resolved
    finally:
        if own:
            session.close()
    raise AssertionError("unreachable")


# The last answers of this process, for resolve(max_age=...): key -> (monotonic time, answer)
_recent: dict[tuple[str, ...], tuple[float, Resolved]] = {}
_recent_lock = threading.Lock()


def forget_resolved() -> None:
    """Drop the answers this process remembers, so that the next :func:`resolve` asks."""
    with _recent_lock:
        _recent.clear()


class _Transient(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


def _resolve_once(
    session: requests.Session,
    url: str,
    repo: str,
    filename: str,
    revision: str,
    timeout: float | tuple[float, float],
) -> Resolved:
    for _ in range(_REDIRECTS + 1):
        headers = {"Accept-Encoding": "identity", **auth_headers(url)}
        try:
            resp = session.head(url, headers=headers, allow_redirects=False, timeout=timeout)
        except requests.exceptions.SSLError as exc:
            raise DownloadError(
                f"TLS error talking to {endpoint()} (verification stays on; point "
                f"REQUESTS_CA_BUNDLE at your CA bundle behind an inspecting proxy): {exc}"
            ) from None
        except requests.RequestException as exc:
            unreachable = _unreachable(url, exc, timeout)
            if unreachable:  # nobody listens: asking again changes nothing
                raise DownloadError(
                    f"cannot resolve {SCHEME}{repo}@{revision}/{filename}: {unreachable}. "
                    "Offline? Set HF_HUB_OFFLINE=1 to use what is cached, or HF_ENDPOINT for "
                    "a mirror."
                ) from None
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        status = resp.status_code
        location = resp.headers.get("Location")
        if status in (301, 302, 303, 307, 308) and location:
            target = urllib.parse.urlsplit(location)
            if not target.netloc:  # relative: still the Hub (a renamed repo); follow it
                url = urllib.parse.urljoin(url, location)
                continue
            return _resolved(resp, repo, filename, revision, location, redirected=True)
        if status == 200:
            return _resolved(resp, repo, filename, revision, url, redirected=False)
        if status in (408, 429) or status >= 500:
            after = resp.headers.get("Retry-After", "")
            raise _Transient(f"HTTP {status}", float(after) if after.isdigit() else None)
        raise _hub_error(resp, repo, filename, revision)
    raise DownloadError(f"more than {_REDIRECTS} redirects resolving {url}")


def _resolved(
    resp: requests.Response,
    repo: str,
    filename: str,
    revision: str,
    location: str,
    *,
    redirected: bool,
) -> Resolved:
    headers = resp.headers
    commit = (headers.get("X-Repo-Commit") or "").strip().lower()
    if not _COMMIT.match(commit):
        raise DownloadError(
            f"{endpoint()} answered {resp.status_code} for {repo}@{revision}/{filename} without "
            "an X-Repo-Commit header: is HF_ENDPOINT a Hugging Face Hub (or a mirror of it)? "
            f"Received: X-Repo-Commit={headers.get('X-Repo-Commit')!r}"
        )
    linked = _etag(headers.get("X-Linked-Etag"))
    if linked is not None and re.fullmatch(r"[0-9a-f]{64}", linked):
        size = _int(headers.get("X-Linked-Size"))
        info = FileInfo(sha256=linked, etag=None, size=size)
    else:
        size = _int(headers.get("X-Linked-Size")) or _int(headers.get("Content-Length"))
        info = FileInfo(sha256=None, etag=_etag(headers.get("ETag")), size=size)
    if redirected and info.sha256 is None:
        raise DownloadError(
            f"{repo}@{revision}/{filename} redirects to another host but names no sha256 "
            "(X-Linked-Etag): kzoo cannot verify the bytes, so it does not fetch them"
        )
    return Resolved(repo, filename, revision, commit, info, location)


def _hub_error(resp: requests.Response, repo: str, filename: str, revision: str) -> HubError:
    code = resp.headers.get("X-Error-Code")
    status = resp.status_code
    page = f"{endpoint()}/{repo}"
    has_token = token() is not None
    if code == "GatedRepo":
        fix = (
            "the token's account has not been granted access yet (accepted conditions can "
            "take a while to be approved)"
            if has_token
            else "then set HF_TOKEN (or write the token to HF_TOKEN_PATH, default "
            "$HF_HOME/token) to a read token of that account"
        )
        return GatedRepoError(
            f"{repo} is a gated repo: log in at {page} and accept its conditions; {fix}. "
            f"Received: HTTP {status} for {filename}",
            code=code,
            repo=repo,
        )
    if code == "RevisionNotFound":
        return RevisionNotFoundError(
            f"{repo} has no revision {revision!r}: use a branch, a tag or a full commit id "
            f"(see {page}/commits/main). Received: HTTP {status}",
            code=code,
            repo=repo,
        )
    if code == "EntryNotFound":
        return EntryNotFoundError(
            f"{repo}@{revision} has no file {filename!r} (see {page}/tree/{revision}). "
            f"Received: HTTP {status}",
            code=code,
            repo=repo,
        )
    if code == "RepoNotFound" or status in (401, 404):
        private = (
            "the token given cannot see it (a private repo of another account?)"
            if has_token
            else "if it is private, set HF_TOKEN to a read token that can see it"
        )
        return RepoNotFoundError(
            f"no model repo {repo!r} at {endpoint()}: check the spelling ('org/name', as in "
            f"{SCHEME}timm/vgg19.tv_in1k); {private}. Received: HTTP {status}",
            code=code,
            repo=repo,
        )
    return HubError(
        f"{endpoint()} refused {repo}@{revision}/{filename}: HTTP {status} {resp.reason} "
        f"(X-Error-Code: {code or 'none'})",
        code=code,
        repo=repo,
    )


# -- what kzoo's cache remembers ---------------------------------------------------------


def _repo_rel(repo: str) -> str:
    return f"hub/{hf_cache.repo_folder(repo)}"


def _quoted(revision: str) -> str:
    return urllib.parse.quote(revision, safe="")


def pin_revision(repo: str, revision: str, commit: str, root: str | os.PathLike | None) -> None:
    """Remember that ``revision`` pointed at ``commit`` (``hub/models--org--name/refs/``).

    A cache that cannot be written (read-only) only loses the pin, with a log line.
    """
    if is_commit(revision):
        return
    rel = f"{_repo_rel(repo)}/refs/{_quoted(revision)}"
    hit = cache.find(rel, root)
    with contextlib.suppress(OSError):
        if hit is not None and hit.read_text("ascii").strip() == commit:
            return
    try:
        with cache.atomic_write(cache.writable_path(rel, root)) as tmp:
            tmp.write_text(commit + "\n", encoding="ascii")
    except (DownloadError, OSError) as exc:
        log.warning("could not pin %s@%s to %s in kzoo's cache: %s", repo, revision, commit, exc)


def pinned_commit(repo: str, revision: str, root: str | os.PathLike | None) -> str | None:
    """The commit ``revision`` was last resolved to (kzoo's cache, then the HF cache)."""
    if is_commit(revision):
        return revision
    hit = cache.find(f"{_repo_rel(repo)}/refs/{_quoted(revision)}", root)
    if hit is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            commit = hit.read_text("ascii").strip()
            if _COMMIT.match(commit):
                return commit
    return hf_cache.ref_commit(repo, revision)


def _record_rel(repo: str, commit: str, filename: str) -> str:
    return f"{_repo_rel(repo)}/files/{commit}/{filename}.json"


def record_file(
    repo: str, commit: str, filename: str, info: FileInfo, root: str | os.PathLike | None
) -> None:
    """Remember what ``filename`` at ``commit`` is (a commit never changes, so neither does it)."""
    rel = _record_rel(repo, commit, filename)
    if cache.find(rel, root) is not None:
        return
    try:
        with cache.atomic_write(cache.writable_path(rel, root)) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(info)) + "\n", encoding="utf-8")
    except (DownloadError, OSError) as exc:
        log.warning("could not record %s@%s/%s in kzoo's cache: %s", repo, commit, filename, exc)


def recorded_file(
    repo: str, commit: str, filename: str, root: str | os.PathLike | None
) -> FileInfo | None:
    """What :func:`record_file` remembered, else what the HF cache's blob name says, else None."""
    hit = cache.find(_record_rel(repo, commit, filename), root)
    if hit is not None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(hit.read_text("utf-8"))
            return FileInfo(data.get("sha256"), data.get("etag"), data.get("size"))
    blob = hf_cache.snapshot_file(repo, commit, filename)
    if blob is None:
        return None
    sha256 = hf_cache.blob_digest(blob)
    etag = blob.name if sha256 is None and re.fullmatch(r"[0-9a-f]{40}", blob.name) else None
    if sha256 is None and etag is None:  # a copy not named by its hash (no symlinks): unknown
        return None
    return FileInfo(sha256, etag, blob.stat().st_size)


def small_relpath(repo: str, commit: str, filename: str) -> str:
    """Where kzoo keeps a small git file (``config.json``) of a repo at a commit."""
    return f"{_repo_rel(repo)}/snapshots/{commit}/{filename}"


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data``: what the Hub sends as a git file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def fetch_small(
    resolved: Resolved,
    root: str | os.PathLike | None,
    *,
    timeout: float | tuple[float, float] = _TIMEOUT,
) -> Path:
    """GET a small git file (``config.json``) and keep it, its git blob sha1 checked.

    One process fetches it (a file lock); the file lands atomically under
    :func:`small_relpath`, so a path that exists is complete and verified.

    Raises:
        ChecksumError: The bytes do not match the ETag (nothing is kept).
        DownloadError: The request failed.
    """
    rel = small_relpath(resolved.repo, resolved.commit, resolved.filename)
    dest = cache.writable_path(rel, root)
    label = f"{resolved.repo}@{resolved.commit[:12]}/{resolved.filename}"
    with cache.lock(dest, None, label):
        if dest.exists():
            return dest
        headers = {"Accept-Encoding": "identity", **auth_headers(resolved.location)}
        try:
            resp = requests.get(resolved.location, headers=headers, timeout=timeout, stream=True)
        except requests.RequestException as exc:
            raise DownloadError(f"could not fetch {label}: {type(exc).__name__}: {exc}") from None
        with resp:
            if resp.status_code != 200:
                raise _hub_error(resp, resolved.repo, resolved.filename, resolved.commit)
            data = resp.raw.read(_SMALL_LIMIT + 1, decode_content=False)
        if len(data) > _SMALL_LIMIT:
            raise DownloadError(f"{label} is over {_SMALL_LIMIT >> 20} MiB: not a config file")
        want = resolved.info.etag
        if resolved.info.size is not None and len(data) != resolved.info.size:
            raise ChecksumError(
                f"{label}: expected {resolved.info.size} bytes, got {len(data)}; nothing kept"
            )
        if want and re.fullmatch(r"[0-9a-f]{40}", want) and git_blob_sha1(data) != want:
            raise ChecksumError(
                f"{label}: the bytes are not git blob {want} (got {git_blob_sha1(data)}); "
                "nothing kept"
            )
        with cache.atomic_write(dest) as tmp:
            tmp.write_bytes(data)
    return dest


def headers_of(resolved: Resolved) -> Mapping[str, str]:
    """The extra headers a GET of ``resolved.location`` takes (the token, on the Hub only)."""
    return auth_headers(resolved.location)
