"""torch's ``.pth`` checkpoints, read without torch and without running the pickle's code.

Since torch 1.6 ``torch.save`` writes a zip archive: ``<name>/data.pkl`` is a pickle of the
state dict (an ``OrderedDict`` of key -> tensor), and every tensor's storage is a file of raw
little-endian values, ``<name>/data/<storage key>``. In the pickle each tensor is a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` whose
``storage`` argument is a *persistent id* ``("storage", torch.FloatStorage, key, location,
numel)``.

:class:`TorchUnpickler` admits exactly those names: ``_rebuild_tensor_v2``, ``OrderedDict``
and the storage classes (each mapped to a NumPy dtype); every other global raises
:class:`~kzoo.errors.UnsafePickleError` before anything is called. Storages are views of a
read-only memory map of the archive (torch stores them uncompressed), and tensors are views of
their storages, so reading a checkpoint copies no weights.
"""

from __future__ import annotations

import collections
import contextlib
import io
import math
import mmap
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.converters._mapped import map_file
from kzoo.converters._safe_pickle import DAMAGED_PICKLE_ERRORS
from kzoo.errors import ConversionError, UnsafePickleError

__all__ = ["STORAGE_DTYPES", "TorchUnpickler", "is_zip", "load_pth"]

ZIP_MAGIC = b"PK\x03\x04"
# torch's storage classes by the NumPy dtype of their values (None: no NumPy equivalent)
STORAGE_DTYPES: dict[str, str | None] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": None,
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
# A zip local file header: signature, 22 bytes of fields, then name and extra lengths
_LOCAL_HEADER = struct.Struct("<4s22xHH")


class _StorageType:
    """What ``torch.FloatStorage`` and friends resolve to: the storage's element type."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(
    storage: np.ndarray,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """A read-only NumPy view of ``storage`` with torch's offset, size and stride (in elements)."""
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError(f"a tensor's storage is not a storage. Received: {storage!r}")
    if not all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)) or len(size) != len(
        stride
    ):
        raise pickle.UnpicklingError(
            f"bad tensor geometry. Received: offset={offset!r}, size={size!r}, stride={stride!r}"
        )
    count = math.prod(size)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if count else 0
    if count and last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {tuple(size)} at offset {offset} reads past its storage of "
            f"{storage.size} elements"
        )
    contiguous = tuple(math.prod(size[i + 1 :]) for i in range(len(size)))
    if all(n == 1 or s == c for n, s, c in zip(size, stride, contiguous, strict=True)):
        return storage[offset : offset + count].reshape(size)
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=tuple(size),
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into NumPy arrays, and refuses everything else.

    Args:
        file: The ``data.pkl`` bytes as a file object.
        storage: ``storage(key, dtype, numel)`` returns the storage file ``key`` as a flat
            NumPy array of ``dtype``.
    """

    def __init__(self, file: Any, storage: Callable[[str, str, int], np.ndarray]) -> None:
        super().__init__(file)
        self._storage = storage
        self._loaded: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``_rebuild_tensor_v2``, ``OrderedDict`` and the storage classes only.

        Raises:
            UnsafePickleError: For every other global (``os.system``, ``builtins.eval``, ...).
        """
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load a torch checkpoint whose pickle asks for {module}.{name}: "
                "kzoo only reads tensors from .pth files, and this one could run code. Use a "
                f"trusted copy or a safetensors file. Received: {module}.{name}"
            ) from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        """Turn ``("storage", type, key, location, numel)`` into the storage's array."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise UnsafePickleError(f"refusing an unknown persistent id. Received: {pid!r}")
        _, kind, key, _, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str):
            raise UnsafePickleError(f"refusing a storage of unknown type. Received: {pid!r}")
        if kind.dtype is None:
            raise ConversionError(
                f"the checkpoint holds {kind.name} tensors, which NumPy cannot represent; "
                "convert it to float32 (or save it as safetensors) first. Received: "
                f"{kind.name}"
            )
        if key not in self._loaded:
            self._loaded[key] = self._storage(key, kind.dtype, numel)
        return self._loaded[key]


def is_zip(path: Path) -> bool:
    """Whether ``path`` starts like a zip archive (a torch >= 1.6 checkpoint)."""
    with open(path, "rb") as handle:
        return handle.read(4) == ZIP_MAGIC


def load_pth(path: Path) -> tuple[dict[str, Any], mmap.mmap]:
    """Read a zip-format torch checkpoint's state dict as NumPy arrays.

    Args:
        path: The ``.pth`` file.

    Returns:
        The state dict (key -> read-only NumPy array, views of the map where the archive
        stores the storage uncompressed), and the memory map (open while any view lives).

    Raises:
        UnsafePickleError: The pickle asks for anything but tensors and OrderedDicts.
        ConversionError: Not a torch zip checkpoint, or truncated, garbled or inconsistent.
    """
    buf = map_file(path, "torch checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {info.filename: info for info in archive.infolist()}
            pickles = [n for n in entries if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ConversionError(
                    f"{str(path)!r} is a zip archive but not a torch checkpoint: expected one "
                    f"'<name>/data.pkl'. Received: entries {sorted(entries)[:8]}"
                )
            prefix = pickles[0][: -len("data.pkl")]

            def storage(key: str, dtype: str, numel: int) -> np.ndarray:
                info = entries.get(f"{prefix}data/{key}")
                if info is None:
                    raise ConversionError(f"the checkpoint lacks storage {key!r}")
                return _storage_array(buf, archive, info, np.dtype(dtype), numel)

            data = archive.read(pickles[0])
            state = TorchUnpickler(io.BytesIO(data), storage).load()
    except ConversionError:
        _close(buf)
        raise
    except (*DAMAGED_PICKLE_ERRORS, zipfile.BadZipFile, struct.error) as error:
        _close(buf)
        raise ConversionError(
            f"cannot read torch checkpoint {str(path)!r}: {type(error).__name__}: {error}. The "
            "file may be truncated or damaged."
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise ConversionError(
            f"{str(path)!r} does not hold a state dict of tensors. Received: {type(state).__name__}"
        )
    return dict(state), buf


def _close(buf: mmap.mmap) -> None:
    with contextlib.suppress(BufferError):  # views still alive: the GC closes it later
        buf.close()


def _storage_array(
    buf: mmap.mmap, archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype, numel: int
) -> np.ndarray:
    if not isinstance(numel, int) or numel < 0 or info.file_size != numel * dtype.itemsize:
        raise ConversionError(
            f"storage {info.filename!r} holds {info.file_size} bytes, not {numel!r} values of "
            f"{dtype}"
        )
    if info.compress_type != zipfile.ZIP_STORED:  # torch never compresses; others might
        return np.frombuffer(archive.read(info), dtype=dtype, count=numel)
    header = bytes(buf[info.header_offset : info.header_offset + _LOCAL_HEADER.size])
    if len(header) < _LOCAL_HEADER.size:
        raise ConversionError(f"storage {info.filename!r} starts past the end of the file")
    magic, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if magic != ZIP_MAGIC or start + info.file_size > len(buf):
        raise ConversionError(f"storage {info.filename!r} is truncated or its header is garbled")
    return np.frombuffer(buf, dtype=dtype, count=numel, offset=start)
