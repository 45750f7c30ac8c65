"""The one conversion loop: pair source layers with model slots, convert each, check it all.

Every format reads its file into a :class:`Source` (its layers in file order, each with what
the format needs to convert it, and a ``convert_layer`` function); :func:`convert_layers`
does the rest the same way for all of them: match slots to source layers, refuse integer
arrays, convert layer by layer, check every converted shape and every value, and raise one
:class:`~kzoo.errors.ConversionError` that lists every problem.

How slots are matched is declared by each format, in one place per format: its reader gives
every source layer the Keras layer name it corresponds to (``SourceLayer.target``: torch's
``layer1.0.conv2`` is ``conv2_block1_2_conv``, Caffe's ``res4b1_branch2a`` is
``conv4_block2_1_conv``), or None where the file's name says nothing (Caffe's VGG
``conv1_1``, torchvision's ``features.0``, Keras's generated ``conv2d_7``). Then:

1. a slot whose name some source layer targets takes that layer;
2. the slots left take the source layers left that target no slot, in file order (a model may
   cover only a prefix of them, as ``include_top=False`` does).

A plain VGG file names nothing, so it pairs wholly in order; a ResNet pairs wholly by name;
InceptionV3's Keras file pairs its generated names in order and ``predictions`` by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from kzoo.converters.slots import WeightSlot
from kzoo.errors import ConversionError

__all__ = [
    "Arrays",
    "LayerContext",
    "Source",
    "SourceLayer",
    "convert_layers",
    "pair_layers",
    "raise_mismatches",
    "shape_problems",
    "value_problems",
]

Arrays = dict[str, list[np.ndarray]]
Payload = TypeVar("Payload")
FLOAT_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class SourceLayer:
    """A layer of a source file, before conversion.

    Attributes:
        name: How the source names it (for error messages).
        kind: ``"conv"``, ``"dense"`` or ``"batchnorm"``.
        shapes: Its array shapes in the source layout.
        dtypes: Its arrays' element types (NumPy names, ``"float32"``), where the reader
            knows them; anything but a float type is refused.
        target: The Keras layer name the format declares for it (keras.applications names:
            ``conv2_block1_0_conv``, ``predictions``), or None to pair it by order.
    """

    name: str
    kind: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...] = ()
    target: str | None = None


@dataclass(frozen=True)
class LayerContext:
    """What converting one layer may need to know about its neighbours.

    Attributes:
        previous: The source layer before it, or None for the first.
        next_slot: The model slot after its own, or None for the last.
    """

    previous: SourceLayer | None
    next_slot: WeightSlot | None

    @property
    def flattened_channels(self) -> int | None:
        """Channels of the feature map a dense layer's input was flattened from.

        The output channels of the conv (or BatchNorm) just before it; None after a dense
        layer, whose output is flat already.
        """
        if self.previous is None or self.previous.kind not in ("conv", "batchnorm"):
            return None
        return self.previous.shapes[0][0]


ConvertLayer = Callable[[SourceLayer, Any, WeightSlot, LayerContext], list[np.ndarray]]


@dataclass
class Source(Generic[Payload]):
    """A weights file opened by its format's reader.

    Attributes:
        format: The format's name, for messages.
        layers: The layers with weights in file order, each with the format's own handle on
            its arrays (datasets, blob views, tensor keys, ...).
        convert_layer: ``convert_layer(source_layer, payload, slot, context)`` returns the
            Keras arrays for ``slot``, in ``layer.weights`` order.
        stored_arrays: ``stored_arrays(payload)`` returns a layer's arrays as the file stores
            them (no conversion), for checking a file's values without a model.
    """

    format: str
    layers: list[tuple[SourceLayer, Payload]]
    convert_layer: ConvertLayer
    stored_arrays: Callable[[Any], list[np.ndarray]]


def convert_layers(source: Source, slots: Sequence[WeightSlot]) -> Arrays:
    """Convert ``source`` into Keras arrays for ``slots``: the loop every format shares.

    Returns:
        float32 arrays keyed by layer name, in ``layer.weights`` order.

    Raises:
        ConversionError: Layers that do not line up, integer arrays, converted shapes that
            differ from the slots (all listed in one error), or NaN/inf values (naming the
            layer and what was found).
    """
    fmt = source.format
    pairs = pair_layers([src for src, _ in source.layers], slots, fmt)
    problems = [p for index, _ in pairs for p in dtype_problems(source.layers[index][0])]
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        error = ConversionError(f"the {fmt} file holds arrays that are not weights:\n{listing}")
        error.file_is_bad = True
        raise error
    arrays: Arrays = {}
    damaged = []
    for position, (index, slot) in enumerate(pairs):
        src, payload = source.layers[index]
        context = LayerContext(
            previous=source.layers[index - 1][0] if index else None,
            next_slot=pairs[position + 1][1] if position + 1 < len(pairs) else None,
        )
        converted = source.convert_layer(src, payload, slot, context)
        problems += shape_problems(slot, src.name, [a.shape for a in converted])
        damaged += value_problems(f"model layer {slot.name!r} (source {src.name!r})", converted)
        arrays[slot.name] = converted
    if problems:
        raise_mismatches(fmt, problems)
    if damaged:
        listing = "\n".join(f"  - {p}" for p in damaged)
        error = ConversionError(
            f"the {fmt} weights hold values that are not finite numbers:\n{listing}\n"
            "The file is damaged (or was saved from a model whose training diverged); delete "
            "it and fetch a good copy."
        )
        error.file_is_bad = True
        raise error
    return arrays


def pair_layers(
    source: Sequence[SourceLayer], slots: Sequence[WeightSlot], fmt: str
) -> list[tuple[int, WeightSlot]]:
    """Match slots to source layers: by declared name first, then the rest in order.

    Args:
        source: The file's layers in file order, each with the Keras name its format declares
            (``target``) or None.
        slots: The model's weight slots in model order.
        fmt: The format's name, for messages.

    Returns:
        ``(source index, slot)`` pairs in slot order.

    Raises:
        ConversionError: Slots with no source layer, or kinds that differ (all listed).
    """
    wanted = {slot.name for slot in slots}
    by_target = {src.target: i for i, src in enumerate(source) if src.target in wanted}
    unnamed = [i for i, src in enumerate(source) if src.target not in wanted]
    ordered = [slot for slot in slots if slot.name not in by_target]
    problems = []
    model_kinds, file_kinds = _count_kinds(slots), _count_kinds(source)
    same_kinds = sorted(s.kind for s in slots) == sorted(s.kind for s in source)
    if not same_kinds and len(slots) >= len(source):
        problems.append(f"the model has {model_kinds} layers, the {fmt} file {file_kinds}")
    if len(ordered) > len(unnamed):
        missing = [s.name for s in ordered[len(unnamed) :]]
        if by_target:  # the file names its layers: the missing ones are those it lacks
            problems.append(
                f"model layers {missing} have no source: the {fmt} file has no layer of "
                "those names"
                + (f" and only {len(unnamed)} unnamed one(s) to pair in order" if unnamed else "")
            )
        else:
            problems.append(
                f"the model has {len(slots)} layers with weights but the {fmt} file has only "
                f"{len(source)}: model layers {missing} have no source"
            )
    in_order = dict(zip((s.name for s in ordered), unnamed, strict=False))  # slots: a prefix
    pairs = []
    for slot in slots:
        index = by_target.get(slot.name, in_order.get(slot.name))
        if index is None:
            continue
        src = source[index]
        if src.kind != slot.kind:
            how = "is named for" if slot.name in by_target else "lines up with"
            problems.append(
                f"model layer {slot.name!r} ({slot.kind} {list(slot.shapes)}) {how} "
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
    error = ConversionError(
        f"the {fmt} weights do not fit the model ({len(problems)} problem(s)):\n{listing}\n"
        "Check that the model matches the file's architecture (depth, widths, input size, "
        "batch norm or not)."
    )
    error.file_is_bad = False  # a sound file, another architecture
    raise error


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


def dtype_problems(src: SourceLayer) -> list[str]:
    """Describe the arrays of ``src`` that are not floats (empty when all are)."""
    bad = [d for d in src.dtypes if d not in FLOAT_DTYPES]
    if not bad:
        return []
    return [
        f"source layer {src.name!r} holds {', '.join(sorted(set(bad)))} arrays where weights "
        "are floating-point numbers"
    ]


def value_problems(where: str, arrays: Sequence[np.ndarray]) -> list[str]:
    """Describe the NaN and infinite values in ``arrays`` of layer ``where`` (empty if none).

    One summing pass per array (a NaN or an infinity survives a sum, and a sum runs at memory
    speed); only a non-finite sum is examined element by element.
    """
    found = []
    for position, array in enumerate(arrays):
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.add.reduce(array, axis=None)) if array.size else 0.0
        if math.isfinite(total):
            continue
        nans, infs = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nans or infs:
            what = ", ".join(
                f"{n:,} {kind}" for n, kind in ((nans, "NaN"), (infs, "infinite")) if n
            )
            found.append(f"{where}, array {position} of shape {tuple(array.shape)}: {what} values")
    return found
