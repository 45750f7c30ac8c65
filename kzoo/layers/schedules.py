"""The one-cycle learning-rate schedule (Smith 2018), serializable with the optimizer.

The rate warms up from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
the steps, then anneals to ``max_lr / div_factor / final_div_factor``; both halves follow a
half cosine. Momentum (``beta_1`` for Adam) goes the other way, high while the rate is low:
:meth:`OneCycle.momentum` gives its value and :class:`kzoo.loop.MomentumCycle` applies it.

Its public home is :mod:`kzoo.layers` (registered with ``keras.saving``, so a saved model's
optimizer reloads with its schedule).
"""

from __future__ import annotations

import math
from typing import Any

import keras

__all__ = ["OneCycle"]

_PACKAGE = "kzoo"


def _cosine(start: float, end: float, fraction: Any) -> Any:
    """From ``start`` at fraction 0 to ``end`` at fraction 1 along a half cosine."""
    return end + (start - end) / 2 * (1 + keras.ops.cos(math.pi * fraction))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up then cosine annealing of the learning rate, over ``total_steps`` optimizer steps.

    Args:
        max_lr: The peak rate (what an LR finder suggests).
        total_steps: Optimizer steps in the whole run (epochs x batches per epoch); after
            them the rate stays at its final value.
        pct_start: The fraction of the steps spent warming up.
        div_factor: The first rate is ``max_lr / div_factor``.
        final_div_factor: The last rate is the first divided by this.
        max_momentum: The momentum at the start and the end (the rate is low there).
        base_momentum: The momentum at the peak rate.

    Example:
        >>> schedule = OneCycle(1e-3, total_steps=epochs * steps_per_epoch)
        >>> model.compile(keras.optimizers.Adam(schedule), ...)
        >>> model.fit(..., callbacks=[kzoo.loop.MomentumCycle(schedule)])
    """

    __module__ = "kzoo.layers"

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        max_momentum: float = 0.95,
        base_momentum: float = 0.85,
    ) -> None:
        if not max_lr > 0:
            raise ValueError(f"max_lr must be positive. Received: max_lr={max_lr!r}")
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be at least 1. Received: total_steps={total_steps}")
        if not 0 < pct_start < 1:
            raise ValueError(
                f"pct_start must be between 0 and 1 (exclusive). Received: pct_start={pct_start}"
            )
        if not (div_factor >= 1 and final_div_factor >= 1):
            raise ValueError(
                "div_factor and final_div_factor must be at least 1. Received: "
                f"div_factor={div_factor}, final_div_factor={final_div_factor}"
            )
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.max_momentum = float(max_momentum)
        self.base_momentum = float(base_momentum)

    @property
    def initial_lr(self) -> float:
        return self.max_lr / self.div_factor

    @property
    def final_lr(self) -> float:
        return self.initial_lr / self.final_div_factor

    @property
    def warmup_steps(self) -> float:
        return self.pct_start * self.total_steps

    def _phases(self, step: Any, low: float, high: float, end: float) -> Any:
        """``low -> high`` during warm-up, ``high -> end`` after, at ``step`` (a tensor)."""
        ops = keras.ops
        step = ops.minimum(ops.cast(step, "float32"), float(self.total_steps))
        warm = self.warmup_steps
        rising = _cosine(low, high, step / warm)
        falling = _cosine(high, end, (step - warm) / (self.total_steps - warm))
        return ops.where(step < warm, rising, falling)

    def __call__(self, step: Any) -> Any:
        return self._phases(step, self.initial_lr, self.max_lr, self.final_lr)

    def momentum(self, step: int) -> float:
        """The momentum (or ``beta_1``) at ``step``: high, down to the base at the peak, high."""
        value = self._phases(step, self.max_momentum, self.base_momentum, self.max_momentum)
        return float(keras.ops.convert_to_numpy(value))

    def scaled(self, factor: float) -> OneCycle:
        """The same cycle at ``factor`` times the rate (a pretrained group's lower rate)."""
        return OneCycle.from_config({**self.get_config(), "max_lr": self.max_lr * factor})

    def get_config(self) -> dict[str, Any]:
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "max_momentum": self.max_momentum,
            "base_momentum": self.base_momentum,
        }
