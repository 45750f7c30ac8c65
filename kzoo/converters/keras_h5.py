"""Legacy Keras HDF5 weights (``vgg19_weights_tf_dim_ordering_tf_kernels*.h5``).

The file already holds Keras ``channels_last`` arrays, so "converting" is reading each layer's
datasets in its ``weight_names`` order, whatever they are called (Keras 1 wrote
``block1_conv1_W_1:0``, Keras 2 ``block1_conv1/kernel:0``), and checking them against the
model's slots. Weights saved with a whole model live under ``model_weights``.

Pairing: a layer's name in the file is its Keras name (``conv2_block1_0_conv``,
``predictions``), except the names Keras generates for unnamed layers (``conv2d_7``,
``batch_normalization_12``: InceptionV3's file), which depend on what else was built in the
same session; those pair by their order in the file's ``layer_names``. A BatchNormalization
built with ``scale=False`` (InceptionV3) stores three arrays (beta, mean, variance).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from kzoo.converters.pairing import LayerContext, Source, SourceLayer
from kzoo.converters.slots import WeightSlot
from kzoo.errors import ConversionError

__all__ = ["open_source", "read_layers"]

_FORMAT = "keras_h5"
# Names Keras gives layers that were not named (Keras 1 and 2/3 spellings), used with fullmatch
_GENERATED = re.compile(
    r"(conv2d|convolution2d|batch_normalization|batchnormalization|dense)(_\d+)?"
)


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _kind(shapes: tuple[tuple[int, ...], ...]) -> str:
    if len(shapes) in (3, 4) and all(len(s) == 1 for s in shapes):  # 3: scale=False
        return "batchnorm"
    if shapes and len(shapes[0]) == 4:
        return "conv"
    return "dense"


def read_layers(h5: h5py.File) -> list[tuple[SourceLayer, list[h5py.Dataset]]]:
    """List the layers that hold weights, in file order, with their datasets in order.

    Raises:
        ConversionError: The file lacks the legacy Keras attributes.
    """
    root = h5.get("model_weights", h5)
    if "layer_names" not in root.attrs:
        raise ConversionError(
            "not a legacy Keras weights file: no 'layer_names' attribute at its root. "
            f"Received: top-level keys {sorted(root.keys())[:10]}"
        )
    layers = []
    for layer_name in map(_text, root.attrs["layer_names"]):
        group = root[layer_name]
        names = [_text(n) for n in group.attrs.get("weight_names", [])]
        if not names:
            continue  # pooling, flatten, input: no weights
        datasets = [group[n] for n in names]
        shapes = tuple(tuple(int(d) for d in ds.shape) for ds in datasets)
        dtypes = tuple(ds.dtype.name for ds in datasets)
        target = None if _GENERATED.fullmatch(layer_name) else layer_name
        layers.append((SourceLayer(layer_name, _kind(shapes), shapes, dtypes, target), datasets))
    return layers


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """Open a legacy Keras HDF5 weights file (top or notop) for conversion.

    Raises:
        ConversionError: The file is not readable HDF5, lacks the Keras attributes, or is
            damaged where a layer is read.
    """
    try:
        with h5py.File(path, "r") as h5:
            yield Source(_FORMAT, read_layers(h5), _convert_layer, _stored)
    except ConversionError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise ConversionError(
            f"cannot read Keras HDF5 weights {str(path)!r}: {error}. The file may be truncated "
            "or not an HDF5 file."
        ) from error


def _convert_layer(
    src: SourceLayer, datasets: list[h5py.Dataset], slot: WeightSlot, context: LayerContext
) -> list[np.ndarray]:
    if src.shapes != slot.shapes:  # the loop reports it: stand-ins of the source's shapes, unread
        return [np.broadcast_to(np.float32(0), shape) for shape in src.shapes]
    return [_read(ds) for ds in datasets]


def _stored(datasets: list[h5py.Dataset]) -> list[np.ndarray]:
    return [ds[()] for ds in datasets]


def _read(dataset: h5py.Dataset) -> np.ndarray:
    # read_direct fills the output in place: no second copy of a 411 MB fc1 kernel
    out = np.empty(dataset.shape, dtype=np.float32)
    if dataset.size and dataset.dtype == np.float32:
        dataset.read_direct(out)
    elif dataset.size:
        out[...] = dataset[()]
    return out
