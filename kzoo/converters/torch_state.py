"""torchvision / timm state dicts: VGG and ResNet, as safetensors or as torch ``.pth`` files.

The container is told by its first bytes: a zip archive is a torch checkpoint, read by the
restricted unpickler of :mod:`._torch_pickle` (never ``torch.load``); anything else must be
safetensors (read with no torch and no pickle). Both give the same state dict of keys, and
the keys tell the network:

- VGG, torchvision: ``features.{i}`` (conv ``(out, in, h, w)`` with bias; in the BN variant
  ``features.{i}.running_mean/var`` too), then ``classifier.{0,3,6}`` (Linear ``(out, in)``;
  ``classifier.0`` flattens its input in ``(C, H, W)`` order);
- VGG, timm: the same ``features.*``, then ``pre_logits.fc1`` (fc6 as a 7x7 conv),
  ``pre_logits.fc2`` (a 1x1 conv) and ``head.fc``. VGG keys name no Keras layer: they pair in
  order;
- ResNet (torchvision and timm alike): ``conv1``, ``bn1``, ``layer{k}.{i}.conv{j}`` /
  ``.bn{j}``, ``layer{k}.{i}.downsample.{0,1}`` (the projection shortcut), ``fc``; no conv has
  a bias. :func:`keras_name` is the one correspondence with keras.applications names
  (``layer{k}.{i}.conv{j}`` is ``conv{k+1}_block{i+1}_{j}_conv``, ``downsample`` is block
  part ``0``, ``fc`` is ``predictions``), so these pair by name.

torchvision's VGG-BN keeps a conv bias in front of each BatchNorm, while a conv followed by BN
in kzoo has no bias. BN subtracts its running mean right after that bias, so the bias folds
exactly into the moving mean: ``moving_mean' = running_mean - conv_bias``. A source conv
without a bias fills a Keras conv that has one with zeros.

torch's BatchNorm epsilon is 1e-5: for a slot with another epsilon,
``gamma' = gamma * sqrt(var + eps_keras) / sqrt(var + 1e-5)`` gives exactly torch's output in
inference (for fine-tuning with batch statistics, build BN layers with ``epsilon=1e-5``).

Big kernels are converted straight from a read-only memory map of the file, a block of rows
at a time, so they are never held twice in memory.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
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
from kzoo.converters._mapped import map_file, offset_of, row_access
from kzoo.converters._torch_pickle import is_zip, load_pth
from kzoo.converters.pairing import LayerContext, Source, SourceLayer, raise_mismatches
from kzoo.converters.slots import WeightSlot
from kzoo.errors import ConversionError

__all__ = ["keras_name", "open_source", "read_layers"]

_FORMAT = "torch"
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
TORCH_BN_EPSILON = 1e-5
# safetensors dtype codes -> NumPy (BF16 has none: kept as a name, refused by the checks)
_NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip
_VGG = re.compile(r"(features|classifier)\.(\d+)|(pre_logits\.fc[12]|head\.fc)")
_VGG_SECTIONS = {"features": 0, "classifier": 1, "pre_logits.fc1": 1, "pre_logits.fc2": 2}
_RESNET_STEM = {"conv1": ("conv1_conv", 0), "bn1": ("conv1_bn", 1), "fc": ("predictions", 0)}
_RESNET_BLOCK = re.compile(r"layer(\d+)\.(\d+)\.(?:(conv|bn)(\d+)|downsample\.([01]))")


def keras_name(key_prefix: str) -> str | None:
    """The keras.applications layer name of a torchvision/timm ResNet module, or None.

    ``conv1`` -> ``conv1_conv``, ``layer2.0.conv3`` -> ``conv3_block1_3_conv``,
    ``layer2.0.downsample.1`` -> ``conv3_block1_0_bn``, ``fc`` -> ``predictions``; VGG modules
    and anything else name no Keras layer (None: paired in order).
    """
    if key_prefix in _RESNET_STEM:
        return _RESNET_STEM[key_prefix][0]
    match = _RESNET_BLOCK.fullmatch(key_prefix)
    if match is None:
        return None
    stage, block, kind, index, downsample = match.groups()
    prefix = f"conv{int(stage) + 1}_block{int(block) + 1}"
    if downsample is not None:
        return f"{prefix}_0_{'conv' if downsample == '0' else 'bn'}"
    return f"{prefix}_{int(index)}_{kind}"


def _order(prefix: str) -> tuple[int, ...] | None:
    """Where a module comes in the network (None: not a VGG or ResNet module)."""
    vgg = _VGG.fullmatch(prefix)
    if vgg is not None:
        if vgg.group(1):
            return (_VGG_SECTIONS[vgg.group(1)], int(vgg.group(2)), 0, 0, 0)
        return (_VGG_SECTIONS.get(vgg.group(3), 3), 0, 0, 0, 0)
    if prefix in _RESNET_STEM:
        return (10 if prefix != "fc" else 12, 0, 0, 0, _RESNET_STEM[prefix][1])
    block = _RESNET_BLOCK.fullmatch(prefix)
    if block is None:
        return None
    stage, index, kind, part, downsample = block.groups()
    if downsample is not None:  # the projection runs beside the block: after its convs here
        return (11, int(stage), int(index), 99, int(downsample))
    return (11, int(stage), int(index), int(part), int(kind == "bn"))


@dataclass(frozen=True)
class _Tensor:
    """One tensor of the state dict: a read-only view (None for bfloat16), shape, dtype."""

    array: np.ndarray | None
    shape: tuple[int, ...]
    dtype: str


class _StateDict:
    """The file's tensors by key, as views of its memory map."""

    def __init__(self, tensors: dict[str, _Tensor], buf: mmap.mmap) -> None:
        self.tensors, self.buf = tensors, buf

    def value(self, key: str) -> np.ndarray:
        """A small tensor as a float32 copy (never a view: it outlives the map)."""
        return np.array(self.tensors[key].array, dtype=np.float32, copy=True)

    def stored(self, keys: dict[str, str]) -> list[np.ndarray]:
        """A layer's tensors as the file stores them."""
        return [self.tensors[key].array for key in keys.values()]

    def kernel(self, key: str, taps: int | None = None, chw: Any = None) -> np.ndarray:
        """Convert tensor ``key`` (``(out, in, ...)``) to Keras order.

        Args:
            key: The tensor's key.
            taps: For a conv kernel, ``kh * kw`` (returns ``(kh, kw, in, out)``).
            chw: For a dense kernel after the convs, the ``(C, H, W)`` its input flattened.

        Returns:
            A float32 conv kernel ``(kh, kw, in, out)`` or dense kernel ``(in, out)``.
        """
        array = self.tensors[key].array
        shape = array.shape
        out_features, in_features = shape[0], math.prod(shape[1:])
        matrix = np.ascontiguousarray(array).reshape(out_features, in_features)
        offset = offset_of(self.buf, matrix) if matrix.size else None
        if offset is not None:
            rows, done = row_access(self.buf, matrix, offset)
        else:  # a copy (a strided or compressed tensor): nothing to release

            def rows(a: int, b: int) -> np.ndarray:
                return matrix[a:b]

            done = None
        if taps is not None:
            kernel = permute_kernel(rows, out_features, shape[1], taps, done)
            return kernel.reshape(*shape[2:], shape[1], out_features)
        return dense_kernel_from_rows(rows, out_features, in_features, chw, done)


