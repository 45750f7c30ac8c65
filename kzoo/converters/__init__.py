"""Weight converters: one module per source format, all producing the same output.

Every converter reads one file and returns Keras ``channels_last`` float32 arrays keyed by
Keras layer name, in ``layer.weights`` order (conv/dense: ``[kernel, bias]``; batchnorm:
``[gamma, beta, moving_mean, moving_variance]``)::

    >>> from kzoo.converters import convert, slots_of
    >>> arrays = convert("caffe", path, slots_of(model))

Source layers are matched to the model's weight slots *in order*; names are not trusted
across formats (Caffe says ``conv1_1``, torchvision ``features.0``). A model may cover only a
prefix of the file's layers (``include_top=False``): the remaining source layers are ignored.
Any count, kind or shape mismatch raises one :class:`~kzoo.errors.ConversionError` that
names both sides.

This module does not import Keras, h5py or safetensors: :func:`slots_of` uses the model it
is given, and each converter module is imported on first use.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.converters._layout import permute_kernel
from kzoo.errors import ConversionError

__all__ = [
    "CONVERTERS",
    "CONVERTER_VERSION",
    "Converter",
    "WeightSlot",
    "convert",
    "slots_of",
]

Arrays = dict[str, list[np.ndarray]]
Converter = Callable[[Path, Sequence["WeightSlot"]], Arrays]

# Bump a format's number on any fix: it is part of the converted-cache file name, so a fixed
# converter never reuses a stale conversion.
CONVERTER_VERSION: dict[str, int] = {
    "caffe": 1,
    "keras_h5": 1,
    "lasagne": 1,
    "safetensors_vgg": 1,
}

_KIND_OF_CLASS = {
    "Conv2D": "conv",
    "Convolution2D": "conv",
    "Dense": "dense",
    "BatchNormalization": "batchnorm",
}


@dataclass(frozen=True)
class WeightSlot:
    """One Keras layer that holds weights, in model order.

    Attributes:
        name: The Keras layer name (``block1_conv1``, ``fc1``, ``block1_conv1_bn``, ...).
        kind: ``"conv"``, ``"dense"`` or ``"batchnorm"``.
        shapes: The Keras weight shapes, in ``layer.weights`` order.
        epsilon: A BatchNormalization layer's epsilon (None for other layers, or unknown):
            converters from frameworks with another epsilon rescale gamma to match exactly.
    """

    name: str
    kind: str
    shapes: tuple[tuple[int, ...], ...]
    epsilon: float | None = None


def _flat_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        if hasattr(layer, "layers") and not _KIND_OF_CLASS.get(type(layer).__name__):
            layers.extend(_flat_layers(layer))  # a nested model (transfer learning)
        else:
            layers.append(layer)
    return layers


def slots_of(model: Any) -> list[WeightSlot]:
    """List the weight-holding layers of a built Keras model, in model order.

    Args:
        model: A built Keras model (nested models are walked in order).

    Returns:
        One :class:`WeightSlot` per layer that has weights.

    Raises:
        ConversionError: A layer holds weights that no converter knows how to fill.
    """
    slots = []
    unknown = []
    for layer in _flat_layers(model):
        if not layer.weights:
            continue
        kind = next(
            (
                _KIND_OF_CLASS[c.__name__]
                for c in type(layer).__mro__
                if c.__name__ in _KIND_OF_CLASS
            ),
            None,
        )
        if kind is None:
            unknown.append(f"{layer.name} ({type(layer).__name__})")
            continue
        shapes = tuple(tuple(int(d) for d in w.shape) for w in layer.weights)
        epsilon = float(layer.epsilon) if kind == "batchnorm" else None
        slots.append(WeightSlot(layer.name, kind, shapes, epsilon))
    if unknown:
        raise ConversionError(
            "pretrained weights can only fill Conv2D, Dense and BatchNormalization layers, but the "
            f"model has other layers with weights. Received: {', '.join(unknown)}"
        )
    return slots


def convert(fmt: str, path: Path, slots: Sequence[WeightSlot]) -> Arrays:
    """Convert a weights file of format ``fmt`` into Keras arrays for ``slots``.

    Args:
        fmt: One of ``CONVERTERS`` (``keras_h5``, ``caffe``, ``lasagne``, ``safetensors_vgg``).
        path: The source file.
        slots: The model's weight slots (:func:`slots_of`); a prefix of the file's layers.

    Returns:
        Keras float32 arrays keyed by layer name, in ``layer.weights`` order.

    Raises:
        UnknownNameError: ``fmt`` is not a known format.
        ConversionError: The file is unreadable or does not fit the slots.
    """
    if fmt not in CONVERTERS:
        from kzoo.errors import UnknownNameError

        raise UnknownNameError("weights format", fmt, list(CONVERTERS))
    return CONVERTERS[fmt](Path(path), list(slots))


# ---------------------------------------------------------------------------------------------
# Helpers shared by the converter modules.


@dataclass
class SourceLayer:
    """A layer of a source file, before conversion.

    Attributes:
        name: How the source names it (for error messages).
        kind: ``"conv"``, ``"dense"`` or ``"batchnorm"``.
        shapes: Its array shapes in the source layout (for error messages).
    """

    name: str
    kind: str
    shapes: tuple[tuple[int, ...], ...]


def pair_layers(
    source: Sequence[SourceLayer], slots: Sequence[WeightSlot], fmt: str
) -> list[tuple[int, WeightSlot]]:
    """Match slots to source layers in order; the slots may cover a prefix of the source.

    Raises:
        ConversionError: More slots than source layers, or kinds that differ (all listed).
    """
    problems = []
    model_kinds, file_kinds = _count_kinds(slots), _count_kinds(source)
    if model_kinds != file_kinds and len(slots) >= len(source):
        problems.append(f"the model has {model_kinds} layers, the {fmt} file {file_kinds}")
    if len(slots) > len(source):
        problems.append(
            f"the model has {len(slots)} layers with weights but the {fmt} file has only "
            f"{len(source)}: model layers {[s.name for s in slots[len(source) :]]} have no source"
        )
    pairs = []
    for index, (src, slot) in enumerate(zip(source, slots, strict=False)):  # slots: a prefix
        if src.kind != slot.kind:
            problems.append(
                f"model layer {slot.name!r} ({slot.kind} {list(slot.shapes)}) lines up with "
                f"source layer {src.name!r} ({src.kind} {list(src.shapes)})"
            )
        pairs.append((index, slot))
    if problems:
        raise_mismatches(fmt, problems)
    return pairs


def _count_kinds(layers: Sequence[SourceLayer | WeightSlot]) -> str:
    counts: dict[str, int] = {}
    for layer in layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def raise_mismatches(fmt: str, problems: Sequence[str]) -> None:
    """Raise one ConversionError that lists every problem."""
    listing = "\n".join(f"  - {p}" for p in problems)
    raise ConversionError(
        f"the {fmt} weights do not fit the model ({len(problems)} problem(s)):\n{listing}\n"
        "Check that the model matches the file's architecture (depth, widths, input size, "
        "batch norm or not)."
    )


def shape_problems(
    slot: WeightSlot, source_name: str, shapes: Sequence[Sequence[int]]
) -> list[str]:
    """Describe how converted array ``shapes`` differ from ``slot.shapes`` (empty when they fit)."""
    got = tuple(tuple(int(d) for d in s) for s in shapes)
    if got == slot.shapes:
        return []
    return [
        f"model layer {slot.name!r} expects shapes {list(slot.shapes)} but source layer "
        f"{source_name!r} converts to {list(got)}"
    ]


def as_float32(array: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy-if-needed of ``array``."""
    return np.ascontiguousarray(array, dtype=np.float32)


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """Caffe/Lasagne/torch ``(out, in, h, w)`` -> Keras ``(h, w, in, out)``, float32.

    No spatial flip: all of them, and Keras, compute cross-correlation.
    """
    out_channels, in_channels, height, width = weight.shape
    kernel = permute_kernel(lambda a, b: weight[a:b], out_channels, in_channels, height * width)
    return kernel.reshape(height, width, in_channels, out_channels)


