"""The model side of a conversion: which layers of a Keras model hold weights, in order.

:func:`slots_of` walks a built model (nested models included) and lists one
:class:`WeightSlot` per Conv2D, Dense and BatchNormalization layer. It reads the model it is
given through its attributes, so this module imports neither Keras nor any file format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kzoo.errors import ConversionError

__all__ = ["WeightSlot", "flat_layers", "slots_of"]

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


def flat_layers(model: Any) -> list[Any]:
    """The layers of ``model`` in order, each nested model replaced by its own layers."""
    layers = []
    for layer in model.layers:
        if hasattr(layer, "layers") and not _KIND_OF_CLASS.get(type(layer).__name__):
            layers.extend(flat_layers(layer))  # a nested model (transfer learning)
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
    for layer in flat_layers(model):
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
