"""A restricted unpickler for weight pickles: NumPy arrays and plain data, nothing else.

``pickle.load`` on a downloaded file runs whatever the file asks for, so
:class:`SafeUnpickler` resolves only the handful of names that rebuild NumPy arrays, and any
other global raises :class:`~kzoo.errors.UnsafePickleError` before it is called.

It also reads the file zero-copy. The pickle is parsed over a read-only memory map, and every
large string in it comes back as a view of the map, so a 575 MB pickle costs a few hundred
opcodes and no copy of the weights (the C unpickler copies each string twice: once out of
the file and once into a new ``bytes``). That is why this builds on the pure-Python
``pickle._Unpickler`` (stdlib, the C unpickler's reference twin, and the only one that
accepts views from ``read``), and why arrays are rebuilt here: NumPy's ``ndarray.__setstate__``
only takes ``bytes``.

Python 2 ``str`` objects are loaded with ``encoding="bytes"``; callers decode text fields.
"""

from __future__ import annotations

import math
import mmap
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.converters._mapped import map_file
from kzoo.errors import ConversionError, UnsafePickleError

__all__ = ["DAMAGED_PICKLE_ERRORS", "SafeUnpickler", "load_mapped"]

# What unpickling a truncated or garbled stream can raise, besides the unsafe-global refusal
DAMAGED_PICKLE_ERRORS = (
    OSError,
    EOFError,
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    MemoryError,
    OverflowError,
    UnicodeError,
    RecursionError,
)

# Reads at least this long are returned as views of the map; shorter ones as bytes.
_VIEW_BYTES = 1 << 16


class _MappedReader:
    """The file object ``pickle._Unpickler`` reads from: a cursor over a memory map."""

    def __init__(self, buf: mmap.mmap) -> None:
        self._buf = buf
        self._view = memoryview(buf)
        self._pos = 0

    def read(self, size: int = -1) -> bytes | memoryview:
        end = len(self._buf) if size is None or size < 0 else self._pos + size
        if end > len(self._buf):
            raise pickle.UnpicklingError(
                f"pickle data was truncated: {size} bytes wanted at byte {self._pos} of "
                f"{len(self._buf)}"
            )
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk if len(chunk) >= _VIEW_BYTES else chunk.tobytes()

    def readline(self) -> bytes:
        newline = self._buf.find(b"\n", self._pos)
        end = len(self._buf) if newline < 0 else newline + 1
        line, self._pos = self._buf[self._pos : end], end
        return line

    def readinto(self, target: Any) -> int:
        target = memoryview(target).cast("B")
        chunk = self.read(len(target))
        target[:] = chunk
        return len(chunk)


class _ArrayState:
    """Stands in for an ndarray while unpickling; :meth:`__setstate__` builds the array."""

    array: np.ndarray

    def __setstate__(self, state: tuple) -> None:
        # numpy pickles (version, shape, dtype, is_fortran, data); very old ones omit version
        if len(state) == 5:
            state = state[1:]
        if len(state) != 4:
            raise pickle.UnpicklingError(f"unexpected ndarray state of {len(state)} items")
        shape, dtype, fortran, data = state
        dtype = np.dtype(dtype)
        if dtype.hasobject or not isinstance(data, (bytes, memoryview)):
            raise UnsafePickleError(
                "refusing a pickled array of Python objects: weight files hold numeric arrays "
                f"only. Received: dtype {dtype}"
            )
        count = math.prod(shape)
        if len(data) != count * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"array of shape {tuple(shape)} {dtype} needs {count * dtype.itemsize} bytes, "
                f"the pickle holds {len(data)}"
            )
        flat = np.frombuffer(data, dtype=dtype, count=count) if count else np.empty(0, dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayState:
    # numpy's pickles call _reconstruct(ndarray, (0,), b"b"), then BUILD with the real state
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to rebuild an array subclass. Received: {subtype!r}")
    return _ArrayState()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    # what numpy's protocol-5 reduction calls (numpy.core.numeric._frombuffer), rebuilt here
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if order == "F" else "C")


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') under protocol 2; only that is allowed
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Taken from numpy's own reductions, so both numpy 1 (numpy.core) and numpy 2 (numpy._core)
# resolve without importing a deprecated module path.
_SCALAR = np.float32(0).__reduce__()[0]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class SafeUnpickler(pickle._Unpickler):  # the pure-Python one: see the module docstring
    """An unpickler that can build numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only numpy's array reconstruction names.

        Raises:
            UnsafePickleError: For every other global (``os.system``, ``builtins.eval``, ...).
        """
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load a pickle that asks for {module}.{name}: kzoo only loads numpy "
                "arrays from pickles, and this file could run code. Use a trusted copy of the "
                "weights. Received: " + f"{module}.{name}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are never needed for numpy arrays."""
        raise UnsafePickleError(f"refusing a pickle persistent id. Received: {pid!r}")


