"""What a trained classifier gets wrong: confusion matrix, most confused pairs, per-class
precision/recall/F1, and the top losses traced back to their files (fastai's
``ClassificationInterpretation``; its users asked for the file names, fastai2#185)."""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.loop.data import labelled
from kzoo.loop.outputs import class_indices, log_probabilities, to_probabilities
from kzoo.loop.tta import predict_tta
from kzoo.plots import plot_confusion_matrix, plot_image_grid, saliency_map

__all__ = ["Interpretation", "TopLoss", "interpret"]


@dataclass(frozen=True)
class TopLoss:
    """One badly predicted sample.

    Attributes:
        index: Its position in the data.
        path: Its file when the data came from a folder, else None.
        label: The true class's name (or index as text).
        predicted: The predicted class's name.
        loss: Its cross-entropy, ``-log p(label)``.
        probability: The probability the model gave the predicted class.
    """

    index: int
    path: str | None
    label: str
    predicted: str
    loss: float
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Interpretation:
    """The predictions of a classifier on labelled data, and what they say about it.

    Build it with :func:`interpret`.

    Attributes:
        probabilities: ``(samples, classes)`` predicted probabilities.
        labels: The true class indices.
        predictions: The predicted class indices.
        losses: Each sample's cross-entropy.
        class_names: One name per class.
        paths: Each sample's file, when the data came from a folder.
    """

    def __init__(
        self,
        model: Any,
        probabilities: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        paths: list[str] | None,
        images: dict[int, np.ndarray],
    ) -> None:
        self.model = model
        self.probabilities = probabilities
        self.labels = labels
        self.predictions = probabilities.argmax(axis=-1)
        rows = np.arange(len(labels))
        self.losses = -log_probabilities(probabilities)[rows, labels]
        self.class_names = class_names
        self.paths = paths
        self._images = images  # index -> input, for the samples that can be shown

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels))

    @property
    def confusion_matrix(self) -> np.ndarray:
        """``(classes, classes)`` counts: row = actual class, column = predicted class."""
        n = len(self.class_names)
        matrix = np.zeros((n, n), dtype=np.int64)
        np.add.at(matrix, (self.labels, self.predictions), 1)
        return matrix

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """``(actual, predicted, count)`` for the off-diagonal cells, largest first."""
        matrix = self.confusion_matrix
        pairs = [
            (self.class_names[i], self.class_names[j], int(matrix[i, j]))
            for i in range(len(matrix))
            for j in range(len(matrix))
            if i != j and matrix[i, j] >= min_count
        ]
        return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))

    def per_class(self) -> dict[str, dict[str, float]]:
        """Class name -> ``precision``, ``recall``, ``f1`` and ``support`` (0 where undefined)."""
        matrix = self.confusion_matrix.astype(np.float64)
        hits = np.diag(matrix)
        predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
        precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
        recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
        return {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, name in enumerate(self.class_names)
        }

    def top_losses(self, k: int = 9) -> list[TopLoss]:
        """The ``k`` samples with the largest loss, largest first."""
        order = np.argsort(-self.losses, kind="stable")[: max(0, k)]
        return [
            TopLoss(
                index=int(i),
                path=self.paths[i] if self.paths else None,
                label=self.class_names[self.labels[i]],
                predicted=self.class_names[self.predictions[i]],
                loss=float(self.losses[i]),
                probability=float(self.probabilities[i, self.predictions[i]]),
            )
            for i in order
        ]

    def plot_confusion_matrix(self, path: str | os.PathLike, normalize: bool = False) -> Path:
        """Draw the confusion matrix (rows actual, columns predicted)."""
        return plot_confusion_matrix(
            self.confusion_matrix, self.class_names, path, normalize=normalize
        )

    def plot_top_losses(self, path: str | os.PathLike, k: int = 9, saliency: bool = True) -> Path:
        """Draw the worst ``k`` samples that can be shown, each with its saliency overlaid.

        The title says ``actual/predicted``, the loss, the predicted probability and the file
        name. The saliency map (SmoothGrad of the predicted class) shows what the model
        looked at when it got the sample wrong.
        """
        shown = [t for t in self.top_losses(len(self.losses)) if t.index in self._images][:k]
        if not shown:
            raise ValueError("No top-loss images to draw: interpret() kept none")
        images = [self._images[t.index] for t in shown]
        titles = [
            f"{t.label}/{t.predicted} loss {t.loss:.2f} p {t.probability:.2f}"
            + (f"\n{Path(t.path).name}" if t.path else "")
            for t in shown
        ]
        overlays = None
        if saliency:
            overlays = [
                saliency_map(self.model, image, self.class_names.index(t.predicted))[0]
                for image, t in zip(images, shown, strict=True)
            ]
        return plot_image_grid(images, titles, path, overlays=overlays)

    def to_dict(self, k: int = 9) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "class_names": self.class_names,
            "confusion_matrix": self.confusion_matrix.tolist(),
            "most_confused": self.most_confused()[:10],
            "per_class": self.per_class(),
            "top_losses": [t.to_dict() for t in self.top_losses(k)],
        }


