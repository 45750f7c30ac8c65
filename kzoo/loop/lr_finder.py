"""The learning-rate finder: sweep the rate upward over a few batches, watch the loss.

Leslie Smith's range test, as fastai's ``lr_find`` made it popular: train one batch at a time
with the rate growing exponentially from ``start_lr`` to ``end_lr``, stop once the loss
diverges, and put every weight and the optimizer's state back as they were. The curve is the
result; the suggested rate is a hint read off it by a named rule (fastai changed its default
rule between versions, which silently changed the book's numbers, so the rule used is always
reported with the number).

The stop watches a running (causal) average of the loss; the curve the rules read is smoothed
without lag (the mean of a forward and a backward moving average), because a one-sided
average shifts the curve to the right, by about ``1 / (1 - smoothing)`` steps, i.e. towards
rates that are too high.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kzoo.errors import TrainingError
from kzoo.plots import plot_lr_finder

__all__ = ["RULES", "LRFinderResult", "lr_find"]

# rule name -> what the suggestion is; the names are what results and reports show
RULES = {
    "minimum/10": "a tenth of the rate at which the smoothed loss is lowest",
    "steepest": "steepest descent of the smoothed loss (most negative slope against log rate)",
}
_DEFAULT_RULE = "minimum/10"

logger = logging.getLogger("kzoo")


@dataclass
class LRFinderResult:
    """The loss against the learning rate, and the rate suggested from it.

    Attributes:
        learning_rates: The rate of each step (the largest group's, for per-group optimizers).
        losses: Each step's training-batch loss.
        smoothed_losses: ``losses`` smoothed without lag (the curve the rules read).
        suggestion: The suggested rate: a hint, read off the curve by ``rule``.
        rule: The rule's name (a key of :data:`RULES`).
        suggestions: Every rule's suggestion, by name.
        diverged: Whether the sweep stopped because the loss diverged.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggestion: float
    rule: str
    suggestions: dict[str, float] = field(default_factory=dict)
    diverged: bool = False

    @property
    def rule_description(self) -> str:
        return RULES[self.rule]

    def plot(self, path: str | os.PathLike) -> Path:
        """Draw the smoothed loss against the rate (log scale) with the suggestion marked."""
        return plot_lr_finder(
            self.learning_rates,
            self.smoothed_losses,
            suggestion=self.suggestion,
            label=f"suggestion (hint, {self.rule}): {self.suggestion:.2g}",
            path=path,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "learning_rates": self.learning_rates,
            "losses": self.losses,
            "smoothed_losses": self.smoothed_losses,
            "suggestion": self.suggestion,
            "rule": self.rule,
            "rule_description": self.rule_description,
            "suggestions": self.suggestions,
            "diverged": self.diverged,
        }


def lr_find(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    smoothing: float = 0.9,
    divergence: float = 4.0,
    rule: str = _DEFAULT_RULE,
    seed: int = 0,
) -> LRFinderResult:
    """Sweep the learning rate exponentially over ``steps`` batches; restore the model after.

    Works on any compiled Keras model and optimizer, including a
    ``keras.optimizers.MultiOptimizer`` with per-group rates (each group keeps its ratio to
    the largest rate, which is the one swept and suggested) and an optimizer whose rate is a
    schedule (replaced during the sweep, then put back). Every model variable (weights,
    BatchNorm statistics), every optimizer variable (moments, step count, rate) and every
    metric is restored bit for bit afterwards; an optimizer that had not been built yet is
    built first, so its state after is that of a fresh one.

    Args:
        model: A compiled Keras model.
        x: Training inputs (an array, with ``y``), or a ``tf.data.Dataset`` (or any iterable)
            of ``(inputs, labels)`` batches, cycled through as often as ``steps`` needs.
        y: Targets when ``x`` is an array.
        start_lr: The first rate.
        end_lr: The last rate, if the loss has not diverged before.
        steps: Batches in the sweep.
        batch_size: The batch size when ``x`` is an array (use the one you will train with).
        smoothing: The moving averages' factor (fastai uses 0.98 one-sided; 0.9 both ways
            smooths as much with less distortion on a 100-step sweep).
        divergence: Stop when the smoothed loss exceeds this multiple of its minimum.
        rule: How the suggestion is read off the curve: ``"minimum/10"`` (default) or
            ``"steepest"``; both are always computed, in ``suggestions``.
        seed: Seed of the shuffling of array inputs.

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        TrainingError: The model is not compiled, or the loss was not finite from the start.
        ValueError: Bad sweep settings.
    """
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise TrainingError(
            "lr_find needs a compiled model (model.compile(optimizer, loss)) to train on. "
            f"Received: model {model.name!r}, not compiled"
        )
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}. Received: rule={rule!r}")
    if not 0 < start_lr < end_lr:
        raise ValueError(
            f"Expected 0 < start_lr < end_lr. Received: start_lr={start_lr}, end_lr={end_lr}"
        )
    if steps < 5:
        raise ValueError(f"steps must be at least 5. Received: steps={steps}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1). Received: smoothing={smoothing}")
    batches = _cycle(x, y, batch_size, seed)
    first = next(batches)
    if not model.built:
        model(first[0])
    groups = _groups(model.optimizer)
    model.optimizer.build(model.trainable_variables)  # a no-op when built already
    saved = _snapshot(model)
    rates = [_current_rate(g) for g in groups]
    top = max(rates)
    ratios = [r / top if top > 0 else 1.0 for r in rates]
    schedules = [g._learning_rate for g in groups]  # put back below
    sweep = start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))
    scheduled = [not isinstance(s, keras.Variable) for s in schedules]
    for group, ratio, replace in zip(groups, ratios, scheduled, strict=True):
        if replace:  # a schedule cannot be assigned to: sweep with a schedule of the step
            start_step = int(keras.ops.convert_to_numpy(group.iterations))
            group.learning_rate = _Sweep(start_lr * ratio, end_lr * ratio, steps, start_step)
    if any(scheduled):
        model.make_train_function(force=True)  # the traced step holds the old schedule
    learning_rates, losses = [], []
    average, best, diverged = 0.0, math.inf, False
    try:
        batch = first
        for step, lr in enumerate(sweep):
            for group, ratio, replace in zip(groups, ratios, scheduled, strict=True):
                if not replace:
                    group.learning_rate = float(lr * ratio)  # assigns the rate's variable
            logs = model.train_on_batch(*batch, return_dict=True)
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                if step == 0:
                    raise TrainingError(
                        f"The loss was {loss} at the first step of the sweep (rate {lr:.3g}); "
                        "check the data and the loss before looking for a learning rate"
                    )
                diverged = True
                break
            average = smoothing * average + (1 - smoothing) * loss
            value = average / (1 - smoothing ** (step + 1))
            learning_rates.append(float(lr))
            losses.append(loss)
            best = min(best, value)
            if step > 0 and value > divergence * best:
                diverged = True
                break
            batch = next(batches)
    finally:
        for group, schedule, replace in zip(groups, schedules, scheduled, strict=True):
            if replace:
                group.learning_rate = schedule
        if any(scheduled):
            model.make_train_function(force=True)
        _restore(model, saved)
    smoothed = _symmetric_average(np.asarray(losses), smoothing)
    suggestions = _suggestions(np.asarray(learning_rates), smoothed)
    return LRFinderResult(
        learning_rates, losses, smoothed.tolist(), suggestions[rule], rule, suggestions, diverged
    )


