"""Model outputs as class probabilities, and labels as class indices, whatever their form.

Classifiers end in a softmax (probabilities), in nothing (logits) or in one sigmoid unit
(binary); labels come as class indices or one-hot rows. Interpretation, test-time augmentation
and calibration all need the same two answers, so they are read here once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["class_indices", "is_probability", "log_probabilities", "to_probabilities"]


def is_probability(outputs: np.ndarray) -> bool:
    """Whether ``(n, classes)`` outputs are already probabilities (rows >= 0 summing to 1)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.shape[-1] == 1:
        return bool(np.all((outputs >= 0) & (outputs <= 1)))
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def log_probabilities(outputs: np.ndarray) -> np.ndarray:
    """``(n, classes)`` log-probabilities (float64) from probabilities or logits.

    One sigmoid unit becomes two columns, ``[1 - p, p]``. Logits go through a log-softmax.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2:
        raise ValueError(
            "Expected classifier outputs shaped (samples, classes). "
            f"Received: outputs with shape {outputs.shape}"
        )
    if outputs.shape[-1] == 1:
        p = np.clip(outputs[:, 0], 1e-300, 1 - 1e-16)
        return np.log(np.stack([1 - p, p], axis=-1))
    if is_probability(outputs):
        return np.log(np.maximum(outputs, 1e-300))
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def to_probabilities(outputs: np.ndarray) -> np.ndarray:
    """``(n, classes)`` probabilities from probabilities, logits or one sigmoid unit."""
    return np.exp(log_probabilities(outputs))


def class_indices(labels: Any, classes: int | None = None) -> np.ndarray:
    """Integer class indices from indices or one-hot (or soft) rows.

    Args:
        labels: ``(n,)`` or ``(n, 1)`` indices, or ``(n, classes)`` one-hot rows.
        classes: The number of classes, to check indices against.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] > 1:
        indices = labels.argmax(axis=-1)
    else:
        flat = labels.reshape(-1)
        if flat.size and not np.all(np.equal(np.mod(flat, 1), 0)):
            raise ValueError(
                "Labels must be class indices or one-hot rows. "
                f"Received: labels of dtype {labels.dtype} with non-integer values"
            )
        indices = flat.astype(np.int64)
    if classes is not None and indices.size and not 0 <= indices.min() <= indices.max() < classes:
        raise ValueError(
            f"Labels must be class indices in [0, {classes}). "
            f"Received: labels from {indices.min()} to {indices.max()}"
        )
    return indices
