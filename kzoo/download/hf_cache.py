"""A Hugging Face cache on this machine, read as a read-only mirror: kzoo never writes there.

huggingface_hub keeps a repo's files under ``$HF_HUB_CACHE`` (default ``$HF_HOME/hub``, with
``HF_HOME`` defaulting to ``~/.cache/huggingface``)::

    models--org--name/blobs/<etag>                 the bytes (an LFS file's etag is its sha256)
    models--org--name/snapshots/<commit>/<file>    a symlink into blobs/
    models--org--name/refs/<revision>              the commit a branch or tag pointed at

A file found here is used where it is, once its bytes match the hash its blob is named after
(:func:`snapshot_file` finds it, the caller checks it), so a model already downloaded by
timm or transformers costs no request and no second copy on disk.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["blob_digest", "hf_home", "hf_hub_cache", "ref_commit", "repo_folder", "snapshot_file"]

log = logging.getLogger("kzoo")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def hf_home() -> Path:
    """``$HF_HOME``, else ``~/.cache/huggingface`` (``$XDG_CACHE_HOME/huggingface`` if set)."""
    value = os.environ.get("HF_HOME", "")
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()
    return base / "huggingface"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    value = os.environ.get("HF_HUB_CACHE", "") or os.environ.get("HUGGINGFACE_HUB_CACHE", "")
    return Path(value).expanduser() if value else hf_home() / "hub"


def repo_folder(repo: str) -> str:
    """A model repo's folder: ``"timm/vgg19.tv_in1k"`` -> ``"models--timm--vgg19.tv_in1k"``."""
    return "models--" + repo.replace("/", "--")


def ref_commit(repo: str, revision: str) -> str | None:
    """The commit the Hugging Face cache recorded for a branch or tag, or None."""
    if _COMMIT.match(revision):
        return revision
    try:
        text = (hf_hub_cache() / repo_folder(repo) / "refs" / revision).read_text("ascii")
    except (OSError, ValueError):
        return None
    commit = text.strip()
    return commit if _COMMIT.match(commit) else None


def snapshot_file(repo: str, commit: str, filename: str) -> Path | None:
    """The blob behind ``snapshots/<commit>/<filename>``, or None when it is not there.

    Returns the resolved path (the blob itself), so its name is the etag it was stored under.
    """
    if not _COMMIT.match(commit) or ".." in Path(filename).parts:
        return None
    link = hf_hub_cache() / repo_folder(repo) / "snapshots" / commit / filename
    try:
        blob = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return blob if blob.is_file() else None


def blob_digest(blob: Path) -> str | None:
    """The sha256 a blob's name promises (LFS files), or None (git files are named by sha1)."""
    return blob.name if _SHA256.match(blob.name) else None
