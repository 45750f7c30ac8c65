"""Drawing the pictures: kernels, feature maps, saliency and occlusion maps, training curves.

:func:`kernel_grid` and :func:`feature_grid` tile weights and activations into one image;
:func:`feature_maps` reads a layer's activations (nested layers too, through
:func:`kzoo.taps.tap`).

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

from kzoo.images import open_image
from kzoo.plots.saliency import _one_image, _patch_geometry, occlusion_map, saliency_map
from kzoo.taps import find_layer, layer_paths, tap

__all__ = [
    "feature_grid",
    "feature_maps",
    "kernel_grid",
    "load_image",
    "plot_feature_maps",
    "plot_history",
    "plot_kernels",
    "plot_occlusion",
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
    return layer_paths(model_or_layer)[_first_conv_path(model_or_layer, "plot_kernels")]


def _first_conv_path(model: Any, caller: str) -> str:
    """The path of the model's first Conv2D, nested models included (a transfer base)."""
    import keras

    paths = layer_paths(model)
    for path, candidate in paths.items():
        if isinstance(candidate, keras.layers.Conv2D):
            return path
    raise ValueError(
        f"{caller} needs a model with a Conv2D layer. "
        f"Received: model {model.name!r} with layers {list(paths)}"
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


# -- images -----------------------------------------------------------------------------------


def load_image(
    path: str | os.PathLike, size: tuple[int | None, int | None], channels: int
) -> np.ndarray:
    """Read an image file as float32 ``(height, width, channels)`` with values 0-255 (Pillow).

    Args:
        path: The image file.
        size: ``(height, width)`` to resize to; a None side keeps the file's own, as for a
            model whose input size is None (any image size works).
        channels: 1 reads greyscale, 3 RGB, 4 RGBA.

    Returns:
        A float32 ``(height, width, channels)`` array.

    Raises:
        ValueError: Another number of channels, which no image file holds.
    """
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise ValueError(
            f"an image file gives 1, 3 or 4 channels and the model takes {channels}; pass the "
            f"input as an array of shape (height, width, {channels}). Received: {path}"
        )
    image = open_image(path, modes[channels])
    height = image.height if size[0] is None else size[0]
    width = image.width if size[1] is None else size[1]
    image = image.resize((width, height))
    return np.asarray(image, dtype=np.float32).reshape(height, width, channels)


def _as_image(model: Any, image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An array as given, or an image file read at the size of the model's input.

    A model input side that is None (``kzoo.load(..., include_top=False)``) keeps the file's.
    """
    if isinstance(image, (str, os.PathLike)):
        _, height, width, channels = model.inputs[0].shape
        return load_image(image, (height, width), channels)
    return np.asarray(image)


def _display(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """The image scaled to [0, 1] for imshow, and its colour map (grey for one channel)."""
    picture = np.asarray(image, dtype=np.float64).reshape((*size, -1))
    span = picture.max() - picture.min()
    picture = (picture - picture.min()) / (span if span > 0 else 1.0)
    if picture.shape[-1] == 1:
        return picture[..., 0], "gray"
    return picture, None


# -- feature maps -----------------------------------------------------------------------------


def feature_maps(model: Any, image: np.ndarray | str | os.PathLike, layer: str) -> np.ndarray:
    """The activations of ``layer`` for one image: what that layer responds to, and where.

    Args:
        model: A Functional or Sequential Keras model with a single image input; the layer
            may sit inside a nested model (a transfer model's base).
        image: ``(height, width, channels)`` or a batch of one in the model's input scale, or
            an image file (read with Pillow, resized to the model's input where its size is
            fixed, values 0-255).
        layer: The layer's name, or its path (``"vgg19/block4_conv2"``) inside nested models.

    Returns:
        A float32 ``(height, width, channels)`` array: one map per channel of the layer.

    Raises:
        UnknownNameError: ``layer`` is not in the model (with the nearest names).
        ValueError: Not one image, or a layer whose output is not an image (a Dense or
            Flatten layer).
    """
    import keras

    path, _ = find_layer(model, layer)
    tapped = tap(model, [path], name=f"{model.name}_feature_maps")
    shape = tuple(getattr(tapped.output[path], "shape", ()))
    if len(shape) != 4:  # checked on the symbolic output, before running the model
        raise ValueError(
            "feature_maps needs a layer whose output is an image, (batch, height, width, "
            f"channels); {path!r} outputs {shape}. Pick a conv or pooling layer, such as "
            f"{_first_conv_path(model, 'feature_maps')!r}. Received: layer={layer!r}"
        )
    x = _one_image(_as_image(model, image), "feature_maps")
    return np.asarray(keras.ops.convert_to_numpy(tapped(x, training=False)[path]))[0]


def feature_grid(maps: np.ndarray, max_maps: int = 64, pad: int = 1) -> np.ndarray:
    """Tile feature maps ``(height, width, channels)`` into one grey image, in channel order.

    Each map is scaled to [0, 1] on its own, like :func:`kernel_grid`, since only where a
    channel responds matters here, not how strongly compared with the others. A constant map
    (a channel that did not respond, e.g. a ReLU at zero everywhere) is 0. Tiles are
    separated by ``pad`` pixels of 1.

    Args:
        maps: ``(height, width, channels)``, or a batch of one.
        max_maps: Show the first this many channels at most.
        pad: Pixels between tiles and around the grid.

    Returns:
        ``(rows*(height+pad)+pad, cols*(width+pad)+pad)`` floats, ``cols`` the ceiling of the
        square root of the number of maps shown.

    Raises:
        ValueError: ``maps`` is not 3-D, or ``max_maps`` is below 1.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(
            "Expected feature maps of shape (height, width, channels). "
            f"Received: shape={maps.shape}"
        )
    if max_maps < 1:
        raise ValueError(f"max_maps must be at least 1. Received: max_maps={max_maps}")
    height, width, channels = maps.shape
    count = min(channels, max_maps)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    grid = np.ones((rows * (height + pad) + pad, cols * (width + pad) + pad))
    for i in range(count):
        m = maps[..., i]
        span = m.max() - m.min()
        m = (m - m.min()) / span if span > 0 else np.zeros_like(m)
        r, c = divmod(i, cols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = m
    return grid


def plot_feature_maps(
    model: Any,
    image: np.ndarray | str | os.PathLike,
    path: str | os.PathLike,
    layer: str | None = None,
    max_maps: int = 64,
) -> Path:
    """Draw the feature maps of one image at one layer as a grid (Zeiler & Fergus 2014).

    Early layers respond to edges and blobs where the image has them; deeper ones to parts
    and textures, at a coarser resolution.

    Args:
        model: A Keras model with a single image input; nested layers are reached too.
        image: ``(height, width, channels)`` array in the model's input scale, or an image
            file (read with Pillow, resized to the model's input where its size is fixed,
            values 0-255).
        path: Where to write the PNG.
        layer: The layer's name or path; the model's first Conv2D (nested ones included)
            when None.
        max_maps: Draw the first this many channels at most.

    Returns:
        The path written.

    Raises:
        UnknownNameError: ``layer`` is not in the model.
        ValueError: The layer's output is not an image, or the model has no Conv2D layer
            and no ``layer`` was given.
    """
    if layer is None:
        layer = _first_conv_path(model, "plot_feature_maps")
    else:
        layer = find_layer(model, layer)[0]
    maps = feature_maps(model, image, layer)
    grid = feature_grid(maps, max_maps)
    height, width, channels = maps.shape
    shown = min(channels, max_maps)
    what = f"all {channels} maps" if shown == channels else f"first {shown} of {channels} maps"
    plt = _pyplot()
    scale = max(3.0, min(8.0, grid.shape[1] / 12))
    fig, ax = plt.subplots(figsize=(scale, scale * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="antialiased")
    ax.set_axis_off()
    ax.set_title(f"{layer}: {height}x{width}x{channels}, {what}", fontsize=9)
    return _save(fig, path)


# -- saliency ---------------------------------------------------------------------------------


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
            file (read with Pillow, resized to the model's input where its size is fixed,
            values 0-255).
        path: Where to write the PNG.
        class_index: The class to explain; the predicted class when None.
        samples: Noisy copies averaged by SmoothGrad (see :func:`saliency_map`); 1 draws
            the plain gradient.

    Returns:
        The path written.
    """
    image = _as_image(model, image)
    saliency, class_index, score = saliency_map(model, image, class_index, samples=samples)
    shown, cmap = _display(image, saliency.shape)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    axes[0].imshow(shown, cmap=cmap)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(saliency, cmap="inferno")
    axes[1].set_title(f"saliency, class {class_index}", fontsize=9)
    axes[2].imshow(shown, cmap=cmap)
    axes[2].imshow(saliency, cmap="inferno", alpha=0.6)
    axes[2].set_title(f"overlay (score {score:.3g})", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    return _save(fig, path)


def plot_occlusion(
    model: Any,
    image: np.ndarray | str | os.PathLike,
    path: str | os.PathLike,
    class_index: int | None = None,
    *,
    patch: int | None = None,
    stride: int | None = None,
    fill: float | np.ndarray | None = None,
    batch_size: int = 64,
) -> Path:
    """Draw an image, its occlusion map and the two overlaid: the regions the class needs.

    The map is the drop of the class score when a patch covers each region (see
    :func:`occlusion_map`): red where covering hurts the class, blue where it helps. The
    overlay shows the positive drops over the image.

    Args:
        model: A Keras classifier with a single image input.
        image: ``(height, width, channels)`` array in the model's input scale, or an image
            file (read with Pillow, resized to the model's input where its size is fixed,
            values 0-255).
        path: Where to write the PNG.
        class_index: The class to explain; the predicted class when None.
        patch: The patch side in pixels; 1/8 of the image's shorter side when None.
        stride: The step between patches; half a patch when None.
        fill: The patch's value (a number or one per channel); the image's channel means
            when None.
        batch_size: Occluded copies scored per model call.

    Returns:
        The path written.

    Raises:
        ValueError: See :func:`occlusion_map` (a patch larger than the image, ...).
    """
    image = _as_image(model, image)
    heat, class_index, score = occlusion_map(
        model, image, class_index, patch=patch, stride=stride, fill=fill, batch_size=batch_size
    )
    patch, stride = _patch_geometry(*heat.shape, patch, stride)
    shown, cmap = _display(image, heat.shape)
    limit = float(np.abs(heat).max()) or 1.0
    plt = _pyplot()
    # constrained layout leaves room for the colour bar's labels beside the middle panel
    fig, axes = plt.subplots(1, 3, figsize=(8.2, 2.8), layout="constrained")
    axes[0].imshow(shown, cmap=cmap)
    axes[0].set_title("input", fontsize=9)
    drawn = axes[1].imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit)
    bar = fig.colorbar(drawn, ax=axes[1], shrink=0.85, format="%.2g")
    bar.ax.tick_params(labelsize=7)
    title = f"score drop, class {class_index}\npatch {patch}, stride {stride}"
    axes[1].set_title(title, fontsize=9)
    axes[2].imshow(shown, cmap=cmap)
    axes[2].imshow(np.clip(heat, 0.0, None), cmap="inferno", alpha=0.6, vmin=0.0, vmax=limit)
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
