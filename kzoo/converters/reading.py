"""Reading a weights file with its format's reader: :func:`convert` and :func:`inspect`.

The format table names each format's module; this module imports it on first use and runs
its ``open_source`` through the shared loop of :mod:`.pairing`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from kzoo.converters.formats import FORMATS, canonical_format
from kzoo.converters.pairing import (
    Arrays,
    SourceLayer,
    convert_layers,
    dtype_problems,
    value_problems,
)
from kzoo.converters.slots import WeightSlot
from kzoo.errors import ConversionError, UnknownNameError

__all__ = ["convert", "inspect", "reader"]


def reader(fmt: str):
    """The converter module of format ``fmt`` (it exposes ``open_source(path)``).

    Raises:
        UnknownNameError: ``fmt`` is not in the format table.
    """
    fmt = canonical_format(fmt)
    if fmt not in FORMATS:
        raise UnknownNameError("weights format", fmt, list(FORMATS))
    return importlib.import_module(f"kzoo.converters.{FORMATS[fmt].module}")


def convert(fmt: str, path: str | Path, slots: Sequence[WeightSlot]) -> Arrays:
    """Convert a weights file of format ``fmt`` into Keras arrays for ``slots``.

    Args:
        fmt: A name in :data:`FORMATS` (``keras_h5``, ``caffe``, ``lasagne``, ``torch``) or a
            former name of one (``safetensors_vgg``).
        path: The source file.
        slots: The model's weight slots (:func:`slots_of`); a prefix of the file's layers.

    Returns:
        Keras float32 arrays keyed by layer name, in ``layer.weights`` order.

    Raises:
        UnknownNameError: ``fmt`` is not a known format.
        ConversionError: The file is unreadable, does not fit the slots, or holds integer,
            NaN or infinite values; ``file_is_bad`` says whether the file is at fault.
    """
    with _blaming_the_file(), reader(fmt).open_source(Path(path)) as source:
        return convert_layers(source, list(slots))


def inspect(fmt: str, path: str | Path, *, values: bool = True) -> list[SourceLayer]:
    """Read a weights file with its format's own reader, converting nothing.

    This is what the zoo runs on a file before installing it: the safe unpickler for a
    pickle, the HDF5, protobuf or safetensors structure for the others, the element types,
    and (with ``values``) every value, which must be a finite number.

    Returns:
        The layers with weights, in file order.

    Raises:
        UnknownNameError: ``fmt`` is not a known format.
        UnsafePickleError, ConversionError: As :func:`convert` would for this file.
    """
    with _blaming_the_file(), reader(fmt).open_source(Path(path)) as source:
        layers = [layer for layer, _ in source.layers]
        problems = [p for layer in layers for p in dtype_problems(layer)]
        if values and not problems:
            for layer, payload in source.layers:
                problems += value_problems(
                    f"source layer {layer.name!r}", source.stored_arrays(payload)
                )
    if not layers or problems:
        error = ConversionError(
            f"{str(path)!r} is not usable {fmt} weights: "
            + ("; ".join(problems) if problems else "it holds no layers with weights")
        )
        error.file_is_bad = True
        raise error
    return layers


@contextlib.contextmanager
def _blaming_the_file() -> Iterator[None]:
    """Mark a ConversionError whose cause is not yet known as the file's fault.

    Only a file that reads cleanly but has other layers than the model is not to blame; the
    shared loop says so when it finds that.
    """
    try:
        yield
    except ConversionError as error:
        if error.file_is_bad is None:
            error.file_is_bad = True
        raise