def _safetensors(path: Path) -> _StateDict:
    """Views of a safetensors file's tensors, after the safetensors library has checked it."""
    with safe_open(str(path), framework="np"):
        pass  # validates the header: offsets in bounds, contiguous, non-overlapping
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    start = 8 + size
    buf = map_file(path, "safetensors weights")
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        shape, code = tuple(entry["shape"]), entry["dtype"]
        dtype = _NUMPY_DTYPES.get(code)
        array = None
        if dtype is not None:
            array = np.frombuffer(
                buf, dtype=dtype, count=math.prod(shape), offset=start + entry["data_offsets"][0]
            ).reshape(shape)
        name = np.dtype(dtype).name if dtype else {"BF16": "bfloat16"}.get(code, code.lower())
        tensors[key] = _Tensor(array, shape, name)
    return _StateDict(tensors, buf)


def _pth(path: Path) -> _StateDict:
    state, buf = load_pth(path)
    tensors = {k: _Tensor(v, tuple(v.shape), v.dtype.name) for k, v in state.items()}
    return _StateDict(tensors, buf)


def read_layers(state: _StateDict) -> list[tuple[SourceLayer, dict[str, str]]]:
    """Group a state dict's keys into layers, in network order.

    Returns:
        ``(SourceLayer, {"weight": key, "bias": key, ...})`` per module with weights; ResNet
        modules carry their Keras name as ``target``.

    Raises:
        ConversionError: Keys that follow neither the torchvision/timm VGG nor ResNet layout.
    """
    modules: dict[str, dict[str, str]] = {}
    for key in state.tensors:
        prefix, _, leaf = key.rpartition(".")
        modules.setdefault(prefix, {})[leaf] = key
    unknown = sorted(p for p in modules if _order(p) is None)
    if unknown:
        raise ConversionError(
            "not a torchvision or timm VGG or ResNet state dict: unexpected modules "
            f"{unknown[:8]}. Received keys like {sorted(state.tensors)[:4]}"
        )
    layers = []
    for prefix in sorted(modules, key=_order):
        keys = modules[prefix]
        if "weight" not in keys:
            raise ConversionError(f"module {prefix!r} has no weight. Received: {sorted(keys)}")
        shape = state.tensors[keys["weight"]].shape
        if "running_mean" in keys:
            kind, names = "batchnorm", _BN_KEYS
        elif len(shape) == 4 and not prefix.startswith("pre_logits"):
            kind, names = "conv", ("weight", "bias") if "bias" in keys else ("weight",)
        else:  # Linear, or timm's conv-shaped fc1/fc2
            kind, names = "dense", ("weight", "bias") if "bias" in keys else ("weight",)
        missing = [n for n in names if n not in keys]
        if missing:
            raise ConversionError(f"module {prefix!r} lacks {missing}. Received: {sorted(keys)}")
        ordered = {n: keys[n] for n in names}
        shapes = tuple(state.tensors[k].shape for k in ordered.values())
        dtypes = tuple(state.tensors[k].dtype for k in ordered.values())
        layer = SourceLayer(prefix, kind, shapes, dtypes, keras_name(prefix))
        layers.append((layer, ordered))
    return layers


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
    """Open a torchvision or timm state dict (safetensors or zip ``.pth``) for conversion.

    Raises:
        UnsafePickleError: A ``.pth`` whose pickle asks for anything but tensors.
        ConversionError: The file is not valid safetensors nor a torch zip checkpoint, or
            has keys of another layout.
    """
    try:
        state = _pth(path) if is_zip(path) else _safetensors(path)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(
            f"cannot read torch weights {str(path)!r} as safetensors or a torch zip checkpoint: "
            f"{error}. The file may be truncated or damaged (checkpoints from torch older than "
            "1.6 are not zip archives: re-save them with a recent torch)."
        ) from error
    try:
        converter = _Converter(state)
        yield Source(_FORMAT, read_layers(state), converter.layer, state.stored)
    finally:
        with contextlib.suppress(BufferError):  # views still alive: the GC closes it later
            state.buf.close()


