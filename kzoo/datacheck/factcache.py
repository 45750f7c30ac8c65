"""The facts of files already checked, kept in kzoo's cache so a second check decodes nothing.

One file per checked folder, ``<cache root>/datacheck/<hash of the folder's path>.npz``, maps
each image's path inside the folder to its facts; an entry counts only while the file's size
and modification time (nanoseconds) are unchanged. The file is written atomically, and a cache
that cannot be read or written only costs time: the check logs it and goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from kzoo.datacheck.inspection import THUMB_SIDE, VERSION, FileFacts
from kzoo.download import atomic_write, cache_root, writable_path
from kzoo.errors import DownloadError

__all__ = ["cache_file", "load_facts", "save_facts"]

log = logging.getLogger("kzoo")

_FOLDER = "datacheck"
_FIELDS = [name for name in FileFacts._fields if name != "thumb"]


def cache_file(folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Where the facts of the images under ``folder`` are cached (the file may not exist)."""
    key = hashlib.sha256(os.path.realpath(folder).encode("utf-8", "surrogateescape")).hexdigest()
    return cache_root(root) / _FOLDER / f"{key[:24]}.npz"


def load_facts(
    folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> dict[str, FileFacts]:
    """The cached facts of ``folder``'s files by relative path; empty when there are none."""
    path = cache_file(folder, root)
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["version"]) != VERSION:
                return {}
            rows = json.loads(str(stored["rows"]))
            thumbs = stored["thumbs"]
    except (OSError, ValueError, KeyError) as error:
        log.warning("ignoring the unreadable data-check cache %s: %s", path, error)
        return {}
    facts = {}
    for (name, *values), thumb in zip(rows, thumbs, strict=True):
        record = dict(zip(_FIELDS, values, strict=True))
        facts[name] = FileFacts(**record, thumb=thumb.tobytes() if not record["error"] else b"")
    return facts


def save_facts(
    folder: str | os.PathLike[str],
    facts: dict[str, FileFacts],
    root: str | os.PathLike[str] | None = None,
) -> None:
    """Replace the cached facts of ``folder`` with ``facts`` (keyed by relative path)."""
    names = sorted(facts)
    thumbs = np.zeros((len(names), THUMB_SIDE * THUMB_SIDE), np.uint8)
    for index, name in enumerate(names):
        if facts[name].thumb:
            thumbs[index] = np.frombuffer(facts[name].thumb, np.uint8)
    rows = [[name, *(getattr(facts[name], field) for field in _FIELDS)] for name in names]
    try:
        target = writable_path(
            cache_file(folder, root).relative_to(cache_root(root)).as_posix(), root
        )
        with atomic_write(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, version=np.int64(VERSION), rows=np.array(json.dumps(rows)), thumbs=thumbs)
    except (OSError, DownloadError) as error:
        log.warning(
            "the data-check cache was not written (the next check decodes again): %s", error
        )
