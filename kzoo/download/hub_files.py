"""Files of Hugging Face Hub repos in kzoo's cache: which commit, what hash, and the bytes.

:func:`locate` answers "what is ``file`` of ``org/name`` at ``revision``" (its commit, sha256
or git etag, size) with as few requests as the situation allows:

* a full commit id that was seen before, or any revision offline (``KZOO_OFFLINE`` /
  ``HF_HUB_OFFLINE``): no request; the commit a branch was pinned to and the recorded file
  (kzoo's cache, else a Hugging Face cache) answer;
* online, a branch or tag costs one HEAD (branches move); the answer is pinned for later
  offline use. A Hub that cannot be reached falls back to the pinned answer, with a warning.

:func:`hub_file` then returns the file itself: from kzoo's cache, from a Hugging Face cache
(used where it is, hash checked) or downloaded and verified.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from kzoo.download import cache, hf_cache, hub
from kzoo.download.fetcher import fetch_cached
from kzoo.errors import DownloadError, HubError, OfflineError

__all__ = ["Located", "hub_file", "locate"]

log = logging.getLogger("kzoo")

PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class Located:
    """What a file of a repo is at the commit a revision stands for.

    Attributes:
        repo, filename: What was asked for.
        commit: The commit (the revision itself when it is one).
        info: Its sha256 (LFS) or git etag, and size.
        resolved: The HEAD's answer when one was made now, else None.
    """

    repo: str
    filename: str
    commit: str
    info: hub.FileInfo
    resolved: hub.Resolved | None = None

    @property
    def url(self) -> str:
        """``hf://org/name@<commit>/<file>``: the file, pinned to its commit."""
        return hub.HubId(self.repo, self.commit, self.filename).url()


def _offline_error(repo: str, revision: str, filename: str, what: str) -> OfflineError:
    setting = hub.offline_variable()
    variable = setting.split("=")[0]
    return OfflineError(
        f"hf://{repo}@{revision}/{filename}: {what}, and {setting} forbids asking the Hub. "
        f"Load it once online (kzoo then pins the commit it saw), copy a kzoo or Hugging Face "
        f"cache that holds it (KZOO_READONLY_CACHES, HF_HUB_CACHE), or unset {variable}."
    )


def locate(
    repo: str, filename: str, revision: str = "main", root: PathLike | None = None
) -> Located:
    """What ``filename`` of ``repo`` at ``revision`` is, asking the Hub only when needed.

    Raises:
        OfflineError: Offline and nothing cached answers.
        HubError: The Hub refused (no such repo, revision or file; gated).
        DownloadError: The Hub cannot be reached and nothing pinned answers.
    """
    if hub.is_commit(revision):
        info = hub.recorded_file(repo, revision, filename, root)
        if info is not None:
            return Located(repo, filename, revision, info)
        if hub.hub_offline():
            raise _offline_error(repo, revision, filename, "this commit's file is not cached")
        return _resolve(repo, filename, revision, root)
    if hub.hub_offline():
        return _pinned(repo, filename, revision, root, None)
    try:
        return _resolve(repo, filename, revision, root)
    except HubError:
        raise
    except DownloadError as exc:  # unreachable: what was pinned still holds
        located = _pinned(repo, filename, revision, root, exc)
        log.warning(
            "%s; using %s@%s, the commit %s pointed at when last seen",
            exc.message.splitlines()[0],
            repo,
            located.commit[:12],
            revision,
        )
        return located


def _resolve(repo: str, filename: str, revision: str, root: PathLike | None) -> Located:
    resolved = hub.resolve(repo, filename, revision)
    hub.pin_revision(repo, revision, resolved.commit, root)
    hub.record_file(repo, resolved.commit, filename, resolved.info, root)
    return Located(repo, filename, resolved.commit, resolved.info, resolved)


def _pinned(
    repo: str, filename: str, revision: str, root: PathLike | None, cause: DownloadError | None
) -> Located:
    commit = hub.pinned_commit(repo, revision, root)
    info = hub.recorded_file(repo, commit, filename, root) if commit else None
    if commit is None or info is None:
        what = (
            f"kzoo has never resolved revision {revision!r}"
            if commit is None
            else f"the file at commit {commit[:12]} is not cached"
        )
        if cause is not None:
            raise cause
        raise _offline_error(repo, revision, filename, what)
    return Located(repo, filename, commit, info)


def hub_file(
    repo: str,
    filename: str,
    revision: str = "main",
    root: PathLike | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """The file ``filename`` of ``repo`` at ``revision``, complete and verified.

    LFS files are checked against the sha256 the Hub names (through :func:`fetch`, so a
    download resumes across processes and happens once); small git files against their git
    blob sha1. A Hugging Face cache that holds the file serves it where it is.

    Raises:
        OfflineError, HubError, DownloadError, ChecksumError: As :func:`locate` and
            :func:`kzoo.download.fetch`.
    """
    located = locate(repo, filename, revision, root)
    commit, info = located.commit, located.info
    rel = hub.small_relpath(repo, commit, filename)
    if info.sha256 is not None:
        return fetch_cached(
            rel,
            [located.url],
            root=root,
            size=info.size,
            hashes={"sha256": info.sha256},
            progress=progress,
            what=f"{repo}/{filename}",
        )
    hit = cache.find(rel, root) or _git_file_in_hf_cache(repo, commit, filename, info)
    if hit is not None:
        return hit
    if hub.hub_offline():
        raise _offline_error(repo, commit, filename, "the file is not cached")
    resolved = located.resolved or hub.resolve(repo, filename, commit, max_age=30)
    return hub.fetch_small(resolved, root)


def _git_file_in_hf_cache(repo: str, commit: str, filename: str, info: hub.FileInfo) -> Path | None:
    """A small git file in a Hugging Face cache whose bytes are the blob its etag names."""
    blob = hf_cache.snapshot_file(repo, commit, filename)
    if blob is None or blob.stat().st_size > 16 << 20:
        return None
    want = info.etag or blob.name
    if hub.git_blob_sha1(blob.read_bytes()) != want:
        log.warning("not using %s from the Hugging Face cache: not git blob %s", blob, want)
        return None
    return blob