class _Converter:
    """Converts one layer after the other; a bias-free kzoo conv hands its bias to the BN."""

    def __init__(self, state: _StateDict) -> None:
        self.state = state
        self.pending_bias: np.ndarray | None = None  # a conv bias to fold into the next BN

    def layer(
        self, src: SourceLayer, keys: dict[str, str], slot: WeightSlot, context: LayerContext
    ) -> list[np.ndarray]:
        state = self.state
        if src.kind == "conv":
            kernel = state.kernel(keys["weight"], taps=math.prod(src.shapes[0][2:]))
            return [kernel, *self._conv_bias(src, keys, slot, context)]
        if src.kind == "batchnorm":
            gamma, beta, mean, variance = (state.value(keys[n]) for n in _BN_KEYS)
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
        kernel = state.kernel(keys["weight"], chw=chw)
        bias = state.value(keys["bias"]) if "bias" in keys else np.zeros(kernel.shape[1:], "f4")
        return [kernel, bias]

    def _conv_bias(
        self, src: SourceLayer, keys: dict[str, str], slot: WeightSlot, context: LayerContext
    ) -> list[np.ndarray]:
        """The Keras conv's bias: the source's, zeros, or none (folded into the next BN)."""
        wants_bias = len(slot.shapes) > 1
        if "bias" not in keys:
            return [np.zeros(src.shapes[0][0], np.float32)] if wants_bias else []
        bias = self.state.value(keys["bias"])
        if wants_bias:
            return [bias]
        following = context.next_slot
        if following is None or following.kind != "batchnorm":
            raise_mismatches(
                _FORMAT,
                [
                    f"model layer {slot.name!r} has no bias but source layer {src.name!r} has "
                    "one and no BatchNormalization follows to absorb it"
                ],
            )
        self.pending_bias = bias
        return []
