"""Lasagne Recipes pickles (``vgg19.pkl``), loaded through a restricted, zero-copy unpickler.

The file is a Python 2 pickle of ``{'param values': [W, b, ...], 'synset words': [...],
'mean value': array, 'model name': str}``. It is never given to ``pickle.load``:
:mod:`kzoo.converters._safe_pickle` admits only NumPy arrays and plain data, and reads the
arrays as views of a memory map, so converting touches each weight once.

Layouts: conv W is ``(out, in, h, w)`` (the VGG recipe uses ``flip_filters=False``, so no
spatial flip); dense W is already ``(in, out)`` and the first dense layer flattened its input
in ``(C, H, W)`` order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.converters._layout import conv_kernel, spatial_size, swap_row_groups
from kzoo.converters._mapped import offset_of, populate, release
from kzoo.converters._safe_pickle import SafeUnpickler, load_mapped
from kzoo.converters.pairing import LayerContext, Source, SourceLayer
from kzoo.converters.slots import WeightSlot
from kzoo.errors import ConversionError

__all__ = ["SafeUnpickler", "open_source", "read_lasagne_metadata", "safe_load"]

_FORMAT = "lasagne"


def safe_load(path: Path) -> Any:
    """Load a (Python 2 or 3) pickle that may only contain numpy arrays and plain data.

    Large arrays are read-only views of the file's memory map.

    Raises:
        UnsafePickleError: The pickle asks for anything but numpy's array reconstruction.
        ConversionError: The file is not a readable pickle (truncated, garbled).
    """
    return _text_keys(load_mapped(path, "Lasagne pickle")[0])


def _text_keys(data: Any) -> Any:
    """Decode the Python 2 ``str`` keys of a top-level dict (loaded as bytes)."""
    if isinstance(data, dict):
        return {_text(k) if isinstance(k, bytes) else k: v for k, v in data.items()}
    return data


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf8")
        except UnicodeError:
            return value.decode("latin1")
    return str(value)


def _as_dict(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("param values"), list):
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ConversionError(
            f"{str(path)!r} is not a Lasagne Recipes pickle: expected a dict with a 'param "
            f"values' list. Received: {got}"
        )
    params = data["param values"]
    bad = [
        i
        for i, p in enumerate(params)
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.number)
    ]
    if bad:
        raise ConversionError(
            f"'param values' in {str(path)!r} must hold numeric arrays only. Received: "
            f"non-numeric entries at positions {bad[:10]}"
        )
    return data


def read_lasagne_metadata(path: Path) -> dict[str, Any]:
    """Return the class names, mean pixel and model name stored beside the weights.

    Returns:
        ``{"synset_words": list[str], "mean_value": np.ndarray | None, "model_name": str}``.

    Raises:
        UnsafePickleError, ConversionError: As :func:`safe_load`, or not a Lasagne pickle.
    """
    data = _as_dict(safe_load(path), Path(path))
    words = [_text(w) for w in data.get("synset words", [])]
    mean = data.get("mean value")
    return {
        "synset_words": words,
        "mean_value": None if mean is None else np.asarray(mean, dtype=np.float64),
        "model_name": _text(data.get("model name", "")),
    }


def _group(params: list[np.ndarray]) -> list[tuple[SourceLayer, list[int]]]:
    """Group ``[W, b, W, b, ...]`` into layers: each W (2-D or 4-D) with its 1-D arrays."""
    layers: list[tuple[SourceLayer, list[int]]] = []
    for index, param in enumerate(params):
        if param.ndim in (2, 4) or not layers:
            kind = {4: "conv", 2: "dense"}.get(param.ndim, "unknown")
            layers.append((SourceLayer(f"param values[{index}]", kind, ()), [index]))
        else:
            layers[-1][1].append(index)
    return [
        (
            SourceLayer(
                src.name,
                src.kind,
                tuple(params[i].shape for i in idx),
                tuple(params[i].dtype.name for i in idx),
            ),
            idx,
        )
        for src, idx in layers
    ]


def _dense_kernel(weight: np.ndarray, channels: int | None, name: str) -> np.ndarray:
    """Lasagne dense W is already Keras's ``(in, out)``; after the convs its rows are (C, H, W)."""
    if channels is None:
        return _copy(weight)
    spatial_size(weight.shape[0], channels, name)  # checks the rows are C x H x W
    # Keras row (h, w, c) is Lasagne row (c, h, w)
    return swap_row_groups(weight, channels)


def _copy(array: np.ndarray) -> np.ndarray:
    # A float32 array of its own: the loaded one is a read-only view of the file's map.
    return np.array(array, dtype=np.float32, order="C")


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """Open a Lasagne Recipes pickle for conversion, through the restricted unpickler.

    Raises:
        UnsafePickleError: The pickle asks for anything but numpy arrays.
        ConversionError: The file is unreadable or not a Lasagne pickle.
    """
    data, buf = load_mapped(path, "Lasagne pickle")
    params = _as_dict(_text_keys(data), Path(path))["param values"]

    def convert_layer(
        src: SourceLayer, indices: list[int], slot: WeightSlot, context: LayerContext
    ) -> list[np.ndarray]:
        sources = [params[i] for i in indices]
        spans = [_span(buf, array) for array in sources]
        for span in spans:
            populate(buf, *span)
        weight, *rest = sources
        if src.kind == "conv":
            kernel = conv_kernel(weight)
        else:
            kernel = _dense_kernel(weight, context.flattened_channels, src.name)
        converted = [kernel, *(_copy(r) for r in rest)]
        for i, span in zip(indices, spans, strict=True):  # keep peak memory near the output
            params[i] = None
            release(buf, *span)
        return converted

    yield Source(_FORMAT, _group(params), convert_layer, lambda idx: [params[i] for i in idx])


def _span(buf: Any, array: np.ndarray) -> tuple[int, int]:
    """The byte range of ``array`` in the map, or an empty range if it is not a view of it."""
    offset = offset_of(buf, array)
    return (0, 0) if offset is None else (offset, offset + array.nbytes)
