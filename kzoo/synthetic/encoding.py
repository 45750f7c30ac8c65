"""Byte-level encoders behind the synthetic Caffe and Lasagne files.

Caffe's ``.caffemodel`` is a protobuf message and Lasagne Recipes' weights are a Python 2
pickle; these helpers write both by hand (protobuf wire format, a Python 2 pickler), so the
synthetic writers in :mod:`kzoo.synthetic` need neither Caffe's ``.proto`` nor Python 2.
"""

from __future__ import annotations

import pickle
import struct
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
