"""torchvision / timm VGG weights in safetensors files (``vgg19.tv_in1k``, ``vgg19_bn.tv_in1k``).

Two key layouts name the same tensors:

- torchvision: ``features.{i}.weight/bias`` (conv ``(out, in, h, w)``; in the BN variant also
  ``features.{i}.weight/bias/running_mean/running_var/num_batches_tracked``), then
  ``classifier.{0,3,6}.weight/bias`` (Linear ``(out, in)``; ``classifier.0`` flattens its input
  in ``(C, H, W)`` order);
- timm: the same ``features.*``, then ``pre_logits.fc1`` (fc6 as a 7x7 conv
  ``(4096, 512, 7, 7)``), ``pre_logits.fc2`` (a 1x1 conv) and ``head.fc`` (Linear).

torchvision's BN variant keeps a conv bias in front of each BatchNorm, while a conv followed
by BN in kzoo has no bias. BN subtracts its running mean right after that bias, so the bias
folds exactly into the moving mean: ``moving_mean' = running_mean - conv_bias``.

torch's BatchNorm epsilon is 1e-5, Keras's default 1e-3: for a slot with another epsilon,
``gamma' = gamma * sqrt(var + eps_keras) / sqrt(var + 1e-5)`` gives exactly torch's output in
inference (for fine-tuning with batch statistics, build BN layers with ``epsilon=1e-5``).

Tensors are read with the ``safetensors`` numpy API (no torch, no pickle); big dense kernels
are read a slice of rows at a time, so they are never held twice in memory.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

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

__all__ = ["open_source", "read_layers"]

_FORMAT = "safetensors_vgg"
_SECTIONS = {"features": 0, "classifier": 1, "pre_logits.fc1": 1, "pre_logits.fc2": 2, "head.fc": 3}
_PREFIX = re.compile(r"^(features|classifier)\.(\d+)$|^(pre_logits\.fc[12]|head\.fc)$")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
TORCH_BN_EPSILON = 1e-5
_NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
# safetensors dtype codes by the NumPy name the checks read (BF16 has none: refused, named)
_DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool",
}  # fmt: skip


def _order(prefix: str) -> tuple[int, int]:
    match = _PREFIX.match(prefix)
    if match is None:
        return (99, 0)
    if match.group(1):
        return (_SECTIONS[match.group(1)], int(match.group(2)))
    return (_SECTIONS[match.group(3)], 0)


def read_layers(handle: Any, header: dict[str, Any]) -> list[tuple[SourceLayer, dict[str, str]]]:
    """Group an open safetensors file's keys into layers, in network order.

    Args:
        handle: The file opened with ``safetensors.safe_open``.
        header: The file's JSON header (tensor key -> dtype, shape, data offsets).

    Returns:
        ``(SourceLayer, {"weight": key, "bias": key, ...})`` per module with weights.

    Raises:
        ConversionError: Keys that follow neither the torchvision nor the timm VGG layout.
    """
    modules: dict[str, dict[str, str]] = {}
    for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
        prefix, _, leaf = key.rpartition(".")
        modules.setdefault(prefix, {})[leaf] = key
    unknown = sorted(p for p in modules if _order(p)[0] == 99)
    if unknown:
        raise ConversionError(
            "not a torchvision or timm VGG safetensors file: unexpected modules "
            f"{unknown[:8]}. Received keys like {sorted(handle.keys())[:4]}"
        )
    layers = []
    for prefix in sorted(modules, key=_order):
        keys = modules[prefix]
        if "weight" not in keys:
            raise ConversionError(f"module {prefix!r} has no weight. Received: {sorted(keys)}")
        shape = tuple(handle.get_slice(keys["weight"]).get_shape())
        if "running_mean" in keys:
            kind, names = "batchnorm", _BN_KEYS
        elif len(shape) == 4 and not prefix.startswith("pre_logits"):
            kind, names = "conv", ("weight", "bias")
        else:  # Linear, or timm's conv-shaped fc1/fc2
            kind, names = "dense", ("weight", "bias")
        missing = [n for n in names if n not in keys]
        if missing:
            raise ConversionError(f"module {prefix!r} lacks {missing}. Received: {sorted(keys)}")
        ordered = {n: keys[n] for n in names}
        shapes = tuple(tuple(handle.get_slice(k).get_shape()) for k in ordered.values())
        dtypes = tuple(
            _DTYPE_NAMES.get(header[k]["dtype"], header[k]["dtype"].lower())
            for k in ordered.values()
        )
        layers.append((SourceLayer(prefix, kind, shapes, dtypes), ordered))
    return layers


def _tensor(handle: Any, key: str) -> np.ndarray:
    return as_float32(handle.get_tensor(key))


class _MappedWeights:
    """The file's big weights, read as views of a memory map of the file.

    The safetensors numpy API copies every slice out of its own map while holding the GIL,
    which serialises the threaded conversion; the layout it has just validated is simple (an
    8-byte header length, a JSON header with each tensor's byte range, then the data), so the
    weights are mapped here and converted in place, a block of rows at a time.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            self.header = json.loads(handle.read(size))
        self.start = 8 + size
        self.buf = map_file(path, "safetensors weights")

    def kernel(self, key: str, taps: int | None = None, chw: Any = None) -> np.ndarray:
        """Convert tensor ``key`` (``(out, in, ...)``) to Keras order.

        Args:
            key: The tensor's key.
            taps: For a conv kernel, ``kh * kw`` (returns ``(kh, kw, in, out)``).
            chw: For a dense kernel after the convs, the ``(C, H, W)`` its input flattened.

        Returns:
            A float32 conv kernel ``(kh, kw, in, out)`` or dense kernel ``(in, out)``.
        """
        entry = self.header[key]
        dtype = _NUMPY_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ConversionError(
                f"tensor {key!r} is {entry['dtype']}; kzoo reads F32, F16 and F64 safetensors. "
                "Convert the file to float32 first."
            )
        shape = tuple(entry["shape"])
        offset = self.start + entry["data_offsets"][0]
        out_features, in_features = shape[0], math.prod(shape[1:])
        matrix = np.frombuffer(
            self.buf, dtype=dtype, count=out_features * in_features, offset=offset
        ).reshape(out_features, in_features)
        rows, done = row_access(self.buf, matrix, offset)

        if taps is not None:
            kernel = permute_kernel(rows, out_features, shape[1], taps, done)
            return kernel.reshape(*shape[2:], shape[1], out_features)
        return dense_kernel_from_rows(rows, out_features, in_features, chw, done)


def _dense_chw(src: SourceLayer, channels: int | None) -> tuple[int, ...] | None:
    """The ``(C, H, W)`` order a dense layer's input was flattened in, if it follows the convs."""
    shape = src.shapes[0]
    if len(shape) == 4 and shape[2:] != (1, 1):  # timm fc1: a conv over the whole feature map
        return shape[1:]
    if channels is not None:  # first Linear after the convs: flattened (C, H, W)
        in_features = math.prod(shape[1:])
        side = spatial_size(in_features, channels, src.name)
        return (channels, side, side)
    return None


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """Open a torchvision or timm VGG safetensors file for conversion.

    Raises:
        ConversionError: The file is not valid safetensors or has keys of another layout.
    """
    try:
        with safe_open(str(path), framework="np") as handle:
            weights = _MappedWeights(path)
            converter = _Converter(handle, weights)
            layers = read_layers(handle, weights.header)
            yield Source(_FORMAT, layers, converter.layer, converter.stored)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(
            f"cannot read safetensors weights {str(path)!r}: {error}. The file may be "
            "truncated or damaged."
        ) from error


class _Converter:
    """Converts one layer after the other; a bias-free kzoo conv hands its bias to the BN."""

    def __init__(self, handle: Any, weights: _MappedWeights) -> None:
        self.handle, self.weights = handle, weights
        self.pending_bias: np.ndarray | None = None  # a conv bias to fold into the next BN

    def stored(self, keys: dict[str, str]) -> list[np.ndarray]:
        """A layer's tensors as the file stores them."""
        return [self.handle.get_tensor(key) for key in keys.values()]

    def layer(
        self, src: SourceLayer, keys: dict[str, str], slot: WeightSlot, context: LayerContext
    ) -> list[np.ndarray]:
        handle = self.handle
        if src.kind == "conv":
            kernel = self.weights.kernel(keys["weight"], taps=math.prod(src.shapes[0][2:]))
            bias = _tensor(handle, keys["bias"])
            if len(slot.shapes) == 1:  # kzoo conv without bias: fold into the next BN
                following = context.next_slot
                if following is None or following.kind != "batchnorm":
                    raise_mismatches(
                        _FORMAT,
                        [
                            f"model layer {slot.name!r} has no bias but source layer "
                            f"{src.name!r} has one and no BatchNormalization follows to absorb it"
                        ],
                    )
                self.pending_bias = bias
                return [kernel]
            return [kernel, bias]
        if src.kind == "batchnorm":
            gamma, beta, mean, variance = (_tensor(handle, keys[n]) for n in _BN_KEYS)
            if slot.epsilon is not None and slot.epsilon != TORCH_BN_EPSILON:
                ratio = (variance.astype(np.float64) + slot.epsilon) / (
                    variance.astype(np.float64) + TORCH_BN_EPSILON
                )
                gamma = as_float32(gamma * np.sqrt(ratio))
            if self.pending_bias is not None and self.pending_bias.shape == mean.shape:
                # BN(x + b) uses (x + b - mean): the same as BN(x) with mean - b
                mean = mean - self.pending_bias
            self.pending_bias = None
            return [gamma, beta, mean, variance]
        chw = _dense_chw(src, context.flattened_channels)
        return [self.weights.kernel(keys["weight"], chw=chw), _tensor(handle, keys["bias"])]
