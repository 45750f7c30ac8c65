"""Lasagne Recipes pickles (``vgg19.pkl``), loaded through a restricted unpickler.

The file is a Python 2 pickle of ``{'param values': [W, b, ...], 'synset words': [...],
'mean value': array, 'model name': str}``. ``pickle.load`` on a downloaded file would run
whatever the file asks for, so :class:`SafeUnpickler` resolves only the handful of names that
rebuild numpy arrays, and anything else raises :class:`~kzoo.errors.UnsafePickleError`
before it is called.

Python 2 ``str`` objects are loaded with ``encoding="bytes"`` rather than the usual
``"latin1"``: numpy accepts both, but with ``"latin1"`` each array's raw data is decoded to a
Python ``str`` and encoded back (two extra passes over 548 MB), while with ``"bytes"`` numpy
uses the loaded buffer as the array's memory. Text fields are decoded here instead.

Layouts: conv W is ``(out, in, h, w)`` (the VGG recipe uses ``flip_filters=False``, so no
spatial flip); dense W is already ``(in, out)`` and the first dense layer flattened its input
in ``(C, H, W)`` order.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.converters import (
    Arrays,
    SourceLayer,
    WeightSlot,
    as_float32,
    conv_kernel,
    pair_layers,
    raise_mismatches,
    shape_problems,
    spatial_size,
)
from kzoo.errors import ConversionError, UnsafePickleError

__all__ = ["SafeUnpickler", "convert", "read_lasagne_metadata", "safe_load"]

logger = logging.getLogger("kzoo")

_FORMAT = "lasagne"

# Taken from numpy's own reductions, so both numpy 1 (numpy.core) and numpy 2 (numpy._core)
# resolve without importing a deprecated module path.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    # what numpy's protocol-5 reduction calls (numpy.core.numeric._frombuffer), rebuilt here
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if order == "F" else "C")


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') under protocol 2; only that is allowed
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only numpy's array reconstruction names.

        Raises:
            UnsafePickleError: For every other global (``os.system``, ``builtins.eval``, ...).
        """
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load a pickle that asks for {module}.{name}: kzoo only loads numpy "
                "arrays from pickles, and this file could run code. Use a trusted copy of the "
                "weights. Received: " + f"{module}.{name}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are never needed for numpy arrays."""
        raise UnsafePickleError(f"refusing a pickle persistent id. Received: {pid!r}")


def safe_load(path: Path) -> Any:
    """Load a (Python 2 or 3) pickle that may only contain numpy arrays and plain data.

    Raises:
        UnsafePickleError: The pickle asks for anything but numpy's array reconstruction.
        ConversionError: The file is not a readable pickle (truncated, garbled).
    """
    try:
        with open(path, "rb") as handle:
            return _text_keys(SafeUnpickler(handle, encoding="bytes").load())
    except ConversionError:
        raise
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        MemoryError,
        OverflowError,
        UnicodeError,
    ) as error:
        raise ConversionError(
            f"cannot read Lasagne pickle {str(path)!r}: {type(error).__name__}: {error}. The "
            "file may be truncated or damaged; delete it to download again."
        ) from error


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
        (SourceLayer(src.name, src.kind, tuple(params[i].shape for i in idx)), idx)
        for src, idx in layers
    ]


def _dense_kernel(weight: np.ndarray, channels: int | None, name: str) -> np.ndarray:
    """Lasagne dense W is already Keras's ``(in, out)``; after the convs its rows are (C, H, W)."""
    if channels is None:
        return as_float32(weight)  # no copy: a view of the loaded buffer
    side = spatial_size(weight.shape[0], channels, name)
    # Keras row (h, w, c) is Lasagne row (c, h, w): a row gather, contiguous 16 KB rows
    order = np.arange(weight.shape[0]).reshape(channels, side, side).transpose(1, 2, 0)
    return as_float32(np.take(weight, order.reshape(-1), axis=0))


def convert(path: Path, slots: Sequence[WeightSlot]) -> Arrays:
    """Read a Lasagne Recipes pickle into arrays for ``slots``.

    Raises:
        UnsafePickleError: The pickle asks for anything but numpy arrays.
        ConversionError: The file is unreadable or its layers do not fit the slots.
    """
    params = _as_dict(safe_load(path), Path(path))["param values"]
    layers = _group(params)
    pairs = pair_layers([src for src, _ in layers], slots, _FORMAT)
    arrays: Arrays = {}
    problems = []
    previous_conv_channels = None
    for index, slot in pairs:
        src, indices = layers[index]
        weight, *rest = (params[i] for i in indices)
        if src.kind == "conv":
            kernel = conv_kernel(weight)
            previous_conv_channels = weight.shape[0]
        else:
            kernel = _dense_kernel(weight, previous_conv_channels, src.name)
            previous_conv_channels = None
        for i in indices:  # free each source array once converted (peak memory)
            params[i] = None
        converted = [kernel, *(as_float32(r) for r in rest)]
        problems += shape_problems(slot, src.name, [a.shape for a in converted])
        arrays[slot.name] = converted
    if problems:
        raise_mismatches(_FORMAT, problems)
    logger.debug("converted %d Lasagne layers from %s", len(arrays), path)
    return arrays
