"""Notice when training has gone wrong, and say in plain words what usually causes it.

:class:`TrainingDiagnostics` is a Keras callback that watches for the three failures that
waste the most time, because training keeps running while nothing useful happens:

* ``"nan_loss"``: the loss (or a validation loss) became NaN or infinite.
* ``"chance_accuracy"``: after a few epochs the accuracy is still at chance level
  (``1 / num_classes``), so the network is not learning anything from the inputs.
* ``"constant_predictions"``: the network predicts (nearly) the same class for every input,
  the "constant value" local minimum; checked on a small ``sample`` of inputs.

Example::

    diagnostics = kzoo.TrainingDiagnostics(sample=(x_val[:256], y_val[:256]))
    model.fit(x, y, epochs=20, callbacks=[diagnostics])
    for finding in diagnostics.findings:
        print(finding.kind, finding.epoch, finding.message)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np

from kzoo.errors import TrainingError

__all__ = ["CAUSES", "Finding", "TrainingDiagnostics"]

logger = logging.getLogger("kzoo")

Action = Literal["stop", "raise", "warn"]

# What usually causes each failure, most common first; part of every message.
CAUSES: dict[str, tuple[str, ...]] = {
    "nan_loss": (
        "the learning rate is too high (try 10x lower)",
        "the inputs are not standardised (raw 0-255 pixels; use kzoo.layers.fit_standardization)",
        "wrong preprocessing, or labels outside the range the loss expects",
        "a log or division of zero in a custom loss or layer",
    ),
    "chance_accuracy": (
        "labels misaligned with the inputs (shuffled separately, or in a different order)",
        "wrong preprocessing (not the normalisation the weights or the data expect)",
        "the inputs are not standardised",
        "the learning rate is far too high or far too low",
    ),
    "constant_predictions": (
        "dead ReLUs: a too-high learning rate or a large negative bias left every unit at zero",
        "the inputs are not standardised, so units saturate",
        "the learning rate is too high",
        "heavy class imbalance (the network learnt to always answer the majority class)",
    ),
}

_ACTIONS = ("stop", "raise", "warn")


@dataclass(frozen=True)
class Finding:
    """One problem :class:`TrainingDiagnostics` noticed.

    Attributes:
        kind: ``"nan_loss"``, ``"chance_accuracy"`` or ``"constant_predictions"``.
        epoch: The epoch, counted from 1 as Keras' progress bar shows it.
        batch: The batch within the epoch, counted from 1, or None for end-of-epoch checks.
        message: A plain-words description that includes the likely causes.
    """

    kind: str
    epoch: int
    batch: int | None
    message: str

    def __str__(self) -> str:
        return self.message


class TrainingDiagnostics(keras.callbacks.Callback):
    """A callback that detects NaN loss, chance-level accuracy and collapsed predictions.

    Each kind of problem is reported once per ``fit``. The loss is checked after every batch
    (like ``keras.callbacks.TerminateOnNaN``, and for the same reason: a NaN caught early
    names the batch that caused it); the other checks run once per epoch.

    Args:
        on_problem: What to do on a finding: ``"stop"`` (log a warning and stop training, the
            default), ``"raise"`` (raise :class:`kzoo.errors.TrainingError`) or ``"warn"``
            (log a warning and keep training).
        patience: The number of epochs after which accuracy still at chance level, or
            predictions still on one class, count as a problem.
        sample: A few held-out inputs, ``x`` or ``(x, y)``, for the constant-predictions
            check (the first ``sample_size`` are used). Without it only the loss and the
            logged accuracy are checked. With labels, the sample also gives an accuracy for
            models compiled without an accuracy metric.
        sample_size: How many sample inputs to predict at the end of each epoch.
        num_classes: The number of classes; inferred from the width of the model's output
            (a width of 1 means binary) when None.
        chance_tolerance: Accuracy below ``chance * (1 + chance_tolerance)`` (and less than
            0.05 above chance) counts as chance level.
        collapse_fraction: Predictions count as collapsed when at least this fraction of the
            sample lands on one class.

    Attributes:
        findings: Every :class:`Finding` so far, across calls to ``fit``.
    """

    def __init__(
        self,
        on_problem: Action = "stop",
        *,
        patience: int = 3,
        sample: Any = None,
        sample_size: int = 256,
        num_classes: int | None = None,
        chance_tolerance: float = 0.25,
        collapse_fraction: float = 0.95,
    ) -> None:
        super().__init__()
        if on_problem not in _ACTIONS:
            raise ValueError(
                f"on_problem must be one of {', '.join(map(repr, _ACTIONS))}. "
                f"Received: on_problem={on_problem!r}"
            )
        if patience < 1:
            raise ValueError(f"patience must be at least 1. Received: patience={patience}")
        if not 0.0 < collapse_fraction <= 1.0:
            raise ValueError(
                "collapse_fraction must be in (0, 1]. "
                f"Received: collapse_fraction={collapse_fraction}"
            )
        self.on_problem = on_problem
        self.patience = patience
        self.sample_size = sample_size
        self.num_classes = num_classes
        self.chance_tolerance = chance_tolerance
        self.collapse_fraction = collapse_fraction
        self.sample_x, self.sample_y = _split_sample(sample, sample_size)
        self.findings: list[Finding] = []
        self._reported: set[str] = set()
        self._epoch = 0
        self._epochs_seen = 0
        self._accuracies: list[float] = []
        self._collapsed_streak = 0

    # -- Keras hooks -------------------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reported = set()
        self._epochs_seen = 0
        self._accuracies = []
        self._collapsed_streak = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss):
            self._report(
                "nan_loss",
                f"the training loss became {_describe(loss)} at epoch {self._epoch}, "
                f"batch {batch + 1}",
                batch=batch + 1,
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self._epoch = epoch + 1
        self._epochs_seen += 1
        for key in ("loss", "val_loss"):
            if key in logs and not _finite(logs[key]):
                where = "training" if key == "loss" else "validation"
                self._report(
                    "nan_loss",
                    f"the {where} loss became {_describe(logs[key])} by the end of "
                    f"epoch {self._epoch}",
                )
                return  # accuracy and predictions mean nothing once the weights are NaN
        predictions = self._predict_sample()
        # A single output column without an accuracy metric may be a regression: no classes.
        classifier = (
            self.num_classes is not None
            or _logged_accuracy(logs)[0] is not None
            or (predictions is not None and predictions.shape[-1] > 1)
        )
        if classifier:
            self._check_chance(logs, predictions)
        self._check_collapse(predictions, classifier)

    # -- checks ------------------------------------------------------------------------------

    def _check_chance(self, logs: dict, predictions: np.ndarray | None) -> None:
        accuracy, source = _logged_accuracy(logs)
        if accuracy is None and predictions is not None and self.sample_y is not None:
            labels = _labels(self.sample_y)
            accuracy = float(np.mean(_classes(predictions) == labels))
            source = "accuracy on the diagnostics sample"
        if accuracy is None or not _finite(accuracy):
            return
        self._accuracies.append(float(accuracy))
        if self._epochs_seen < self.patience:
            return
        chance = 1.0 / self._num_classes(predictions)
        threshold = chance + min(chance * self.chance_tolerance, 0.05)
        recent = self._accuracies[-self.patience :]
        if max(recent) < threshold:
            self._report(
                "chance_accuracy",
                f"after {self._epochs_seen} epochs the {source} is {recent[-1]:.3f}, about "
                f"chance level ({chance:.3f} for {round(1 / chance)} classes): the network "
                "is not learning from its inputs",
            )

    def _check_collapse(self, predictions: np.ndarray | None, classifier: bool) -> None:
        if predictions is None or len(predictions) < 2:
            return
        # Outputs identical for every input cannot be a phase of healthy training: report now.
        constant = bool(np.all(np.ptp(predictions, axis=0) <= 1e-6))
        classes = _classes(predictions) if classifier else np.zeros(len(predictions), np.int64)
        counts = np.bincount(classes)
        top = int(np.argmax(counts))
        share = counts[top] / len(classes) if classifier else float(constant)
        if share < self.collapse_fraction and not constant:
            self._collapsed_streak = 0
            return
        if classifier and self.sample_y is not None:
            true_counts = np.bincount(_labels(self.sample_y))
            if true_counts.max() / true_counts.sum() >= self.collapse_fraction:
                return  # the sample itself is one class; predicting it is not a collapse
        self._collapsed_streak += 1
        if constant or self._collapsed_streak >= self.patience:
            what = "exactly the same output" if constant else f"class {top}"
            self._report(
                "constant_predictions",
                f"at epoch {self._epoch} the network predicts {what} for "
                f"{share:.0%} of {len(classes)} sample inputs (the 'constant value' local "
                "minimum)",
            )

    # -- helpers -----------------------------------------------------------------------------

    def _predict_sample(self) -> np.ndarray | None:
        if self.sample_x is None:
            return None
        # A plain call, not predict_on_batch: no compiled predict function to build (and
        # retrace, on TensorFlow) just for a few hundred inputs once per epoch.
        outputs = self.model(self.sample_x, training=False)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        elif isinstance(outputs, dict):
            outputs = next(iter(outputs.values()))
        outputs = np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64)
        return outputs.reshape(len(outputs), -1)

    def _num_classes(self, predictions: np.ndarray | None) -> int:
        if self.num_classes is not None:
            return self.num_classes
        width = predictions.shape[-1] if predictions is not None else None
        if width is None:
            try:
                width = self.model.outputs[0].shape[-1]
            except (AttributeError, IndexError, TypeError, ValueError):
                width = None
        if not width:
            return 2  # unknown width: the most conservative chance level
        return 2 if width == 1 else int(width)

    def _report(self, kind: str, what: str, batch: int | None = None) -> None:
        if kind in self._reported:
            return
        self._reported.add(kind)
        causes = "; ".join(CAUSES[kind])
        message = f"{what}. Usual causes: {causes}."
        finding = Finding(kind=kind, epoch=self._epoch, batch=batch, message=message)
        self.findings.append(finding)
        if self.on_problem == "raise":
            raise TrainingError(message)
        if self.on_problem == "stop":
            logger.warning("%s Training stopped.", message)
            self.model.stop_training = True
        else:
            logger.warning("%s", message)


def _split_sample(sample: Any, size: int) -> tuple[Any, np.ndarray | None]:
    if sample is None:
        return None, None
    if isinstance(sample, (tuple, list)) and len(sample) == 2:
        x, y = sample
        return x[:size], np.asarray(y)[:size]
    return sample[:size], None


def _logged_accuracy(logs: dict) -> tuple[float | None, str]:
    """The validation accuracy if logged, else the training accuracy; and what it is."""
    for prefix, where in (("val_", "validation accuracy"), ("", "training accuracy")):
        for name in ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy"):
            if prefix + name in logs:
                return float(logs[prefix + name]), where
        if prefix + "binary_accuracy" in logs:
            return float(logs[prefix + "binary_accuracy"]), where
    return None, ""


def _classes(predictions: np.ndarray) -> np.ndarray:
    """Predicted class per row: argmax, or a threshold for a single sigmoid/logit column."""
    if predictions.shape[-1] == 1:
        column = predictions[:, 0]
        threshold = 0.5 if column.min() >= 0.0 and column.max() <= 1.0 else 0.0
        return (column > threshold).astype(np.int64)
    return np.argmax(predictions, axis=-1)


def _labels(y: np.ndarray) -> np.ndarray:
    """Integer labels from sparse or one-hot ``y``."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    return y.reshape(-1).astype(np.int64)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number: nothing to judge


def _describe(value: Any) -> str:
    return "NaN" if math.isnan(float(value)) else "infinite"
