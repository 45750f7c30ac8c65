"""Caffe ``.caffemodel`` weights (Oxford's VGG, Kaiming He's ResNets), read without Caffe.

Why a hand-written protobuf reader: the real file is ONE 575 MB ``NetParameter`` message.
The ``protobuf`` runtime parses whole messages into Python objects (a second in-memory copy
of every float, behind a default 64 MB size limit), and the ``caffe`` package with its
generated ``caffe_pb2`` is not installable from PyPI. The wire format needed here is small
(varints, length-delimited fields, packed floats), so this module walks it over a read-only
memory map and turns each packed float field into an ``np.frombuffer`` view: no Python loop
over floats and no copy until the Keras-layout arrays are written. Every length is
bounds-checked, so a truncated or garbled file raises ConversionError instead of hanging or
crashing.

ResNets (V2 ``layer`` messages): each conv is followed by a ``BatchNorm`` layer whose blobs
are the running mean and variance *multiplied by* a scale factor (blob 2: divide both by it;
a factor of 0 means no statistics yet: 0) and a ``Scale`` layer (gamma, beta). The reader
joins a BatchNorm and the Scale right after it into one batchnorm source layer; only
``conv1`` has a bias, and a bias-free Caffe conv fills a Keras conv that has one with zeros.
Caffe's BatchNorm epsilon is 1e-5; a Keras layer with another epsilon gets gamma rescaled so
inference matches exactly. :func:`keras_name` is the one correspondence of Caffe names with
keras.applications names (``res4b1_branch2a`` -> ``conv4_block2_1_conv``); VGG's
``conv1_1``/``fc6`` name no Keras layer and pair in order.

Field numbers (from ``caffe.proto``): NetParameter ``layer`` = 100 (V2), ``layers`` = 2 (V1);
LayerParameter name = 1, type = 2 (string), blobs = 7; V1LayerParameter name = 4, type = 5
(enum: CONVOLUTION = 4, INNER_PRODUCT = 14), blobs = 6; BlobProto num = 1, channels = 2,
height = 3, width = 4, data = 5 (packed float), shape = 7 (BlobShape dim = 1),
double_data = 8.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kzoo.converters._layout import (
    as_float32,
    dense_kernel_from_rows,
    permute_kernel,
    spatial_size,
)
from kzoo.converters._mapped import map_file, row_access
from kzoo.converters.pairing import LayerContext, Source, SourceLayer, raise_mismatches
from kzoo.converters.slots import WeightSlot
from kzoo.errors import ConversionError

__all__ = ["keras_name", "open_source", "read_layers"]

logger = logging.getLogger("kzoo")

_FORMAT = "caffe"
_V1_KINDS = {4: "conv", 14: "dense"}
_V2_KINDS = {
    "Convolution": "conv",
    "InnerProduct": "dense",
    "BatchNorm": "batchnorm",
    "Scale": "scale",
}
CAFFE_BN_EPSILON = 1e-5
_STEM = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn", "fc1000": "predictions"}
# res4b1_branch2a, bn2a_branch1: stage, block (a, b, ... or b1, b2, ...), branch
_RESNET = re.compile(r"(res|bn)(\d)([a-z])(\d*)_branch(1|2[abc])")
_PARTS = {"1": 0, "2a": 1, "2b": 2, "2c": 3}


def keras_name(layer: str) -> str | None:
    """The keras.applications layer name of a Caffe ResNet layer, or None.

    ``conv1`` -> ``conv1_conv``, ``bn_conv1`` -> ``conv1_bn``, ``res2a_branch1`` ->
    ``conv2_block1_0_conv``, ``bn3b_branch2c`` -> ``conv3_block2_3_bn``, ``res4b22_branch2a``
    -> ``conv4_block23_1_conv``, ``fc1000`` -> ``predictions``; other names (VGG's
    ``conv1_1``) name no Keras layer.
    """
    if layer in _STEM:
        return _STEM[layer]
    match = _RESNET.fullmatch(layer)
    if match is None:
        return None
    kind, stage, letter, number, branch = match.groups()
    block = int(number) + 1 if number else ord(letter) - ord("a") + 1
    if number and letter != "b":
        return None  # only "b1", "b2"... are numbered
    suffix = "conv" if kind == "res" else "bn"
    return f"conv{stage}_block{block}_{_PARTS[branch]}_{suffix}"


class _Garbled(Exception):
    """The bytes do not follow the protobuf wire format (turned into ConversionError)."""


def _varint(buf: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= end:
            raise _Garbled(f"varint runs past the end of its message at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise _Garbled(f"varint longer than 10 bytes at byte {pos}")


def _fields(buf: mmap.mmap, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field, wire_type, value_or_start, stop)`` for each field in ``buf[pos:end]``.

    Varints carry their value in the third slot; length-delimited and fixed-size fields
    carry their byte range ``start:stop``.
    """
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Garbled(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, pos
            continue
        if wire == 2:
            size, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:  # 3/4 are deprecated groups, 6/7 do not exist
            raise _Garbled(f"unsupported wire type {wire} for field {field} at byte {pos}")
        if size > end - pos:
            raise _Garbled(
                f"field {field} claims {size} bytes at byte {pos} but only {end - pos} remain"
            )
        yield field, wire, pos, pos + size
        pos += size


def _packed_varints(buf: mmap.mmap, start: int, stop: int) -> list[int]:
    values = []
    while start < stop:
        value, start = _varint(buf, start, stop)
        values.append(value)
    return values


def _blob(buf: mmap.mmap, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Return a blob's data as a shaped view into ``buf``, and its byte offset."""
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}
    shape: list[int] = []
    data = None
    for field, wire, a, b in _fields(buf, start, stop):
        if field in legacy and wire == 0:
            legacy[field] = a
        elif field == 7 and wire == 2:
            for sub, sub_wire, c, d in _fields(buf, a, b):
                if sub == 1:
                    shape += _packed_varints(buf, c, d) if sub_wire == 2 else [c]
        elif field in (5, 8) and wire == 2:
            itemsize = 4 if field == 5 else 8
            if (b - a) % itemsize:
                raise _Garbled(f"packed data of {b - a} bytes is not a whole number of floats")
            data = (np.dtype("<f4" if field == 5 else "<f8"), a, (b - a) // itemsize)
        elif field in (5, 8):
            raise _Garbled("unpacked float data is not supported; re-save the file with Caffe")
    if not shape:
        shape = [legacy[k] for k in (1, 2, 3, 4)]
    if data is None:
        raise _Garbled(f"blob at byte {start} has no float data")
    dtype, offset, count = data
    if math.prod(shape) != count:
        raise _Garbled(f"blob shape {shape} does not match its {count} values")
    view = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return view.reshape(shape), offset


def read_layers(buf: mmap.mmap) -> list[tuple[SourceLayer, list[tuple[np.ndarray, int]]]]:
    """List the layers that hold blobs, in file order, with ``(view, byte offset)`` per blob.

    Raises:
        ConversionError: Garbled bytes, or a layer with blobs of a type kzoo cannot convert.
    """
    layers = []
    for field, wire, start, stop in _fields(buf, 0, len(buf)):
        if wire != 2 or field not in (2, 100):
            continue
        v1 = field == 2
        name_field, type_field, blob_field = (4, 5, 6) if v1 else (1, 2, 7)
        name, kind_key, blobs = "?", None, []
        for sub, sub_wire, a, b in _fields(buf, start, stop):
            if sub == name_field and sub_wire == 2:
                name = bytes(buf[a:b]).decode("utf8", "replace")
            elif sub == type_field:
                kind_key = a if v1 else bytes(buf[a:b]).decode("utf8", "replace")
            elif sub == blob_field and sub_wire == 2:
                blobs.append(_blob(buf, a, b))
        if not blobs:
            continue
        kind = (_V1_KINDS if v1 else _V2_KINDS).get(kind_key)
        if kind is None:
            raise ConversionError(
                f"Caffe layer {name!r} has weights but type {kind_key!r}, which kzoo cannot "
                "convert (only Convolution, InnerProduct, BatchNorm and Scale)."
            )
        if kind == "scale":
            _join_scale(layers, name, blobs)
            continue
        shapes = tuple(tuple(v.shape) for v, _ in blobs)
        dtypes = tuple(v.dtype.name for v, _ in blobs)
        if kind == "batchnorm" and len(blobs) != 3:
            raise ConversionError(
                f"Caffe BatchNorm {name!r} should hold mean, variance and scale factor. "
                f"Received: {len(blobs)} blobs of shapes {list(shapes)}"
            )
        target = keras_name(name)
        layers.append((SourceLayer(name, kind, shapes, dtypes, target), blobs))
    return layers


def _join_scale(layers: list, name: str, blobs: list) -> None:
    """Give a Scale layer's gamma and beta to the BatchNorm just before it."""
    if not layers or layers[-1][0].kind != "batchnorm" or len(layers[-1][1]) != 3:
        raise ConversionError(
            f"Caffe Scale layer {name!r} does not follow a BatchNorm layer; kzoo converts Scale "
            "only as the second half of a batch normalization."
        )
    if len(blobs) != 2:
        raise ConversionError(
            f"Caffe Scale layer {name!r} should hold gamma and beta (bias_term: true). "
            f"Received: {len(blobs)} blob(s)"
        )
    norm, norm_blobs = layers[-1]
    joined = [*norm_blobs, *blobs]
    layers[-1] = (
        SourceLayer(
            f"{norm.name}+{name}",
            "batchnorm",
            tuple(tuple(v.shape) for v, _ in joined),
            tuple(v.dtype.name for v, _ in joined),
            norm.target,
        ),
        joined,
    )


def _layer_converter(buf: mmap.mmap):
    def convert_layer(
        src: SourceLayer, blobs: list, slot: WeightSlot, context: LayerContext
    ) -> list[np.ndarray]:
        if src.kind == "batchnorm":
            return _batchnorm(src, blobs, slot)
        arrays = _convert_layer(buf, src, blobs, context.flattened_channels)
        if len(arrays) == 1 and len(slot.shapes) == 2:  # a bias-free Caffe conv
            arrays.append(np.zeros(arrays[0].shape[-1], np.float32))
        elif len(arrays) == 2 and len(slot.shapes) == 1:
            raise_mismatches(
                _FORMAT,
                [f"model layer {slot.name!r} has no bias but source layer {src.name!r} has one"],
            )
        return arrays

    return convert_layer


def _batchnorm(src: SourceLayer, blobs: list, slot: WeightSlot) -> list[np.ndarray]:
    """Keras ``[gamma, beta, moving_mean, moving_variance]`` from BatchNorm (+ Scale) blobs."""
    mean, variance, factor = (np.asarray(b, dtype=np.float64).reshape(-1) for b, _ in blobs[:3])
    if factor.size != 1:
        raise ConversionError(
            f"Caffe BatchNorm {src.name!r}: the third blob should be one scale factor. "
            f"Received: shape {tuple(blobs[2][0].shape)}"
        )
    scale = 0.0 if factor[0] == 0 else 1.0 / factor[0]  # Caffe: a zero factor means zero stats
    mean, variance = mean * scale, variance * scale
    if len(blobs) == 5:
        gamma, beta = (np.asarray(b, dtype=np.float64).reshape(-1) for b, _ in blobs[3:])
    else:  # a BatchNorm without a Scale: identity affine
        gamma, beta = np.ones_like(mean), np.zeros_like(mean)
    if slot.epsilon is not None and slot.epsilon != CAFFE_BN_EPSILON:
        gamma = gamma * np.sqrt((variance + slot.epsilon) / (variance + CAFFE_BN_EPSILON))
    arrays = [gamma, beta, mean, variance]
    if len(slot.shapes) == 3:  # a Keras BN without scale (scale=False) cannot take gamma
        if not np.allclose(gamma, 1.0):
            raise_mismatches(
                _FORMAT,
                [f"model layer {slot.name!r} has no gamma but source layer {src.name!r} scales"],
            )
        arrays = arrays[1:]
    return [as_float32(a) for a in arrays]


def _convert_layer(
    buf: mmap.mmap, src: SourceLayer, blobs: list, chw_channels: int | None
) -> list[np.ndarray]:
    (weight, offset), *rest = blobs
    # Legacy blobs are 4-D: biases (1, 1, 1, out), fc weights (1, 1, out, in)
    bias = [as_float32(b.reshape(-1)) for b, _ in rest]
    if src.kind == "conv" and weight.ndim != 4:
        raise ConversionError(f"Caffe conv {src.name!r} weight is not 4-D: {weight.shape}")
    if src.kind == "dense" and weight.ndim == 4 and weight.shape[:2] == (1, 1):
        weight = weight.reshape(weight.shape[2:])
    out_features, in_features = weight.shape[0], math.prod(weight.shape[1:])
    rows, done = row_access(buf, weight.reshape(out_features, in_features), offset)

    if src.kind == "conv":
        _, in_channels, height, width = weight.shape
        kernel = permute_kernel(rows, out_features, in_channels, height * width, done)
        return [kernel.reshape(height, width, in_channels, out_features), *bias]
    chw = None
    if chw_channels is not None:
        side = spatial_size(in_features, chw_channels, src.name)
        chw = (chw_channels, side, side)
    return [dense_kernel_from_rows(rows, out_features, in_features, chw, done), *bias]


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """Open a Caffe ``.caffemodel`` (V1 ``layers`` or V2 ``layer``) for conversion.

    Raises:
        ConversionError: The file is truncated, garbled or holds no layers with weights.
    """
    buf = map_file(path, "Caffe weights")
    try:
        layers = read_layers(buf)
        if not layers:
            raise ConversionError(f"{str(path)!r} holds no Caffe layers with weights")
        yield Source(_FORMAT, layers, _layer_converter(buf), lambda blobs: [v for v, _ in blobs])
    except _Garbled as error:
        raise ConversionError(
            f"{str(path)!r} is not a valid caffemodel ({error}); the file may be truncated or "
            "damaged."
        ) from None
    finally:
        with contextlib.suppress(BufferError):  # views still alive: the GC closes it later
            buf.close()
