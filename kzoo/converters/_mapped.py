"""Read-only memory maps of weight files, with their pages mapped and dropped in bulk.

Converters read the big source arrays straight from the page cache through a map instead of
copying the file into memory first. Two ``madvise`` calls keep that fast and lean:
``MADV_POPULATE_READ`` maps a whole range in one call (page faults one 4 KiB page at a time
would dominate the conversion), and ``MADV_DONTNEED`` drops pages once converted, so peak
memory stays near the size of the output rather than output + source.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kzoo.errors import ConversionError

__all__ = ["map_file", "offset_of", "populate", "release", "row_access"]

_PAGE = mmap.PAGESIZE
# MADV_POPULATE_READ is Linux 5.14+, and Python 3.11's mmap lacks the constant.
_POPULATE = getattr(mmap, "MADV_POPULATE_READ", 22 if hasattr(mmap, "MADV_DONTNEED") else None)


def map_file(path: Path, what: str) -> mmap.mmap:
    """Map ``path`` read-only.

    Args:
        path: The weights file.
        what: What the file should be, for the error (``"Caffe weights"``).

    Raises:
        ConversionError: The file cannot be opened or is empty.
    """
    try:
        with open(path, "rb") as handle:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as error:  # ValueError: an empty file cannot be mapped
        raise ConversionError(f"cannot read {what} {str(path)!r}: {error}") from error


def populate(buf: mmap.mmap, start: int, stop: int) -> None:
    """Map bytes ``start:stop`` of ``buf`` now, in one call (no-op where unsupported)."""
    if _POPULATE is None:
        return
    start = start // _PAGE * _PAGE
    with contextlib.suppress(OSError, ValueError):  # older kernels: plain page faults
        buf.madvise(_POPULATE, start, max(0, stop - start))


def release(buf: mmap.mmap, start: int, stop: int) -> None:
    """Drop bytes ``start:stop`` of ``buf`` from this process's memory.

    The file's pages stay in the page cache; touching them again maps them back.
    """
    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = start // _PAGE * _PAGE
    with contextlib.suppress(OSError, ValueError):
        buf.madvise(mmap.MADV_DONTNEED, start, max(0, stop - start))


def offset_of(buf: mmap.mmap, array: np.ndarray) -> int | None:
    """Byte offset of ``array``'s data inside ``buf``, or None if it is not a view of it."""
    base = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    offset = array.ctypes.data - base
    return offset if offset >= 0 and offset + array.nbytes <= len(buf) else None


def row_access(
    buf: mmap.mmap, matrix: np.ndarray, offset: int
) -> tuple[Callable[[int, int], np.ndarray], Callable[[int, int], None]]:
    """``rows(a, b)`` and ``done(a, b)`` for a C-contiguous matrix viewed at ``offset`` of ``buf``.

    ``rows`` maps the bytes of rows ``a:b`` and returns them; ``done`` drops them again. Both
    are thread-safe, as :func:`kzoo.converters._layout.permute_kernel` needs.
    """
    row_bytes = matrix.strides[0]

    def rows(a: int, b: int) -> np.ndarray:
        populate(buf, offset + a * row_bytes, offset + b * row_bytes)
        return matrix[a:b]

    def done(a: int, b: int) -> None:
        release(buf, offset + a * row_bytes, offset + b * row_bytes)

    return rows, done
