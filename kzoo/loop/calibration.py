"""Calibrated probabilities: temperature scaling fitted on held-out data (Guo et al. 2017).

``calibrate`` reads the model's logits on validation data (its log-probabilities when it ends
in a softmax: the same up to a constant per row), finds the temperature ``T`` that minimises
their negative log-likelihood, and returns the model with a
:class:`kzoo.layers.TemperatureScaling` layer appended, so a saved ``.keras`` file and every
``kzoo.export`` format give the calibrated probabilities. Dividing logits by one positive
number never changes their argmax: predictions stay the same, only confidences move.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kzoo.layers import TemperatureScaling
from kzoo.loop.outputs import class_indices, is_probability, log_probabilities
from kzoo.plots import plot_reliability

__all__ = ["Calibration", "calibrate", "calibration_error", "fit_temperature", "reliability"]

BINS = 15  # Guo et al.'s expected calibration error


def reliability(
    labels: Any, probabilities: Any, bins: int = BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: ``(mean confidence, accuracy, count)``.

    Bins split ``(0, 1]`` into ``bins`` equal intervals by the top class's probability.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(
            f"Expected (samples, classes) probabilities. Received: shape {probabilities.shape}"
        )
    labels = class_indices(labels, probabilities.shape[-1])
    if len(labels) != len(probabilities):
        raise ValueError(
            f"Labels and probabilities differ in length. Received: {len(labels)} labels, "
            f"{len(probabilities)} rows"
        )
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    # bin b holds confidences in (b/bins, (b+1)/bins]
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    total_conf = np.bincount(which, weights=confidence, minlength=bins)
    total_correct = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    safe = np.maximum(count, 1)
    return total_conf / safe, total_correct / safe, count


def calibration_error(y_true: Any, probabilities: Any, bins: int = BINS) -> float:
    """The expected calibration error: ``sum_b |accuracy_b - confidence_b| * n_b / n``.

    Args:
        y_true: Class indices or one-hot rows.
        probabilities: ``(samples, classes)`` predicted probabilities.
        bins: Equal-width confidence bins (15, as in Guo et al. 2017).
    """
    confidence, accuracy, count = reliability(y_true, probabilities, bins)
    return float(np.sum(np.abs(accuracy - confidence) * count) / count.sum())


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(scaled).sum(axis=-1))
    return float(np.mean(log_z - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: Any, labels: Any, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature in ``[low, high]`` that minimises the NLL of ``softmax(logits / T)``.

    The NLL is a smooth, unimodal function of ``log T`` in practice; a golden-section search
    on ``log T`` finds its minimum to 1e-6 relative precision without a gradient.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = class_indices(labels, logits.shape[-1])
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(logits, labels, math.exp(c)), _nll(logits, labels, math.exp(d))
    while b - a > 1e-6:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(logits, labels, math.exp(d))
    return math.exp((a + b) / 2)


@dataclass
class Calibration:
    """A fitted temperature and what it did on the validation data.

    Attributes:
        temperature: The fitted ``T`` (above 1: the model was over-confident).
        ece_before: Expected calibration error (15 bins) before.
        ece_after: ... after scaling.
        nll_before: Negative log-likelihood before.
        nll_after: ... after.
        reliability_before: ``(confidence, accuracy, count)`` per bin before.
        reliability_after: ... after.
    """

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    reliability_before: tuple[np.ndarray, np.ndarray, np.ndarray]
    reliability_after: tuple[np.ndarray, np.ndarray, np.ndarray]

    def plot(self, path: str | os.PathLike) -> Path:
        """The reliability diagrams before and after, side by side."""
        return plot_reliability(
            {
                f"before: ECE {self.ece_before:.3f}": self.reliability_before,
                f"after (T={self.temperature:.2f}): ECE {self.ece_after:.3f}": (
                    self.reliability_after
                ),
            },
            path,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
        }


def calibrate(model: keras.Model, x_val: Any, y_val: Any, *, batch_size: int = 64) -> keras.Model:
    """The model with a fitted :class:`~kzoo.layers.TemperatureScaling` layer appended.

    Fit on data the model was not trained on (the validation split), not on the test set.

    Args:
        model: A Keras classifier with one input and one output of logits or softmax
            probabilities (two or more classes).
        x_val: Validation inputs (an array, or a dataset of ``(inputs, labels)`` batches with
            ``y_val=None``).
        y_val: Validation labels (class indices or one-hot).
        batch_size: Samples per forward pass.

    Returns:
        A Functional model computing ``softmax(logits / T)``, sharing the original's layers
        and weights; its ``calibration`` attribute is the :class:`Calibration` (temperature,
        ECE and NLL before and after, reliability curves).
    """
    if y_val is None:
        outputs, labels = [], []
        for batch in x_val:
            outputs.append(np.asarray(model.predict(batch[0], verbose=0)))
            labels.append(class_indices(np.asarray(batch[1])))
        raw, labels_all = np.concatenate(outputs), np.concatenate(labels)
    else:
        raw = np.asarray(model.predict(x_val, batch_size=batch_size, verbose=0))
        labels_all = class_indices(y_val)
    if raw.ndim != 2 or raw.shape[-1] < 2:
        raise ValueError(
            "calibrate needs a classifier with one output of two or more classes (logits or "
            f"softmax). Received: outputs with shape {raw.shape}"
        )
    from_logits = not is_probability(raw)
    logits = log_probabilities(raw) if not from_logits else raw.astype(np.float64)
    labels_all = class_indices(labels_all, raw.shape[-1])
    temperature = fit_temperature(logits, labels_all)
    before = np.exp(log_probabilities(logits))
    after = np.exp(log_probabilities(logits / temperature))
    calibration = Calibration(
        temperature=temperature,
        ece_before=calibration_error(labels_all, before),
        ece_after=calibration_error(labels_all, after),
        nll_before=_nll(logits, labels_all, 1.0),
        nll_after=_nll(logits, labels_all, temperature),
        reliability_before=reliability(labels_all, before),
        reliability_after=reliability(labels_all, after),
    )
    scaling = TemperatureScaling(temperature, from_logits=from_logits, name="calibration")
    try:
        inputs, output = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs, output = None, None
    if inputs and output and len(output) == 1:
        calibrated = keras.Model(inputs, scaling(output[0]), name=f"{model.name}_calibrated")
    else:  # a subclassed model: call it inside a new graph
        image = keras.Input(tuple(model.input_shape[1:]))
        calibrated = keras.Model(image, scaling(model(image)), name=f"{model.name}_calibrated")
    calibrated.calibration = calibration
    return calibrated
