"""Drawing what the practitioner's loop measures: the LR finder curve, the confusion matrix,
the worst predictions with their saliency, and the reliability diagram.

The functions take plain arrays and numbers (:mod:`kzoo.loop` computes them) and write a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kzoo.plots.figures import _pyplot, _save

__all__ = ["plot_confusion_matrix", "plot_image_grid", "plot_lr_finder", "plot_reliability"]


def plot_lr_finder(
    learning_rates: Sequence[float],
    losses: Sequence[float],
    path: str | os.PathLike,
    *,
    suggestion: float | None = None,
    label: str = "suggestion",
) -> Path:
    """The (smoothed) loss against the learning rate on a log axis, the suggestion marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(learning_rates, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    if suggestion is not None:
        ax.axvline(suggestion, color="tab:red", linestyle="--", linewidth=1, label=label)
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    normalize: bool = False,
) -> Path:
    """Rows are the true classes, columns the predicted ones; counts written in each cell."""
    matrix = np.asarray(matrix, dtype=np.float64)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    n = len(class_names)
    plt = _pyplot()
    side = min(12.0, 2.0 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(shown, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0, fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    if n <= 30:
        limit = shown.max() / 2 if shown.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                colour = "white" if shown[i, j] > limit else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    return _save(fig, path)


def plot_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | os.PathLike,
    *,
    overlays: Sequence[np.ndarray] | None = None,
    columns: int = 4,
) -> Path:
    """Images in a grid with a title each, and optionally a heat map laid over each."""
    count = len(images)
    if count == 0:
        raise ValueError("plot_image_grid needs at least one image. Received: 0 images")
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        image = np.asarray(images[index], dtype=np.float64)
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        if image.ndim == 3 and image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray")
        else:
            ax.imshow(image)
        if overlays is not None:
            ax.imshow(overlays[index], cmap="jet", alpha=0.4)
        ax.set_title(titles[index], fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str | os.PathLike,
) -> Path:
    """Reliability diagram: accuracy against confidence per bin, one panel per curve.

    Args:
        curves: Title -> ``(bin confidence, bin accuracy, bin count)``; a perfectly
            calibrated model lies on the diagonal.
        path: Where to write the PNG.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.4), squeeze=False)
    for ax, (title, (confidence, accuracy, count)) in zip(axes[0], curves.items(), strict=True):
        filled = np.asarray(count) > 0
        edges = np.linspace(0, 1, len(count) + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        width = edges[1] - edges[0]
        ax.bar(centres[filled], np.asarray(accuracy)[filled], width=width, edgecolor="black",
               alpha=0.7, label="accuracy")  # fmt: skip
        ax.bar(centres[filled], (np.asarray(confidence) - np.asarray(accuracy))[filled],
               bottom=np.asarray(accuracy)[filled], width=width, color="tab:red", alpha=0.3,
               label="gap")  # fmt: skip
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)
