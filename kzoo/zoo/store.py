"""The converted-weights store: Keras arrays saved by layer name in one HDF5 file.

Layout: one group per layer name, holding datasets ``"0"``, ``"1"``, ... in ``layer.weights``
order; the root attribute ``layer_names`` keeps the model order and every ``meta`` entry is a
root attribute. Keras's own ``.weights.h5`` loads by position, so a renamed or reordered layer
would silently get the wrong weights; this file is read by name (see :mod:`kzoo.converters.assign`).

Writes are atomic: a temp file beside the target, fsync, then ``os.replace``, so a file at the
final path is always complete, even after a crash or with several processes writing at once.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from kzoo.download import atomic_write
from kzoo.errors import ConversionError

__all__ = ["load_weights", "read_meta", "save_weights"]

_FORMAT = "kzoo-weights-1"


def save_weights(path: Path, arrays: dict[str, list[np.ndarray]], meta: dict[str, str]) -> None:
    """Atomically write converted arrays to ``path``.

    Args:
        path: The final file (its folder is created if needed).
        arrays: Arrays keyed by layer name, in ``layer.weights`` order.
        meta: Strings stored as root attributes (source hash, converter version, ...).

    Raises:
        ConversionError: A layer name cannot be an HDF5 group name.
    """
    path = Path(path)
    bad = [name for name in arrays if not name or "/" in name or name == "."]
    if bad:
        raise ConversionError(f"layer names must be non-empty and free of '/'. Received: {bad}")
    with atomic_write(path) as temp, h5py.File(temp, "w") as h5:
        h5.attrs["format"] = _FORMAT
        h5.attrs["layer_names"] = list(arrays)
        for key, value in meta.items():
            h5.attrs[f"meta:{key}"] = str(value)
        for name, weights in arrays.items():
            group = h5.create_group(name)
            for index, weight in enumerate(weights):
                group.create_dataset(str(index), data=np.asarray(weight))


def _open(path: Path) -> h5py.File:
    try:
        h5 = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise ConversionError(
            f"cannot read converted weights {str(path)!r}: {error}. Delete the file to convert "
            "again."
        ) from error
    found = h5.attrs.get("format")
    if found != _FORMAT:
        h5.close()
        raise ConversionError(
            f"{str(path)!r} is not a kzoo converted-weights file. Received: format={found!r}"
        )
    return h5


def load_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Read a file written by :func:`save_weights`.

    Returns:
        Arrays keyed by layer name, in the saved model order.

    Raises:
        ConversionError: The file is missing, truncated or not a kzoo weights file.
    """
    with _open(Path(path)) as h5:
        try:
            arrays = {}
            for name in h5.attrs["layer_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                group = h5[name]
                arrays[name] = [group[str(i)][()] for i in range(len(group))]
        except (OSError, KeyError, ValueError) as error:
            raise ConversionError(
                f"converted weights {str(path)!r} are damaged: {error}. Delete the file to "
                "convert again."
            ) from error
    return arrays


def read_meta(path: Path) -> dict[str, str]:
    """Return the ``meta`` strings stored by :func:`save_weights`."""
    with _open(Path(path)) as h5:
        return {
            key[len("meta:") :]: str(value)
            for key, value in h5.attrs.items()
            if key.startswith("meta:")
        }
