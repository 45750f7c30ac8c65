"""Feature taps: a model that returns what layers inside a network see.

``kzoo.features("vgg19", ["block4_conv2", "block5_conv2"])`` loads VGG-19 without its top and
returns a Functional model from its input (RGB 0-255; the weights' preprocessing stays in the
graph) to a dict of those layers' outputs. A Keras model works the same way, nested models
included: ``"vgg19/block4_conv2"``, or the bare name when it is unique. This is the part
of :mod:`kzoo.taps` that knows the zoo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kzoo.errors import KzooError
from kzoo.taps import block_outputs, tap
from kzoo.zoo.loader import load
from kzoo.zoo.manifest import ManifestLike
from kzoo.zoo.names import DEFAULT

if TYPE_CHECKING:
    import keras

__all__ = ["features"]

Layers = str | Sequence[str] | Mapping[str, str] | None


def features(
    model: str | keras.Model,
    layers: Layers = None,
    *,
    weights: str | os.PathLike[str] | None = DEFAULT,
    input_shape: Sequence[int | None] | None = None,
    manifest: ManifestLike | None = None,
    name: str | None = None,
) -> keras.Model:
    """A Functional model from ``model``'s input to a dict of named layer outputs.

    Args:
        model: A zoo name (``"vgg19"``, ``"vgg19.tv_in1k"``: loaded with its weights, its
            preprocessing layer and no top, so any input size works) or a Keras model.
        layers: Layer names or paths (``"vgg19/block4_conv2"``, or a bare name when it
            is unique in the nesting), a mapping of output key -> name, ``"blocks"`` (the last
            layer of each conv block, the one before each pooling layer), or None for
            ``"blocks"``.
        weights: The weights tag when ``model`` is a name (None: random weights).
        input_shape: ``(height, width, channels)`` when ``model`` is a name; default any size.
        manifest: A user manifest, when ``model`` is a name.
        name: The new model's name (default ``"<model>_features"``).

    Returns:
        A ``keras.Model`` whose output is a dict keyed by layer path (or by your keys); it
        shares the weights of ``model`` and saves and reloads as ``.keras``.

    Raises:
        UnknownNameError: An unknown model, or a layer that is not in it (with suggestions).
        KzooError: ``"blocks"`` on a model without pooling layers.
    """
    if isinstance(model, str):
        model = load(
            model,
            weights=weights,
            include_top=False,
            input_shape=None if input_shape is None else tuple(input_shape),
            manifest=manifest,
        )
    if layers is None or layers == "blocks":
        layers = block_outputs(model)
        if not layers:
            raise KzooError(
                f"layers='blocks' needs pooling layers to mark the blocks, and {model.name!r} "
                "has none; name the layers instead"
            )
    elif isinstance(layers, str):
        layers = [layers]
    return tap(model, layers, name=name or f"{model.name}_features")
