"""Where cached features live: RAM, a spill file past a budget, or a keyed folder kept on disk.

No Keras here: ``kzoo cache`` lists and prunes the kept features without loading a backend.

* :class:`ArrayWriter` - rows appended into one preallocated array, in RAM or memory-mapped;
* :class:`FeatureSink` - which of those each extracted array gets (the memory budget);
* the disk store - one folder per key under ``<kzoo cache>/features/``, written to a temporary
  folder and renamed into place, so a folder that exists is complete;
  :func:`read_entry`, :func:`write_entry`, :func:`list_entries`, :func:`prune_entries`;
* :func:`cache_key`, :func:`digest_arrays`, :func:`digest_files` - what a key is made of.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from kzoo.download import cache_root
from kzoo.errors import TransferError

__all__ = [
    "ENTRY_VERSION",
    "ArrayWriter",
    "CachedFeatures",
    "FeatureEntry",
    "FeatureSink",
    "cache_key",
    "default_budget",
    "digest_arrays",
    "digest_files",
    "features_root",
    "list_entries",
    "prune_entries",
    "read_entry",
    "seal_entry",
    "write_entry",
]

logger = logging.getLogger("kzoo")

ENTRY_VERSION = 1  # part of every key: a change of layout never reads an old entry
DEFAULT_BUDGET_FRACTION = 0.25
_META = "meta.json"
_TMP_PREFIX = ".tmp-"


def default_budget() -> int:
    """Bytes of RAM cached features may take: a quarter of the memory available now."""
    return int(psutil.virtual_memory().available * DEFAULT_BUDGET_FRACTION)


def features_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of kept features: ``<kzoo cache root>/features``."""
    return cache_root(root) / "features"


# -- arrays in RAM or on disk ----------------------------------------------------------------


