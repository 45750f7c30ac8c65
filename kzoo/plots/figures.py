"""Drawing the pictures: kernels, saliency beside its image, training curves.

matplotlib is an optional dependency (``pip install 'kzoo[plot]'``); it is imported inside each
function and always drawn with the headless Agg backend, so plots work on servers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.plots.saliency import saliency_map
from kzoo.taps import find_layer, layer_paths

__all__ = [
    "kernel_grid",
    "load_image",
    "plot_history",
    "plot_kernels",
    "plot_saliency",
]

_DPI = 100


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "kzoo's plots need matplotlib; install it with `pip install 'kzoo[plot]'` "
            "(or `pip install matplotlib`)."
        ) from exc
    matplotlib.use("Agg", force=True)  # headless: no display needed, same output everywhere
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


# -- kernels ----------------------------------------------------------------------------------


def _first_conv(model_or_layer: Any, layer: str | None) -> Any:
    import keras

    if isinstance(model_or_layer, keras.layers.Layer) and not isinstance(
        model_or_layer, keras.Model
    ):
        return model_or_layer
    if layer is not None:
        return find_layer(model_or_layer, layer)[1]
    paths = layer_paths(model_or_layer)  # nested models too: a transfer model's base
    for candidate in paths.values():
        if isinstance(candidate, keras.layers.Conv2D):
            return candidate
    raise ValueError(
        "plot_kernels needs a model with a Conv2D layer. "
        f"Received: model {model_or_layer.name!r} with layers {list(paths)}"
    )


def kernel_grid(kernel: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile conv kernels ``(kh, kw, in, out)`` into one image, each kernel scaled to [0, 1].

    Three input channels are shown as colour; otherwise the input channels are averaged.
    Each kernel gets its own contrast because their scales differ a lot and only the shape
    matters here. Returns ``(rows*(kh+pad)+pad, cols*(kw+pad)+pad, 3)`` floats.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 4:
        raise ValueError(
            f"Expected a Conv2D kernel of shape (kh, kw, in, out). Received: shape={kernel.shape}"
        )
    kh, kw, channels, count = kernel.shape
    if channels != 3:
        kernel = np.repeat(kernel.mean(axis=2, keepdims=True), 3, axis=2)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    grid = np.ones((rows * (kh + pad) + pad, cols * (kw + pad) + pad, 3))
    for i in range(count):
        k = kernel[..., i]
        span = k.max() - k.min()
        k = (k - k.min()) / span if span > 0 else np.full_like(k, 0.5)
        r, c = divmod(i, cols)
        top, left = pad + r * (kh + pad), pad + c * (kw + pad)
        grid[top : top + kh, left : left + kw] = k
    return grid


def plot_kernels(model_or_layer: Any, path: str | os.PathLike, layer: str | None = None) -> Path:
    """Draw the kernels of the first convolution (or of ``layer``) as an image grid.

    Args:
        model_or_layer: A Keras model, or a Conv2D layer.
        path: Where to write the PNG.
        layer: The name of the conv layer to draw; the model's first Conv2D when None.

    Returns:
        The path written.

    Raises:
        UnknownNameError: ``layer`` is not in the model.
        ValueError: The model has no Conv2D layer.
    """
    conv = _first_conv(model_or_layer, layer)
    weights = conv.get_weights()
    if not weights or np.ndim(weights[0]) != 4:
        raise ValueError(f"Layer {conv.name!r} has no 4-D kernel. Received: {type(conv).__name__}")
    kernel = weights[0]
    grid = kernel_grid(kernel)
    plt = _pyplot()
    scale = max(3.0, min(8.0, grid.shape[1] / 12))
    fig, ax = plt.subplots(figsize=(scale, scale * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    kh, kw, _, count = kernel.shape
    ax.set_title(f"{conv.name}: {count} kernels {kh}x{kw}", fontsize=9)
    return _save(fig, path)


# -- saliency ---------------------------------------------------------------------------------


def load_image(path: str | os.PathLike, size: tuple[int, int], channels: int) -> np.ndarray:
    """Read an image file as float32 ``(height, width, channels)`` with values 0-255 (Pillow)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L").resize((size[1], size[0]))
        array = np.asarray(image, dtype=np.float32)
    return array.reshape(size[0], size[1], channels)


