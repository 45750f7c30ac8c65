"""Weights files -> Keras arrays: one module per source format, one shared loop. No network.

Every format produces the same output: Keras ``channels_last`` float32 arrays keyed by Keras
layer name, in ``layer.weights`` order (conv/dense: ``[kernel, bias]``; batchnorm:
``[gamma, beta, moving_mean, moving_variance]``)::

    >>> from kzoo.converters import convert, slots_of
    >>> arrays = convert("caffe", path, slots_of(model))

* :mod:`.formats` - the one table of formats (suffixes, default preprocessing, BN epsilon,
  converter version);
* ``keras_h5``, ``caffe``, ``lasagne``, ``torch_state`` - one reader per format, each
  exposing ``open_source(path)``: its layers (each with the Keras name it declares, if any)
  and how to convert one;
* :mod:`.pairing` - the loop they share (pair by declared name, the rest by order; convert,
  check shapes and values);
* :mod:`.slots` - the model side (which layers hold weights); :mod:`.assign` puts arrays into
  a model by layer name, all or nothing (``from kzoo.converters.assign import assign``).

The format table is pure Python and imported at once; everything else on first use (the face
is lazy), so the zoo's manifest can check formats without NumPy. Keras is never imported here;
h5py and safetensors only by their format's module.
"""

from __future__ import annotations

from kzoo.converters.formats import (
    FORMATS,
    FORMER_NAMES,
    Format,
    canonical_format,
    format_for_suffix,
)
from kzoo.lazy import lazy_exports

_EXPORTS = {
    "Arrays": "kzoo.converters.pairing:Arrays",
    "SourceLayer": "kzoo.converters.pairing:SourceLayer",
    "WeightSlot": "kzoo.converters.slots:WeightSlot",
    "convert": "kzoo.converters.reading:convert",
    "flat_layers": "kzoo.converters.slots:flat_layers",
    "inspect": "kzoo.converters.reading:inspect",
    "slots_of": "kzoo.converters.slots:slots_of",
}

__all__ = [
    "FORMATS",
    "FORMER_NAMES",
    "Arrays",
    "Format",
    "SourceLayer",
    "WeightSlot",
    "canonical_format",
    "convert",
    "flat_layers",
    "format_for_suffix",
    "inspect",
    "slots_of",
]
__getattr__, _ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
