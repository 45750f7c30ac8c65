"""Fooling images: inputs a classifier is sure about that no person would recognise.

Gradient ascent on the input, from noise (or from a given image), on the log-probability of
a target class until the model gives it at least ``threshold`` (Simonyan, Vedaldi & Zisserman
2013, "class models"; Nguyen, Yosinski & Clune 2015). Optional regularisers make the images
look more like something: an L2 penalty on the pixels, a blur every few steps and random
jitter (shifts) before each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from kzoo.input_optimization.descent import ImageDescent
from kzoo.zoo import load

__all__ = ["FoolingResult", "fool"]


@dataclass(frozen=True)
class FoolingResult:
    """Images made to fool a classifier.

    Attributes:
        images: ``(n, height, width, channels)`` float32, in the model's input range.
        targets: The class each image was made for.
        probabilities: The model's probability of its target class, per image.
        steps: The number of steps taken.
        reached: Whether every image reached the threshold.
    """

    images: np.ndarray
    targets: tuple[int, ...]
    probabilities: np.ndarray
    steps: int
    reached: bool


def fool(
    model: str | keras.Model,
    target: int | Sequence[int],
    *,
    start: np.ndarray | None = None,
    threshold: float = 0.99,
    steps: int = 500,
    learning_rate: float | None = None,
    l2: float = 0.0,
    blur_every: int = 0,
    jitter: int = 0,
    value_range: tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    progress: bool | None = None,
) -> FoolingResult:
    """Make one image per target class that ``model`` classifies with ``threshold`` confidence.

    Args:
        model: A Keras classifier ending in a softmax (or a zoo name, loaded with its top).
        target: A class index, or several (one image each).
        start: Images to start from, ``(n, H, W, C)`` or one ``(H, W, C)`` for all (default:
            uniform noise over ``value_range``).
        threshold: Stop once every target's probability is at least this.
        steps: At most this many steps.
        learning_rate: Adam's step in input units (default: 1 % of the value range).
        l2: Weight of the mean squared pixel distance from the range's middle, per image.
        blur_every: Blur the images (a 3x3 binomial filter) every this many steps; 0: never.
        jitter: Shift the images by up to this many pixels, randomly, before each step.
        value_range: The model's input range; pixels are clipped into it.
        seed: Seed of the noise and the jitter.
        progress: Show a progress bar (default: on a terminal).

    Returns:
        A :class:`FoolingResult`.

    Raises:
        ValueError: A target outside the model's classes, a bad threshold or start.
    """
    if isinstance(model, str):
        model = load(model)
    if isinstance(target, str | bytes):  # "37" would iterate as the classes 3 and 7
        raise ValueError(f"target must be a class index or a list of them. Received: {target!r}")
    targets = (int(target),) if isinstance(target, int | np.integer) else tuple(map(int, target))
    classes = int(model.outputs[0].shape[-1])
    bad = [t for t in targets if not 0 <= t < classes]
    if bad or not targets:
        raise ValueError(f"targets must be classes in [0, {classes}). Received: target={target!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1). Received: threshold={threshold}")
    low, high = value_range
    images = _start(model, start, len(targets), value_range, seed)
    one_hot = keras.ops.convert_to_tensor(np.eye(classes, dtype="float32")[list(targets)])

    def objective(x: Any) -> tuple[Any, Any]:
        probabilities = keras.ops.sum(model(x, training=False) * one_hot, axis=-1)
        gain = keras.ops.log(probabilities + 1e-12)
        middle = (low + high) / 2
        penalty = keras.ops.mean(keras.ops.square((x - middle) / (high - low)), axis=(1, 2, 3))
        return keras.ops.sum(l2 * penalty - gain), probabilities

    descent = ImageDescent(
        images, objective, [model], learning_rate=learning_rate or 0.01 * (high - low),
        value_range=value_range,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    shift = _jitter(rng, jitter) if jitter else None
    picks = np.asarray(keras.ops.convert_to_numpy(one_hot))

    def score(images: np.ndarray) -> np.ndarray:
        found = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)))
        return np.sum(found.astype(np.float32) * picks, axis=-1)

    def after(index: int, value: float, probabilities: Any) -> bool:
        if blur_every and (index + 1) % blur_every == 0:
            descent.image.assign(_blur(descent.result()))
        # the step's probabilities are those of the image it started from, shifted by the
        # jitter, before the update and the blur: a hint, checked on the image itself
        if not np.all(keras.ops.convert_to_numpy(probabilities) >= threshold):
            return False
        return bool(np.all(score(descent.result()) >= threshold))

    taken = descent.run(steps, progress=progress, label="fooling", after_step=after,
                        transform=shift)  # fmt: skip
    final = descent.result()
    probabilities = score(final)
    return FoolingResult(
        final, targets, probabilities, taken, bool(np.all(probabilities >= threshold))
    )


def _start(
    model: keras.Model, start: Any, count: int, value_range: tuple[float, float], seed: int
) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    if start is None:
        if None in shape:
            raise ValueError(
                f"the model takes inputs of any size {shape}: give start images to fix it"
            )
        rng = np.random.default_rng(seed)
        return rng.uniform(*value_range, size=(count, *shape)).astype(np.float32)
    images = np.asarray(start, dtype=np.float32)
    if images.ndim == len(shape):
        images = np.repeat(images[None], count, axis=0)
    if images.shape[0] != count or (None not in shape and images.shape[1:] != shape):
        raise ValueError(
            f"start must be one image of shape {shape} or {count} of them. Received: shape "
            f"{images.shape}"
        )
    return images


def _jitter(rng: np.random.Generator, pixels: int):
    def shift(images: np.ndarray):
        dy, dx = (int(d) for d in rng.integers(-pixels, pixels + 1, size=2))
        moved = np.roll(images, (dy, dx), axis=(1, 2))
        return moved, lambda grad: np.roll(grad, (-dy, -dx), axis=(1, 2))

    return shift


def _blur(images: np.ndarray) -> np.ndarray:
    # a 3x3 binomial filter, [1 2 1] / 4 along each axis, edges repeated: small and enough
    # to damp the high frequencies gradient ascent grows
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    return (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 4