def plot_saliency(
    model: Any,
    image: np.ndarray | str | os.PathLike,
    path: str | os.PathLike,
    class_index: int | None = None,
    *,
    samples: int = 16,
) -> Path:
    """Draw an image next to its gradient saliency map: the pixels that move the class score.

    Args:
        model: A Keras classifier with a single image input.
        image: ``(height, width, channels)`` array in the model's input scale, or an image
            file (read with Pillow, resized to the model's input, values 0-255).
        path: Where to write the PNG.
        class_index: The class to explain; the predicted class when None.
        samples: Noisy copies averaged by SmoothGrad (see :func:`saliency_map`); 1 draws
            the plain gradient.

    Returns:
        The path written.
    """
    if isinstance(image, (str, os.PathLike)):
        _, height, width, channels = model.inputs[0].shape
        image = load_image(image, (height, width), channels)
    saliency, class_index, score = saliency_map(model, image, class_index, samples=samples)
    picture = np.asarray(image, dtype=np.float64).reshape((*saliency.shape, -1))
    span = picture.max() - picture.min()
    picture = (picture - picture.min()) / (span if span > 0 else 1.0)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    shown = picture[..., 0] if picture.shape[-1] == 1 else picture
    axes[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(saliency, cmap="inferno")
    axes[1].set_title(f"saliency, class {class_index}", fontsize=9)
    axes[2].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axes[2].imshow(saliency, cmap="inferno", alpha=0.6)
    axes[2].set_title(f"overlay (score {score:.3g})", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    return _save(fig, path)


# -- history ----------------------------------------------------------------------------------


def _history_dict(history: Any) -> tuple[dict[str, list[float]], int | None]:
    if isinstance(history, (str, os.PathLike)):
        history = json.loads(Path(history).read_text())
    if isinstance(history, Mapping) and "history" in history:
        boundary = history.get("phase_boundary")
        history = history["history"]
    else:
        boundary = getattr(history, "phase_boundary", None)
        history = getattr(history, "history", history)
    if not isinstance(history, Mapping) or not history:
        raise ValueError(
            "plot_history needs a keras History, a dict of metric -> values per epoch, or an "
            f"object with .history. Received: {type(history).__name__}"
        )
    return {k: [float(v) for v in values] for k, values in history.items()}, boundary


def plot_history(history: Any, path: str | os.PathLike, phase_boundary: int | None = None) -> Path:
    """Draw training curves: losses on the left, accuracy-like metrics on the right.

    Args:
        history: A ``keras.callbacks.History``, a dict of metric name -> values per epoch, an
            object with ``.history`` (and optionally ``.phase_boundary``, like kzoo's transfer
            history), or a JSON file holding either the dict or
            ``{"history": {...}, "phase_boundary": n}``.
        path: Where to write the PNG.
        phase_boundary: The number of epochs before fine-tuning started; a dashed line marks
            it. Taken from ``history`` when None.

    Returns:
        The path written.
    """
    curves, found = _history_dict(history)
    boundary = phase_boundary if phase_boundary is not None else found
    losses = {k: v for k, v in curves.items() if "loss" in k}
    others = {
        k: v for k, v in curves.items() if "loss" not in k and k not in ("lr", "learning_rate")
    }
    panels = [("loss", losses)] + ([("metrics", others)] if others else [])
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, group) in zip(axes[0], panels, strict=True):
        for name, values in sorted(group.items()):
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, marker="o", markersize=3, label=name)
        if boundary:
            ax.axvline(boundary + 0.5, color="gray", linestyle="--", linewidth=1)
            ax.text(
                boundary + 0.6,
                0.95,
                "fine-tune",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                color="gray",
                va="top",
            )
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
