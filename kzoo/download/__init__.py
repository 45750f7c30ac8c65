"""Bytes into the cache: verified, atomic, resumable downloads. Knows no model.

* :mod:`.cache` - where files live (a writable root and read-only layers), atomic writes,
  locks, partial files of killed processes;
* :mod:`.fetcher` - :func:`fetch` a file from its mirrors, complete and verified or not at all;
  :func:`fetch_cached`, the one find-in-cache-or-fetch; :func:`verify` a cached file;
* :mod:`.stream` - streaming one source into a partial file (HTTP Range, the retry policy);
* :mod:`.sinks` - hashing and flushing the stream in background threads;
* :mod:`.hub` - the Hugging Face Hub's file protocol (``hf://org/name@rev/file``: resolve,
  token, typed errors, pinned revisions); :mod:`.hf_cache` - a Hugging Face cache read as a
  read-only mirror; :mod:`.hub_files` - :func:`hub_file`, a repo's file by revision.

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
from kzoo.download.hub import is_hub_id
from kzoo.download.hub_files import hub_file, locate

__all__ = [
    "atomic_write",
    "cache_root",
    "claim_partial",
    "fetch",
    "fetch_cached",
    "file_digest",
    "find",
    "hub_file",
    "is_hub_id",
    "is_offline",
    "locate",
    "lock",
    "partial_path",
    "readonly_layers",
    "verify",
    "writable_path",
]
