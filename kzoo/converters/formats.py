"""The weight formats kzoo reads: one row per format, the only table of them.

Adding a format is a converter module (``converters/<module>.py``, exposing ``open_source``)
plus one row here; the zoo's manifest, ``kzoo.load(weights=path)`` and the converted-cache
names all read this table. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FORMATS", "FORMER_NAMES", "Format", "canonical_format", "format_for_suffix"]


@dataclass(frozen=True)
class Format:
    """One source format of pretrained weights.

    Attributes:
        name: The manifest's ``format`` value (``"caffe"``).
        module: The converter module in this package that reads it.
        suffixes: File suffixes that mean this format for ``kzoo.load(weights=path)``.
        preprocessing: The ImagePreprocessing mode its weights usually expect, used when a
            local file's model has no source of this format in the manifest.
        bn_epsilon: The BatchNormalization epsilon of the framework that trained the weights,
            where it is not Keras's 1e-3; the statistics are only right with the same epsilon.
        version: The converter's version; part of every converted file's name, so bump it on
            any fix and no stale conversion is reused.
        embedded_classes: Whether the file carries its class names (manifest ``"classes":
            "embedded"``).
    """

    name: str
    module: str
    suffixes: tuple[str, ...]
    preprocessing: str
    bn_epsilon: float | None = None
    version: int = 1
    embedded_classes: bool = False


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("keras_h5", "keras_h5", (".h5", ".hdf5"), "caffe"),
        Format("caffe", "caffe", (".caffemodel",), "caffe", bn_epsilon=1e-5),
        Format("lasagne", "lasagne", (".pkl", ".pickle"), "caffe", embedded_classes=True),
        Format("torch", "torch_state", (".safetensors", ".pth", ".pt"), "torch", bn_epsilon=1e-5),
    )
}
# Names a format had before: manifests written with them keep working
FORMER_NAMES = {"safetensors_vgg": "torch"}  # before it read ResNets and .pth files


def canonical_format(name: str) -> str:
    """A format's current name: ``name`` itself, or the one a former name stands for."""
    return FORMER_NAMES.get(name, name)


def format_for_suffix(suffix: str) -> Format | None:
    """The format a file suffix (``".caffemodel"``, any case) stands for, or None."""
    suffix = suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.suffixes), None)
