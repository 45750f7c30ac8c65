"""A Keras callback shared by the transfer benchmarks: images per second, compile excluded."""

from __future__ import annotations

import time

import keras


class Throughput(keras.callbacks.Callback):
    """Images per second over every epoch but the first (which compiles)."""

    def __init__(self, images: int) -> None:
        super().__init__()
        self.images, self.times = images, []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def rate(self) -> float:
        return self.images * (len(self.times) - 1) / sum(self.times[1:])
