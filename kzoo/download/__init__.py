"""Bytes into the cache: verified, atomic, resumable downloads. Knows no model.

* :mod:`.cache` - where files live (a writable root and read-only layers), atomic writes,
  locks, partial files of killed processes;
* :mod:`.fetcher` - :func:`fetch` a file from its mirrors, complete and verified or not at all;
  :func:`fetch_cached`, the one find-in-cache-or-fetch; :func:`verify` a cached file;
* :mod:`.stream` - streaming one source into a partial file (HTTP Range, the retry policy);
* :mod:`.sinks` - hashing and flushing the stream in background threads.

docs/downloads.md lists the guarantees.
"""

from __future__ import annotations

from kzoo.download.cache import (
    atomic_write,
    cache_root,
    claim_partial,
    find,
    lock,
    partial_path,
    readonly_layers,
    writable_path,
)
from kzoo.download.fetcher import fetch, fetch_cached, file_digest, is_offline, verify

__all__ = [
    "atomic_write",
    "cache_root",
    "claim_partial",
    "fetch",
    "fetch_cached",
    "file_digest",
    "find",
    "is_offline",
    "lock",
    "partial_path",
    "readonly_layers",
    "verify",
    "writable_path",
]