def spatial_size(in_features: int, channels: int, source_name: str) -> int:
    """Side of the square feature map that a first dense layer flattens.

    Raises:
        ConversionError: ``in_features`` is not ``channels * side * side``.
    """
    side = math.isqrt(in_features // channels) if channels and in_features % channels == 0 else 0
    if side == 0 or side * side * channels != in_features:
        raise ConversionError(
            f"source layer {source_name!r} has {in_features} inputs, which is not "
            f"{channels} channels times a square feature map; kzoo supports square inputs only. "
            f"Received: in_features={in_features}, channels={channels}"
        )
    return side


def dense_kernel_from_rows(
    rows: Callable[[int, int], np.ndarray],
    out_features: int,
    in_features: int,
    chw: tuple[int, int, int] | None = None,
    done: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Build a Keras ``(in, out)`` dense kernel from a source ``(out, in)`` matrix.

    Args:
        rows: ``rows(start, stop)`` returns source rows ``start:stop`` as a ``(k, in)`` array
            (a view of a memory map, a safetensors slice...), so the full source matrix never
            needs a second in-memory copy. Called from worker threads.
        out_features: Number of source rows.
        in_features: Number of source columns.
        chw: When the layer follows the last convolution, ``(C, H, W)``: the source
            flattened its input in ``(C, H, W)`` order, Keras flattens ``(H, W, C)``.
        done: Optional ``done(start, stop)``, called once rows ``start:stop`` are converted.

    Returns:
        The C-contiguous float32 kernel, shape ``(in_features, out_features)``.
    """
    channels, taps = (chw[0], chw[1] * chw[2]) if chw is not None else (in_features, 1)
    kernel = permute_kernel(rows, out_features, channels, taps, done)
    return kernel.reshape(in_features, out_features)


def _lazy(module: str) -> Converter:
    def converter(path: Path, slots: Sequence[WeightSlot]) -> Arrays:
        return importlib.import_module(f"kzoo.converters.{module}").convert(path, slots)

    converter.__name__ = f"convert_{module}"
    converter.__doc__ = f"Convert a file with :func:`kzoo.converters.{module}.convert`."
    return converter


CONVERTERS: dict[str, Converter] = {
    "caffe": _lazy("caffe"),
    "keras_h5": _lazy("keras_h5"),
    "lasagne": _lazy("lasagne"),
    "safetensors_vgg": _lazy("torch_vgg"),
}
