"""'Balanced' class weights: each class weighs as much as the others in the loss."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kzoo.loop.outputs import class_indices

__all__ = ["balanced_class_weight"]

logger = logging.getLogger("kzoo")


def balanced_class_weight(labels: Any, classes: int | None = None) -> dict[int, float]:
    """``n_samples / (n_classes * count)`` per class, as Keras's ``class_weight`` takes it.

    The rule of scikit-learn's ``compute_class_weight("balanced")``: a class with half the
    average count weighs twice as much, so rare classes are not ignored.

    Args:
        labels: Class indices or one-hot rows, as an array, or a ``tf.data.Dataset`` (or any
            iterable) of ``(inputs, labels)`` or ``(inputs, labels, weights)`` batches, read
            once.
        classes: The number of classes; default: the one-hot width, else the largest index + 1.

    Returns:
        Class index -> weight. A class with no sample gets 0 (it has nothing to weigh) and a
        warning.
    """
    if isinstance(labels, np.ndarray | list | tuple) or hasattr(labels, "__array__"):
        arrays = [np.asarray(labels)]
    else:
        arrays = []
        for batch in labels:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                raise ValueError(
                    "A dataset given to balanced_class_weight must yield (inputs, labels) "
                    f"batches. Received: a batch of type {type(batch).__name__}"
                )
            arrays.append(np.asarray(batch[1]))
        if not arrays:
            raise ValueError("balanced_class_weight received an empty dataset")
    one_hot_width = arrays[0].shape[-1] if arrays[0].ndim == 2 and arrays[0].shape[-1] > 1 else 0
    indices = np.concatenate([class_indices(a) for a in arrays])
    if indices.size == 0:
        raise ValueError("balanced_class_weight received no labels")
    if indices.min() < 0:
        raise ValueError(f"Class indices must be >= 0. Received: {indices.min()}")
    n_classes = classes or one_hot_width or int(indices.max()) + 1
    counts = np.bincount(indices, minlength=n_classes)
    if len(counts) > n_classes:
        raise ValueError(
            f"Labels go up to class {len(counts) - 1}, but classes={classes}. "
            f"Received: classes={classes}"
        )
    missing = [c for c in range(n_classes) if counts[c] == 0]
    if missing:
        logger.warning("classes %s have no sample; their weight is 0", missing)
    total = counts.sum()
    return {
        c: (float(total / (n_classes * counts[c])) if counts[c] else 0.0) for c in range(n_classes)
    }