def interpret(
    model: Any,
    data: Any,
    y: Any = None,
    *,
    class_names: list[str] | None = None,
    tta: bool | dict = False,
    batch_size: int = 64,
    keep: int = 64,
) -> Interpretation:
    """Predict ``data`` with ``model`` and keep what is needed to study its mistakes.

    Args:
        model: A Keras classifier (softmax, logits or one sigmoid unit).
        data: ``(x, y)`` arrays (or ``x`` with ``y``), a ``tf.data.Dataset`` of
            ``(inputs, labels)`` batches (not shuffled, so indices mean something), or a
            folder with one sub-folder of images per class, read at the model's input size as
            0-255 values (as ``keras.utils.image_dataset_from_directory`` reads them); then
            each top loss carries its file's path.
        y: The labels when ``data`` is an array.
        class_names: One name per class; default: the folder's or dataset's, else indices.
        tta: Predict with :func:`predict_tta` (True, or a dict of its arguments).
        batch_size: Samples per forward pass.
        keep: For a dataset, how many of the worst samples' images to keep for plotting
            (arrays and folders keep all).

    Returns:
        An :class:`Interpretation`.
    """
    input_shape = tuple(getattr(model, "input_shape", ())[1:]) or None
    source = labelled(data, y, input_shape=input_shape)
    options = tta if isinstance(tta, dict) else {}

    def predict(x: np.ndarray) -> np.ndarray:
        if tta:
            return predict_tta(model, x, batch_size=batch_size, **options)
        return to_probabilities(model.predict(x, batch_size=batch_size, verbose=0))

    outputs, labels, heap = [], [], []
    if source.x is not None:  # in memory: one predict call (each call has a fixed cost)
        outputs.append(predict(np.asarray(source.x, dtype=np.float32)))
        labels.append(class_indices(source.y))
    offset = 0
    for x_batch, y_batch in source.batches(batch_size) if source.x is None else ():
        probabilities = predict(x_batch)
        indices = class_indices(y_batch)
        outputs.append(probabilities)
        labels.append(indices)
        rows = np.arange(len(indices))  # a dataset: keep only the worst images
        losses = -np.log(np.maximum(probabilities[rows, indices], 1e-300))
        for row, loss in enumerate(losses):
            item = (float(loss), offset + row, np.asarray(x_batch[row]))
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        offset += len(indices)
    if not outputs:
        raise ValueError("interpret received no data")
    probabilities = np.concatenate(outputs)
    labels_all = np.concatenate(labels)
    n_classes = probabilities.shape[-1]
    class_indices(labels_all, n_classes)  # checks the range
    names = class_names or source.class_names or [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(
            f"class_names must name each of the model's {n_classes} classes. "
            f"Received: {len(names)} names"
        )
    if source.x is not None:
        images = _LazyImages(source.x)
    else:
        images = {index: image for _, index, image in heap}
    return Interpretation(model, probabilities, labels_all, list(names), source.paths, images)


class _LazyImages(dict):
    """Every input, looked up in the array only when asked for (``index in images``)."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        self._x = x

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int | np.integer) and 0 <= int(index) < len(self._x)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self._x[index])
