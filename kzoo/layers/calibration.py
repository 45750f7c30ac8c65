"""Temperature scaling as a layer, so saved and exported models ship calibrated probabilities.

A network trained with cross-entropy is usually over-confident: among the predictions it makes
with 95 % confidence, fewer than 95 % are right. Temperature scaling (Guo et al. 2017) divides
the logits by one scalar ``T`` fitted on held-out data; the argmax, hence every prediction, is
unchanged. :func:`kzoo.calibrate` fits ``T``; this layer carries it inside the model.

Its public home is :mod:`kzoo.layers`.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["TemperatureScaling"]

_PACKAGE = "kzoo"

# float32's smallest normal number: log(0) would be -inf, and -inf / T stays -inf anyway
_TINY = 1.1754944e-38


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TemperatureScaling(keras.layers.Layer):
    """``softmax(logits / temperature)``: calibrated class probabilities.

    Args:
        temperature: The fitted temperature, > 0; above 1 softens over-confident outputs.
        from_logits: Whether the input is logits; when False the input is a softmax output
            and its logarithm is used (the logits up to a constant per row, which the softmax
            ignores).
    """

    __module__ = "kzoo.layers"

    def __init__(self, temperature: float = 1.0, from_logits: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(
                f"temperature must be a positive number. Received: temperature={temperature!r}"
            )
        self.temperature = float(temperature)
        self.from_logits = bool(from_logits)

    def call(self, inputs: Any) -> Any:
        x = keras.ops.convert_to_tensor(inputs)
        x = keras.ops.cast(x, "float32")  # probabilities in float32 even under mixed precision
        if not self.from_logits:
            x = keras.ops.log(keras.ops.maximum(x, _TINY))
        return keras.ops.softmax(x / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def compute_output_spec(self, inputs: Any) -> Any:
        return keras.KerasTensor(inputs.shape, dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "from_logits": self.from_logits,
        }