class ArrayWriter:
    """Rows appended into one preallocated array: in RAM, or a memory-mapped raw file.

    Args:
        row_shape: The shape of one row (one image's features).
        dtype: The array's dtype.
        capacity: The number of rows when known beforehand (an upper bound is fine: the
            unused tail is dropped); None lets the file grow as rows arrive.
        path: The raw file to write, or None to keep the array in RAM (needs ``capacity``).
    """

    def __init__(
        self,
        row_shape: tuple[int, ...],
        dtype: Any,
        capacity: int | None,
        path: Path | None = None,
    ) -> None:
        self.row_shape, self.dtype, self.path = tuple(row_shape), np.dtype(dtype), path
        self.count = 0
        self._array: np.ndarray | None = None
        self._file = None
        if path is None:
            if capacity is None:
                raise ValueError("an ArrayWriter in RAM needs its capacity")
            self._array = np.empty((capacity, *self.row_shape), self.dtype)
        elif capacity is not None:
            self._array = np.memmap(path, self.dtype, "w+", shape=(capacity, *self.row_shape))
        else:
            self._file = open(path, "wb")  # noqa: SIM115 - closed by finish() or close()

    def append(self, rows: Any) -> None:
        rows = np.asarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise TransferError(
                f"a batch has rows of shape {rows.shape[1:]} where the first had "
                f"{self.row_shape}; every batch must give the same shape"
            )
        end = self.count + len(rows)
        if self._file is not None:
            self._file.write(np.ascontiguousarray(rows).tobytes())
        elif end > len(self._array):
            raise TransferError(
                f"the data gave more than the {len(self._array)} rows it announced (its "
                "cardinality): it changed while it was read"
            )
        else:
            self._array[self.count : end] = rows
        self.count = end

    def finish(self) -> np.ndarray:
        """The rows written: the RAM array, or a read-only memory map of the file."""
        if self.path is None:
            return self._array[: self.count]
        if self._file is not None:
            self._file.close()
            self._file = None
        else:
            self._array.flush()
            self._array = None  # unmap before truncating the unused tail
            with open(self.path, "rb+") as fh:
                fh.truncate(self.count * self.dtype.itemsize * math.prod(self.row_shape))
        return _open_raw(self.path, self.dtype, (self.count, *self.row_shape))

    def close(self) -> None:
        """Give up: close the file (its owner deletes it)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._array = None


def _open_raw(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if shape[0] == 0:  # mmap cannot map an empty file
        return np.empty(shape, dtype)
    return np.memmap(path, dtype, "r", shape=shape)


@dataclass
class CachedFeatures:
    """One pass of a feature model over some data, with the targets it came with.

    Attributes:
        features: ``(n, ...)`` float32, in RAM or a read-only memory map.
        targets: ``(n, ...)`` or None (inputs without targets).
        sample_weights: ``(n,)`` or None.
        batch_size: The data's own batch size (a dataset's), else None.
    """

    features: np.ndarray
    targets: np.ndarray | None = None
    sample_weights: np.ndarray | None = None
    batch_size: int | None = None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def on_disk(self) -> bool:
        """Whether the features are a memory map rather than RAM."""
        return isinstance(self.features, np.memmap)

    def arrays(self) -> dict[str, np.ndarray]:
        named = {
            "features": self.features,
            "targets": self.targets,
            "sample_weights": self.sample_weights,
        }
        return {name: array for name, array in named.items() if array is not None}


class FeatureSink:
    """Decides where each extracted array goes and cleans up what was temporary.

    Args:
        budget: Bytes of RAM one array may take; a larger (or unknown-size) array goes to a
            spill file, unlinked as soon as it is mapped, so nothing outlives the process.
        folder: When given, every array is written as a file in it (a disk-store entry).
        spill_folder: Where spill files go (default: the system's temporary folder).
    """

    def __init__(
        self, budget: int, folder: Path | None = None, spill_folder: Path | None = None
    ) -> None:
        self.budget, self.folder = budget, folder
        self.spill_folder = spill_folder or Path(tempfile.gettempdir()) / "kzoo-features"
        self._spilled: list[Path] = []

    def writer(
        self, name: str, row_shape: tuple[int, ...], dtype: Any, capacity: int | None
    ) -> ArrayWriter:
        if self.folder is not None:
            return ArrayWriter(row_shape, dtype, capacity, self.folder / f"{name}.bin")
        nbytes = None if capacity is None else capacity * np.dtype(dtype).itemsize
        nbytes = None if nbytes is None else nbytes * math.prod(row_shape)
        if nbytes is not None and nbytes <= self.budget:
            return ArrayWriter(row_shape, dtype, capacity)
        path = self.spill_folder / f"spill-{os.getpid()}-{uuid.uuid4().hex}-{name}.bin"
        try:
            self.spill_folder.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as error:
            raise TransferError(
                f"the cached {name} need {_size(nbytes)} and exceed the memory budget of "
                f"{_size(self.budget)}, but {self.spill_folder} cannot be written to spill "
                "them: set KZOO_HOME to a writable folder, or raise feature_memory. "
                f"Received: {type(error).__name__}: {error}"
            ) from error
        self._spilled.append(path)
        logger.info(
            "feature cache: %s (%s) exceed the memory budget of %s; spilling to %s",
            name, _size(nbytes), _size(self.budget), path,
        )  # fmt: skip
        return ArrayWriter(row_shape, dtype, capacity, path)

    def release(self) -> None:
        """Unlink the spill files; their memory maps stay readable until dropped (POSIX)."""
        for path in self._spilled:
            with contextlib.suppress(OSError):
                path.unlink()
        self._spilled.clear()


def _size(nbytes: int | None) -> str:
    return "an unknown size" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


# -- what a key is made of --------------------------------------------------------------------


def cache_key(parts: dict[str, Any]) -> str:
    """A hex key for a JSON-able description of everything that determines the features."""
    text = json.dumps({"entry_version": ENTRY_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def digest_arrays(arrays: Iterable[Any], chunk_rows: int = 1024) -> str:
    """An ordered content hash of arrays (shape, dtype and bytes), read in chunks of rows."""
    digest = hashlib.blake2b(digest_size=20)
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.asarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        for start in range(0, max(len(array), 1) if array.ndim else 1, chunk_rows):
            part = array[start : start + chunk_rows] if array.ndim else array
            digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def digest_files(paths: Iterable[str | os.PathLike[str]]) -> str:
    """A hash of files' paths, sizes and modification times, in the order given.

    Raises:
        TransferError: A file no longer exists.
    """
    digest = hashlib.blake2b(digest_size=20)
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as error:
            raise TransferError(f"cannot read {path}: {error}") from error
        digest.update(f"{os.fspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- the disk store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureEntry:
    """One kept set of features, as ``kzoo cache`` lists it.

    Attributes:
        key: The folder name: a hash of everything that determined the features.
        path: The folder.
        rows: Images in it.
        nbytes: Bytes on disk.
        created: When it was written (seconds since the epoch).
        last_used: When it was last written or read.
        description: What it holds (the base, the cut, which data), for people.
    """

    key: str
    path: Path
    rows: int
    nbytes: int
    created: float
    last_used: float
    description: dict[str, Any]


def _arrays_of(folder: Path) -> tuple[dict[str, Any], dict[str, tuple]] | None:
    """An entry's metadata and ``name -> (path, dtype, shape)``, or None if it is incomplete."""
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        arrays = {
            name: (folder / f"{name}.bin", np.dtype(spec["dtype"]), tuple(spec["shape"]))
            for name, spec in meta["arrays"].items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for path, dtype, shape in arrays.values():
        if not path.is_file() or path.stat().st_size != math.prod(shape) * dtype.itemsize:
            return None
    return meta, arrays


def _is_complete(folder: Path) -> bool:
    return _arrays_of(folder) is not None


def read_entry(key: str, root: str | os.PathLike[str] | None = None) -> CachedFeatures | None:
    """The kept features under ``key`` as read-only memory maps, or None on a miss."""
    folder = features_root(root) / key
    found = _arrays_of(folder)
    if found is None:
        if folder.exists():
            logger.warning("feature cache: %s is damaged; computing it again", folder)
        return None
    meta, specs = found
    arrays = {name: _open_raw(*spec) for name, spec in specs.items()}
    with contextlib.suppress(OSError):  # a read-only cache still hits
        os.utime(folder / _META)
    return CachedFeatures(**arrays, batch_size=meta.get("batch_size"))


@contextlib.contextmanager
def write_entry(
    key: str, description: dict[str, Any], root: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Write a new entry all at once or not at all.

    Yields a temporary folder for the arrays' raw files (``FeatureSink(folder=...)``); call
    :func:`seal_entry` inside the block to put it in place. On an exception it is deleted.
    """
    base = features_root(root)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f"{_TMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def seal_entry(
    tmp: Path,
    key: str,
    cached: CachedFeatures,
    description: dict[str, Any],
    root: str | os.PathLike[str] | None = None,
) -> CachedFeatures:
    """Describe the arrays written in ``tmp`` and rename it into place as entry ``key``.

    Returns:
        The entry as it is now on disk (another process may have sealed the same key first:
        its copy, identical by construction, is kept).
    """
    meta = {
        "version": ENTRY_VERSION,
        "created": time.time(),
        "rows": len(cached),
        "batch_size": cached.batch_size,
        "description": description,
        "arrays": {
            name: {"dtype": array.dtype.str, "shape": list(array.shape)}
            for name, array in cached.arrays().items()
        },
    }
    for name, array in cached.arrays().items():
        if not (tmp / f"{name}.bin").exists():  # arrays kept in RAM by the writer
            np.ascontiguousarray(array).tofile(tmp / f"{name}.bin")
    (tmp / _META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    for path in tmp.iterdir():
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    final = features_root(root) / key
    try:
        os.rename(tmp, final)
    except OSError:  # the key exists: sealed by another process first, or damaged
        if _is_complete(final):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
    found = read_entry(key, root)
    if found is None:
        raise TransferError(f"the feature cache entry {final} could not be written")
    return found


def list_entries(root: str | os.PathLike[str] | None = None) -> list[FeatureEntry]:
    """Every kept set of features, newest use first."""
    base = features_root(root)
    entries = []
    for meta_path in base.glob(f"*/{_META}"):
        folder = meta_path.parent
        if folder.name.startswith(_TMP_PREFIX):
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            nbytes = sum(p.stat().st_size for p in folder.iterdir())
            last_used = meta_path.stat().st_mtime
        except (OSError, ValueError):
            continue
        entries.append(
            FeatureEntry(
                key=folder.name,
                path=folder,
                rows=int(meta.get("rows", 0)),
                nbytes=nbytes,
                created=float(meta.get("created", last_used)),
                last_used=last_used,
                description=meta.get("description", {}),
            )
        )
    return sorted(entries, key=lambda e: e.last_used, reverse=True)


def prune_entries(
    *,
    older_than_days: float | None = None,
    keep_bytes: int | None = None,
    dry_run: bool = False,
    root: str | os.PathLike[str] | None = None,
) -> list[FeatureEntry]:
    """Delete kept features: those unused for ``older_than_days``, then the least recently
    used beyond ``keep_bytes`` in all; with neither, all of them. Folders left by killed
    writers go too.

    Args:
        older_than_days: Delete entries last used longer ago than this.
        keep_bytes: Keep the most recently used entries up to this many bytes in all.
        dry_run: Only say what would be deleted.
        root: The kzoo cache root (default: ``KZOO_HOME`` or the platform's cache folder).

    Returns:
        The entries deleted (or that would be).
    """
    base = features_root(root)
    for tmp in base.glob(f"{_TMP_PREFIX}*"):
        pid = tmp.name.rsplit("-", 2)[-2]
        if not dry_run and (not pid.isdigit() or not psutil.pid_exists(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)
    entries = list_entries(root)
    doomed: list[FeatureEntry] = []
    if older_than_days is None and keep_bytes is None:
        doomed = entries
    else:
        if older_than_days is not None:
            cutoff = time.time() - older_than_days * 86400
            doomed = [e for e in entries if e.last_used < cutoff]
        if keep_bytes is not None:
            kept = 0
            for entry in entries:  # newest first
                if entry in doomed:
                    continue
                kept += entry.nbytes
                if kept > keep_bytes:
                    doomed.append(entry)
    for entry in [] if dry_run else doomed:
        shutil.rmtree(entry.path, ignore_errors=True)
    return doomed