def _moving_average(values: np.ndarray, factor: float) -> np.ndarray:
    """The debiased exponential moving average of ``values``, one-sided."""
    out, average = np.empty(len(values)), 0.0
    for i, value in enumerate(values):
        average = factor * average + (1 - factor) * value
        out[i] = average / (1 - factor ** (i + 1))
    return out


def _symmetric_average(values: np.ndarray, factor: float) -> np.ndarray:
    """The mean of a forward and a backward moving average: smooth, and no lag."""
    if len(values) == 0:
        return values.astype(np.float64)
    forward = _moving_average(values, factor)
    backward = _moving_average(values[::-1], factor)[::-1]
    return (forward + backward) / 2


def _suggestions(rates: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
    if len(rates) < 3:
        raise TrainingError(
            f"The loss diverged after {len(rates)} steps of the sweep, too early to read a "
            f"rate off the curve; lower start_lr. Received: rates up to {rates.max():.3g}"
        )
    lowest = int(np.argmin(smoothed))
    if lowest < 3:
        logger.warning(
            "the loss did not fall during the learning-rate sweep (lowest at %.3g, its start): "
            "the suggestion means nothing; sweep more steps or from a higher start_lr",
            rates[lowest],
        )
    # the slope only before the minimum: past it the loss is already blowing up
    stop = max(lowest, 2) + 1
    slopes = np.gradient(smoothed[:stop], np.log10(rates[:stop]))
    return {
        "minimum/10": float(rates[lowest] / 10),
        "steepest": float(rates[int(np.argmin(slopes))]),
    }


def _cycle(x: Any, y: Any, batch_size: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Training batches without end: shuffled array slices, or the dataset repeated."""
    if y is not None:
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(
                f"x and y differ in length. Received: {len(x)} inputs, {len(y)} targets"
            )
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(x))
            for start in range(0, len(x) - batch_size + 1 if len(x) >= batch_size else 1,
                               batch_size):  # fmt: skip
                chosen = order[start : start + batch_size]
                yield x[chosen], y[chosen]
    if isinstance(x, np.ndarray):
        raise ValueError("lr_find on arrays needs targets: lr_find(model, x, y)")
    while True:
        empty = True
        for batch in x:
            empty = False
            yield tuple(batch) if isinstance(batch, tuple | list) else (batch,)
        if empty:
            raise ValueError("lr_find received an empty dataset")


def _groups(optimizer: keras.optimizers.Optimizer) -> list[keras.optimizers.Optimizer]:
    """The optimizers that hold a learning rate: the inner one(s) of wrappers."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        return list(optimizer.optimizers)
    return [optimizer]


def _current_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class _Sweep(keras.optimizers.schedules.LearningRateSchedule):
    """``start`` to ``end`` exponentially over ``steps`` optimizer steps from ``start_step``."""

    def __init__(self, start: float, end: float, steps: int, start_step: int) -> None:
        self.start, self.end, self.steps, self.start_step = start, end, steps, start_step

    def __call__(self, step: Any) -> Any:
        done = keras.ops.cast(step, "float32") - float(self.start_step)
        fraction = done / float(self.steps - 1)
        return self.start * keras.ops.power(self.end / self.start, fraction)

    def get_config(self) -> dict[str, Any]:
        return {
            "start": self.start, "end": self.end, "steps": self.steps,
            "start_step": self.start_step,
        }  # fmt: skip


def _state(model: keras.Model) -> list[keras.Variable]:
    seen, variables = set(), []
    for v in [*model.variables, *model.optimizer.variables, *model.metrics_variables]:
        if id(v) not in seen:
            seen.add(id(v))
            variables.append(v)
    return variables


def _snapshot(model: keras.Model) -> list[tuple[keras.Variable, np.ndarray]]:
    return [(v, np.array(keras.ops.convert_to_numpy(v.value), copy=True)) for v in _state(model)]


def _restore(model: keras.Model, saved: list[tuple[keras.Variable, np.ndarray]]) -> None:
    for variable, value in saved:
        variable.assign(value)
