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

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from kzoo.converters import (
    Arrays,
    SourceLayer,
    WeightSlot,
    as_float32,
    conv_kernel,
    dense_kernel_from_rows,
    pair_layers,
    raise_mismatches,
    shape_problems,
    spatial_size,
)
from kzoo.errors import ConversionError

__all__ = ["convert", "read_layers"]

logger = logging.getLogger("kzoo")

_FORMAT = "safetensors_vgg"
_SECTIONS = {"features": 0, "classifier": 1, "pre_logits.fc1": 1, "pre_logits.fc2": 2, "head.fc": 3}
_PREFIX = re.compile(r"^(features|classifier)\.(\d+)$|^(pre_logits\.fc[12]|head\.fc)$")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
TORCH_BN_EPSILON = 1e-5


def _order(prefix: str) -> tuple[int, int]:
    match = _PREFIX.match(prefix)
    if match is None:
        return (99, 0)
    if match.group(1):
        return (_SECTIONS[match.group(1)], int(match.group(2)))
    return (_SECTIONS[match.group(3)], 0)


def read_layers(handle: Any) -> list[tuple[SourceLayer, dict[str, str]]]:
    """Group an open safetensors file's keys into layers, in network order.

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
        layers.append((SourceLayer(prefix, kind, shapes), ordered))
    return layers


def _tensor(handle: Any, key: str) -> np.ndarray:
    return as_float32(handle.get_tensor(key))


class _Rows:
    """``rows(a, b)`` of one tensor, reopening the file every ~64 MB read.

    safetensors memory-maps the file, and the mapped pages a slice touched count as this
    process's memory until the handle is dropped: reopening keeps the peak near the output size
    instead of output + source (2x) while fc6's 411 MB go through.
    """

    _BUDGET = 64 << 20

    def __init__(self, path: Path, key: str, row_bytes: int) -> None:
        self.path, self.key, self.row_bytes = path, key, row_bytes
        self.rows: Any = None
        self.read = 0

    def __call__(self, a: int, b: int) -> np.ndarray:
        if self.rows is None or self.read > self._BUDGET:
            self.rows, self.read = None, 0  # drop the old handle first: unmaps its pages
            self.rows = safe_open(str(self.path), framework="np").get_slice(self.key)
        self.read += (b - a) * self.row_bytes
        return np.asarray(self.rows[a:b], dtype=np.float32).reshape(b - a, -1)


def _dense(path: Path, src: SourceLayer, keys: dict[str, str], channels: int | None) -> np.ndarray:
    shape = src.shapes[0]
    out_features, in_features = shape[0], math.prod(shape[1:])
    chw = None
    if len(shape) == 4 and shape[2:] != (1, 1):  # timm fc1: a conv over the whole feature map
        chw = shape[1:]
    elif channels is not None:  # first Linear after the convs: flattened (C, H, W)
        side = spatial_size(in_features, channels, src.name)
        chw = (channels, side, side)
    rows = _Rows(path, keys["weight"], in_features * 4)
    return dense_kernel_from_rows(rows, out_features, in_features, chw)


def convert(path: Path, slots: Sequence[WeightSlot]) -> Arrays:
    """Read a torchvision or timm VGG safetensors file into arrays for ``slots``.

    Raises:
        ConversionError: The file is not valid safetensors, has other keys, or does not fit
            the slots (every mismatch listed).
    """
    try:
        with safe_open(str(path), framework="np") as handle:
            return _convert(handle, slots, path)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(
            f"cannot read safetensors weights {str(path)!r}: {error}. The file may be "
            "truncated or damaged; delete it to download again."
        ) from error


def _convert(handle: Any, slots: Sequence[WeightSlot], path: Path) -> Arrays:
    layers = read_layers(handle)
    pairs = pair_layers([src for src, _ in layers], slots, _FORMAT)
    arrays: Arrays = {}
    problems = []
    channels = None  # output channels of the last conv, while no dense layer came after it
    pending_bias: np.ndarray | None = None  # a conv bias to fold into the next BN
    for position, (index, slot) in enumerate(pairs):
        src, keys = layers[index]
        if src.kind == "conv":
            kernel, bias = (
                conv_kernel(handle.get_tensor(keys["weight"])),
                _tensor(handle, keys["bias"]),
            )
            channels = src.shapes[0][0]
            if len(slot.shapes) == 1:  # kzoo conv without bias: fold into the next BN
                following = pairs[position + 1][1] if position + 1 < len(pairs) else None
                if following is None or following.kind != "batchnorm":
                    problems.append(
                        f"model layer {slot.name!r} has no bias but source layer {src.name!r} "
                        "has one and no BatchNormalization follows to absorb it"
                    )
                converted, pending_bias = [kernel], bias
            else:
                converted = [kernel, bias]
        elif src.kind == "batchnorm":
            gamma, beta, mean, variance = (_tensor(handle, keys[n]) for n in _BN_KEYS)
            if slot.epsilon is not None and slot.epsilon != TORCH_BN_EPSILON:
                ratio = (variance.astype(np.float64) + slot.epsilon) / (
                    variance.astype(np.float64) + TORCH_BN_EPSILON
                )
                gamma = as_float32(gamma * np.sqrt(ratio))
            if pending_bias is not None and pending_bias.shape == mean.shape:
                # BN(x + b) uses (x + b - mean): the same as BN(x) with mean - b
                mean = mean - pending_bias
            pending_bias = None
            converted = [gamma, beta, mean, variance]
        else:
            converted = [_dense(path, src, keys, channels), _tensor(handle, keys["bias"])]
            channels = None
        problems += shape_problems(slot, src.name, [a.shape for a in converted])
        arrays[slot.name] = converted
    if problems:
        raise_mismatches(_FORMAT, problems)
    logger.debug("converted %d safetensors layers from %s", len(arrays), path)
    return arrays
