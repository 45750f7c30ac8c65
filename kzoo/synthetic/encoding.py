"""Byte-level encoders behind the synthetic Caffe, Lasagne and torch files.

Caffe's ``.caffemodel`` is a protobuf message, Lasagne Recipes' weights are a Python 2
pickle and a torch ``.pth`` is a zip of a pickle and raw storages; these helpers write all
three by hand (protobuf wire format, a Python 2 pickler, a pickler that names torch's globals
without importing torch), so the synthetic writers in :mod:`kzoo.synthetic` need neither
Caffe's ``.proto``, Python 2 nor torch.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import types
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

# ---------------------------------------------------------------------------------------------
# Caffe protobuf


def field_key(field: int, wire: int) -> bytes:
    return varint_bytes(field << 3 | wire)


def varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_field(field: int, payload_size: int) -> bytes:
    return field_key(field, 2) + varint_bytes(payload_size)


def _blob_parts(
    array: np.ndarray, legacy_shape: tuple[int, ...] | None
) -> list[bytes | np.ndarray]:
    """BlobProto pieces: shape fields, then packed float data (kept as an array, not copied)."""
    header = b""
    if legacy_shape is not None:  # V1: num/channels/height/width
        for field, dim in zip((1, 2, 3, 4), legacy_shape, strict=True):
            header += field_key(field, 0) + varint_bytes(dim)
    else:  # V2: shape { dim: ... } with packed dims
        dims = b"".join(varint_bytes(d) for d in array.shape)
        shape = _length_field(1, len(dims)) + dims
        header += _length_field(7, len(shape)) + shape
    data = np.ascontiguousarray(array, dtype="<f4")
    return [header + _length_field(5, data.nbytes), data]


def _parts_size(parts: list[bytes | np.ndarray]) -> int:
    return sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in parts)


_CAFFE_TYPES = {
    "data": (5, "Data"),
    "conv": (4, "Convolution"),
    "relu": (18, "ReLU"),
    "pool": (17, "Pooling"),
    "fc": (14, "InnerProduct"),
    "softmax": (20, "Softmax"),
    "eltwise": (25, "Eltwise"),
    "bn": (None, "BatchNorm"),  # V2 only, as in the ResNet release
    "scale": (None, "Scale"),
}


def caffe_layer(
    handle: BinaryIO, version: int, name: str, kind: str, blobs: list[np.ndarray]
) -> None:
    enum, text = _CAFFE_TYPES[kind]
    raw_name = name.encode()
    if version == 1:  # V1LayerParameter: name=4, type=5 (enum), blobs=6
        parts: list[bytes | np.ndarray] = [_length_field(4, len(raw_name)) + raw_name]
        parts.append(field_key(5, 0) + varint_bytes(enum))
        blob_field, container = 6, 2
    else:  # LayerParameter: name=1, type=2 (string), blobs=7
        raw_type = text.encode()
        parts = [_length_field(1, len(raw_name)) + raw_name]
        parts.append(_length_field(2, len(raw_type)) + raw_type)
        blob_field, container = 7, 100
    for blob in blobs:
        legacy = None
        if version == 1:  # Caffe V1 pads every blob to 4-D with leading 1s
            legacy = (1,) * (4 - blob.ndim) + blob.shape
        blob_parts = _blob_parts(blob, legacy)
        parts.append(_length_field(blob_field, _parts_size(blob_parts)))
        parts.extend(blob_parts)
    handle.write(_length_field(container, _parts_size(parts)))
    for part in parts:
        handle.write(part.data if isinstance(part, np.ndarray) else part)


# ---------------------------------------------------------------------------------------------
# Lasagne Recipes pickle (Python 2)


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us emit Python 2 opcodes
    """Writes bytes and text as Python 2 ``str`` and numpy globals under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()
    _RENAMES: ClassVar[dict[int, bytes]] = {
        id(np.zeros(1).__reduce__()[0]): b"numpy.core.multiarray\n_reconstruct\n",
        id(np.float32(0).__reduce__()[0]): b"numpy.core.multiarray\nscalar\n",
    }

    def _binstring(self, data: bytes) -> None:
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)))
        self.write(data)

    def save_bytes(self, obj: bytes) -> None:
        self._binstring(obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self._binstring(obj.encode("utf8"))
        self.memoize(obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        renamed = self._RENAMES.get(id(obj))
        if renamed is None:
            super().save_global(obj, name)
            return
        self.write(pickle.GLOBAL + renamed)
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


# ---------------------------------------------------------------------------------------------
# torch .pth (zip archive of a pickle and raw storages)


def _rebuild_tensor_v2(*args: Any) -> None:  # pickled by name only; never called
    raise NotImplementedError


class _StorageRef:
    """A tensor's storage in the pickle: pickled as torch's persistent id."""

    def __init__(self, key: str, storage_class: type, numel: int) -> None:
        self.key, self.storage_class, self.numel = key, storage_class, numel


class _TensorRef:
    """A tensor in the pickle: ``_rebuild_tensor_v2(storage, 0, size, stride, False, {})``."""

    def __init__(self, storage: _StorageRef, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> tuple:
        strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        args = (self.storage, 0, self.shape, strides, False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


_STORAGE_CLASSES = {
    np.dtype("<f4"): "FloatStorage",
    np.dtype("<f8"): "DoubleStorage",
    np.dtype("<f2"): "HalfStorage",
    np.dtype("<i8"): "LongStorage",
}


class _TorchPickler(pickle._Pickler):  # pure Python: globals are renamed by identity
    """Writes torch's global names (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``)
    and its storage persistent ids, as ``torch.save`` does, without importing torch."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, protocol=2)
        self.renames: dict[int, bytes] = {
            id(_rebuild_tensor_v2): b"torch._utils\n_rebuild_tensor_v2\n"
        }
        self.classes: dict[str, type] = {}

    def storage_class(self, dtype: np.dtype) -> type:
        name = _STORAGE_CLASSES[dtype]
        if name not in self.classes:
            self.classes[name] = type(name, (), {})
            self.renames[id(self.classes[name])] = f"torch\n{name}\n".encode()
        return self.classes[name]

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            return ("storage", obj.storage_class, obj.key, "cpu", obj.numel)
        return None

    def save_global(self, obj: Any, name: str | None = None) -> None:
        renamed = self.renames.get(id(obj))
        if renamed is None:
            super().save_global(obj, name)
            return
        self.write(pickle.GLOBAL + renamed)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[types.FunctionType] = save_global  # the base table would bypass the renaming


def write_pth(path: Path, tensors: dict[str, np.ndarray], archive: str = "archive") -> None:
    """Write ``tensors`` as ``torch.save(state_dict, path)`` does (torch >= 1.6 zip format).

    The archive holds ``<archive>/data.pkl`` (an ``OrderedDict`` of key -> tensor, each a
    ``_rebuild_tensor_v2`` call on a persistent storage id), ``<archive>/data/<i>`` (each
    storage's raw little-endian values, stored uncompressed), ``byteorder`` and ``version``.
    """
    buffer = io.BytesIO()
    pickler = _TorchPickler(buffer)
    state: collections.OrderedDict[str, _TensorRef] = collections.OrderedDict()
    storages = []
    for index, (key, value) in enumerate(tensors.items()):
        array = np.array(value, dtype=value.dtype.newbyteorder("<"), order="C")  # keeps 0-d
        ref = _StorageRef(str(index), pickler.storage_class(array.dtype), int(array.size))
        state[key] = _TensorRef(ref, tuple(int(d) for d in array.shape))
        storages.append((ref.key, array))
    pickler.dump(state)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zipped:
        zipped.writestr(f"{archive}/data.pkl", buffer.getvalue())
        zipped.writestr(f"{archive}/byteorder", "little")
        for key, array in storages:
            zipped.writestr(f"{archive}/data/{key}", array.tobytes())
        zipped.writestr(f"{archive}/version", "3\n")
