"""Momentum cycled against the one-cycle rate: high while the rate is low, low at its peak."""

from __future__ import annotations

import logging
from typing import Any

import keras

from kzoo.layers import OneCycle

__all__ = ["MOMENTUM_ATTRIBUTES", "MomentumCycle"]

logger = logging.getLogger("kzoo")

# the optimizer attribute that plays momentum's part, in the order looked for
MOMENTUM_ATTRIBUTES = ("beta_1", "momentum")


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_EXPECTED_RETRACING = _RetracingFilter()


class MomentumCycle(keras.callbacks.Callback):
    """Sets the optimizer's ``beta_1`` (Adam family) or ``momentum`` (SGD, RMSprop) per step.

    The value follows :meth:`kzoo.layers.OneCycle.momentum`. Keras reads these attributes as
    constants when it traces the training step, so the step is traced again whenever the
    value has moved by at least ``resolution``: a handful of retraces per cycle (each costs
    about a first step's compile time) instead of one per batch. An optimizer with neither
    attribute (or with ``momentum=0``: plain SGD) is left alone, with a log message.
    Optimizers of a ``MultiOptimizer`` are each set.

    Args:
        schedule: The run's :class:`~kzoo.layers.OneCycle` (its step count and momenta).
        resolution: The smallest change of momentum that is applied.
    """

    def __init__(self, schedule: OneCycle, resolution: float = 0.01) -> None:
        super().__init__()
        if not isinstance(schedule, OneCycle):
            raise ValueError(
                f"MomentumCycle follows a kzoo OneCycle schedule. Received: {schedule!r}"
            )
        self.schedule = schedule
        self.resolution = resolution
        self._targets: list[tuple[Any, str]] = []
        self._applied: float | None = None

    def on_train_begin(self, logs: Any = None) -> None:
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        groups = list(getattr(optimizer, "optimizers", [optimizer]))
        self._targets = []
        for group in groups:
            name = next((a for a in MOMENTUM_ATTRIBUTES if getattr(group, a, 0)), None)
            if name is None:
                logger.info("%s has no momentum to cycle", type(group).__name__)
            else:
                self._targets.append((group, name))
        self._applied = None
        # the retraces below are this callback's own doing: TensorFlow's warning about them
        # would send the user looking for a bug
        logging.getLogger("tensorflow").addFilter(_EXPECTED_RETRACING)

    def on_train_end(self, logs: Any = None) -> None:
        logging.getLogger("tensorflow").removeFilter(_EXPECTED_RETRACING)

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if not self._targets:
            return
        group = self._targets[0][0]
        step = int(keras.ops.convert_to_numpy(group.iterations))
        value = self.schedule.momentum(step)
        if self._applied is not None and abs(value - self._applied) < self.resolution:
            return
        for target, name in self._targets:
            setattr(target, name, value)
        self.model.make_train_function(force=True)  # the traced step holds the old value
        self._applied = value

    @property
    def current(self) -> float | None:
        """The momentum last applied."""
        return self._applied
