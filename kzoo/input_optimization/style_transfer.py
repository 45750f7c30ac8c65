"""Neural style transfer (Gatys, Ecker & Bethge, 2015): paint a photo in a painting's style.

Gradient descent runs on the photo, not on the weights: the image is changed until the
network's deep features match the photo's (content, at one deep conv layer) and the Gram
matrices of its shallow-to-deep features match the painting's (style, the first conv of each
block), with a total-variation term for smoothness.

Each term is divided by its value at the starting image (or, where that is zero, by the mean
square of its target), so the weights are relative importances that do not depend on the
image size or the network's activation scale: the weighted terms start at the weights. The
terms are computed in float32, so a network built under ``mixed_float16`` (float16 features)
works too; a Keras model given as the network is read, never trained or frozen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kzoo.input_optimization.descent import ImageDescent
from kzoo.input_optimization.images import as_rgb, fit_size, to_uint8
from kzoo.losses import STYLE_LAYERS, as_float32, gram_matrix, total_variation
from kzoo.zoo import features
from kzoo.zoo.names import DEFAULT

__all__ = ["StyleTransfer", "stylize"]

CONTENT_LAYER = "block5_conv2"
INITS = ("noise", "mixed", "content")


class StyleTransfer:
    """One style transfer, run step by step; the loss terms are kept in :attr:`history`.

    Args:
        content: The photo: a file or an RGB 0-255 array ``(H, W, 3)``.
        style: The painting: a file or an array; resized to the photo's size.
        model: A zoo name (``"vgg19"``, with its weights and preprocessing) or a Keras model
            taking RGB 0-255 images.
        weights: The zoo weights tag (None: random weights, for a smoke run).
        manifest: A user manifest for a zoo name.
        size: The longer side of the output, in pixels (the photo is resized to it).
        content_layer: Where content is compared.
        style_layers: Where style (Gram matrices) is compared, equally weighted.
        content_weight, style_weight, variation_weight: The terms' relative weights.
        learning_rate: Adam's step in pixel units (0-255).
        init: Start from ``"noise"`` (Gatys's white noise: content and style both fall from
            it), ``"mixed"`` (half photo, half noise: fewer steps to a recognisable photo) or
            ``"content"`` (the photo itself; its content term starts at zero).
        seed: Seed of the noise.

    Attributes:
        history: ``{"total", "content", "style", "variation"}`` -> one value per step, each
            term as weighted into the total.
    """

    def __init__(
        self,
        content: Any,
        style: Any,
        *,
        model: str | keras.Model = "vgg19",
        weights: str | os.PathLike[str] | None = DEFAULT,
        manifest: Any = None,
        size: int = 384,
        content_layer: str = CONTENT_LAYER,
        style_layers: Sequence[str] = STYLE_LAYERS,
        content_weight: float = 1.0,
        style_weight: float = 5.0,
        variation_weight: float = 1e-2,
        learning_rate: float = 4.0,
        init: str = "noise",
        seed: int = 0,
    ) -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}. Received: init={init!r}")
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels. Received: size={size}")
        photo = as_rgb(content)
        scale = size / max(photo.shape[:2])
        shape = (max(1, round(photo.shape[0] * scale)), max(1, round(photo.shape[1] * scale)))
        photo = fit_size(photo, shape)
        painting = fit_size(as_rgb(style), shape)
        self.style_layers = tuple(style_layers)
        taps = {name: name for name in (content_layer, *self.style_layers)}
        self.extractor = features(
            model, taps, weights=weights, input_shape=(*shape, 3), manifest=manifest
        )
        if isinstance(model, str):
            # only our own network: a user's model shares its layers with the taps, and the
            # descent takes gradients with respect to the image alone whatever the flag says
            self.extractor.trainable = False
        self.content_layer = content_layer
        self.weights = (content_weight, style_weight, variation_weight)
        photo_features = self._features(photo[None])
        style_features = self._features(painting[None])
        self.content_target = photo_features[content_layer]
        self.style_targets = {n: gram_matrix(style_features[n]) for n in self.style_layers}
        start = _start(photo, init, seed)
        self.content_scale = 1.0
        self.style_scales = dict.fromkeys(self.style_layers, 1.0)
        self.variation_scale = 1.0
        self._calibrate(start)
        self.descent = ImageDescent(
            start[None], self.objective, [self.extractor], learning_rate=learning_rate
        )
        self.history: dict[str, list[float]] = {
            "total": [], "content": [], "style": [], "variation": []
        }  # fmt: skip

    def objective(self, x: Any) -> tuple[Any, Any]:
        """The weighted loss of image batch ``x`` (one image), and its three terms."""
        found = self._features(x)
        ops = keras.ops
        content = ops.mean(ops.square(found[self.content_layer] - self.content_target))
        content = content / self.content_scale
        style = 0.0
        for name in self.style_layers:
            gap = ops.mean(ops.square(gram_matrix(found[name]) - self.style_targets[name]))
            style = style + gap / self.style_scales[name]
        style = style / len(self.style_layers)
        variation = ops.mean(total_variation(x)) / self.variation_scale
        c_w, s_w, v_w = self.weights
        terms = ops.stack([c_w * content, s_w * style, v_w * variation])
        return ops.sum(terms), terms

    def _calibrate(self, start: np.ndarray) -> None:
        """Scale each term by its value at the start (by its target's size where that is 0)."""
        found = self._features(start[None])
        ops = keras.ops

        def scale(at_start: Any, target: Any) -> float:
            value = float(ops.convert_to_numpy(at_start))
            return value if value > 1e-12 else float(ops.convert_to_numpy(_mean_square(target)))

        content = ops.mean(ops.square(found[self.content_layer] - self.content_target))
        self.content_scale = scale(content, self.content_target)
        for name in self.style_layers:
            gram = gram_matrix(found[name])
            gap = ops.mean(ops.square(gram - self.style_targets[name]))
            self.style_scales[name] = scale(gap, self.style_targets[name])
        variation = float(ops.convert_to_numpy(ops.mean(total_variation(start[None]))))
        self.variation_scale = variation if variation > 1e-12 else 1.0

    def _features(self, x: Any) -> dict[str, Any]:
        """The tapped features of ``x``, float32 (float16 ones overflow when squared)."""
        return {k: as_float32(v) for k, v in self.extractor(x, training=False).items()}

    def run(self, steps: int = 300, *, progress: bool | None = None) -> np.ndarray:
        """Optimise for ``steps`` more steps; return the image, RGB uint8 ``(H, W, 3)``."""

        def record(index: int, value: float, terms: Any) -> bool:
            content, style, variation = (float(t) for t in keras.ops.convert_to_numpy(terms))
            for key, number in zip(self.history, (value, content, style, variation), strict=True):
                self.history[key].append(number)
            return False

        self.descent.run(steps, progress=progress, label="stylizing", after_step=record)
        return self.image()

    def image(self) -> np.ndarray:
        """The current image, RGB uint8 ``(H, W, 3)``."""
        return to_uint8(self.descent.result()[0])


def stylize(content: Any, style: Any, *, steps: int = 300, progress: bool | None = None,
            **options: Any) -> np.ndarray:  # fmt: skip
    """Paint ``content`` in the style of ``style`` (Gatys et al. 2015).

    Args:
        content: The photo: an image file or an RGB 0-255 array ``(H, W, 3)``.
        style: The painting: a file or an array.
        steps: Optimisation steps (a few hundred for a good picture).
        progress: Show a progress bar (default: on a terminal).
        **options: As for :class:`StyleTransfer` (``model``, ``weights``, ``size``,
            ``content_layer``, ``style_layers``, ``style_weight``, ...).

    Returns:
        The stylised image, RGB uint8, the photo's aspect ratio at ``size`` on its longer side.
    """
    return StyleTransfer(content, style, **options).run(steps, progress=progress)


def _mean_square(tensor: Any) -> Any:
    return keras.ops.mean(keras.ops.square(tensor)) + 1e-8


def _start(photo: np.ndarray, init: str, seed: int) -> np.ndarray:
    if init == "content":
        return photo
    noise = np.random.default_rng(seed).uniform(0, 255, photo.shape).astype(np.float32)
    return noise if init == "noise" else 0.5 * photo + 0.5 * noise
