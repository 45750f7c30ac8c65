"""Gradient descent on an image: the shared loop of style transfer and fooling images.

The image is a ``keras.Variable`` updated by a Keras optimizer; the gradient comes from
:func:`kzoo.gradients.input_gradient`, traced and compiled once for the whole run, so a step
costs one forward and one backward pass. Pixels are clipped to the model's input range after
every step, and tqdm shows progress.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from kzoo.gradients import Objective, input_gradient

__all__ = ["ImageDescent", "Transform"]

#: ``transform(image) -> (moved image, undo)``: see :meth:`ImageDescent.step`.
Transform = Callable[[np.ndarray], tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]


class ImageDescent:
    """Minimise ``objective(image)`` over the image's pixels.

    Args:
        image: The start, ``(batch, height, width, channels)``, float.
        objective: ``objective(x) -> (scalar, aux)`` in ``keras.ops``.
        models: The Keras models the objective calls (frozen).
        learning_rate: Adam's step, in pixel units.
        value_range: Pixels are clipped into ``[low, high]`` after each step.
    """

    def __init__(
        self,
        image: np.ndarray,
        objective: Objective,
        models: Sequence[keras.Model],
        *,
        learning_rate: float,
        value_range: tuple[float, float] = (0.0, 255.0),
    ) -> None:
        self.image = keras.Variable(np.asarray(image, dtype="float32"), name="image")
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build([self.image])
        self.step_fn = input_gradient(objective, models)
        self.low, self.high = value_range

    def step(self, transform: Transform | None = None) -> tuple[float, Any]:
        """One update; returns ``(objective value, aux)`` before the update.

        Args:
            transform: ``transform(image) -> (moved image, undo)`` for this step only (a
                jitter): the gradient is taken at the moved image and ``undo`` maps it back
                onto the image's own pixels. NumPy in and out.
        """
        x = self.image.value
        if transform is None:
            value, grad, aux = self.step_fn(x)
        else:
            moved, undo = transform(keras.ops.convert_to_numpy(x))
            value, grad, aux = self.step_fn(keras.ops.convert_to_tensor(moved))
            grad = keras.ops.convert_to_tensor(undo(keras.ops.convert_to_numpy(grad)))
        self.optimizer.apply([grad], [self.image])
        self.image.assign(keras.ops.clip(self.image.value, self.low, self.high))
        return float(keras.ops.convert_to_numpy(value)), aux

    def run(
        self,
        steps: int,
        *,
        progress: bool | None = None,
        label: str = "optimising",
        after_step: Callable[[int, float, Any], bool] | None = None,
        transform: Transform | None = None,
    ) -> int:
        """Take up to ``steps`` steps; ``after_step(i, value, aux)`` returning True stops.

        Returns:
            The number of steps taken.
        """
        disable = None if progress is None else not progress  # None: only on a terminal
        with tqdm(total=steps, desc=label, disable=disable, leave=False) as bar:
            for index in range(steps):
                value, aux = self.step(transform)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                if after_step is not None and after_step(index, value, aux):
                    return index + 1
        return steps

    def result(self) -> np.ndarray:
        """The image now, as a float32 NumPy array."""
        return np.asarray(keras.ops.convert_to_numpy(self.image.value), dtype=np.float32)