# A weights pickle is a dict holding a list of ~40 arrays and 1,000 class names: these bounds
# are far above any real file and far below what a crafted one (containers that share
# themselves through the memo, 2**39 paths in a few hundred bytes) would need.
MAX_DEPTH = 32
MAX_ELEMENTS = 1_000_000


class _Resolver:
    """Replaces each :class:`_ArrayState` with its array, visiting every container once.

    Shared containers (the memo lets a pickle refer to one object many times) stay shared
    instead of being rebuilt per reference, and the depth and the number of elements are
    bounded, so a small hostile file cannot make kzoo work for minutes or exhaust memory.
    """

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.elements = 0

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, _ArrayState):
            if not hasattr(value, "array"):
                raise pickle.UnpicklingError("a pickled array has no data")
            return value.array
        if not isinstance(value, list | tuple | dict):
            return value
        key = id(value)
        if key in self.done:
            return self.done[key]
        if depth >= MAX_DEPTH:
            raise UnsafePickleError(
                f"refusing a pickle that nests containers more than {MAX_DEPTH} levels deep: "
                "weights files hold a flat list of arrays; this one looks built to exhaust "
                "memory or time"
            )
        self.elements += len(value)
        if self.elements > MAX_ELEMENTS:
            raise UnsafePickleError(
                f"refusing a pickle whose containers hold more than {MAX_ELEMENTS:,} elements: "
                "weights files hold a few dozen arrays; this one looks built to exhaust memory"
            )
        if isinstance(value, dict):
            resolved: Any = {}
            self.done[key] = resolved
            for k, v in value.items():
                resolved[self(k, depth + 1)] = self(v, depth + 1)
        elif isinstance(value, list):
            resolved = []
            self.done[key] = resolved  # a list that contains itself resolves to itself
            resolved.extend(self(v, depth + 1) for v in value)
        else:
            resolved = tuple(self(v, depth + 1) for v in value)
            self.done[key] = resolved
        return resolved


def load_mapped(path: Path, what: str = "pickle") -> tuple[Any, mmap.mmap]:
    """Load a (Python 2 or 3) pickle that may only contain numpy arrays and plain data.

    Args:
        path: The pickle file.
        what: What the file should be, for error messages (``"Lasagne pickle"``).

    Returns:
        The unpickled object, and the memory map its large arrays are read-only views of
        (it stays open while any of them lives).

    Raises:
        UnsafePickleError: The pickle asks for anything but numpy's array reconstruction.
        ConversionError: The file is not a readable pickle (truncated, garbled).
    """
    buf = map_file(path, what)
    try:
        data = SafeUnpickler(_MappedReader(buf), encoding="bytes").load()
        return _Resolver()(data), buf
    except ConversionError:
        raise
    except DAMAGED_PICKLE_ERRORS as error:
        raise ConversionError(
            f"cannot read {what} {str(path)!r}: {type(error).__name__}: {error}. The "
            "file may be truncated or damaged."
        ) from error
