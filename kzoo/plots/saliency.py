"""Saliency maths: which input pixels move a class score, as NumPy arrays.

:func:`input_gradient` differentiates one output unit with respect to the input on the
current Keras backend; :func:`saliency_map` averages it over noisy copies (SmoothGrad) and
differentiates the logit rather than a saturated softmax. :func:`occlusion_map` needs no
gradient: it covers one region at a time and measures how much the class score drops
(Zeiler & Fergus 2014). :mod:`.figures` draws the results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from kzoo.taps import bypass


def input_gradient(model: Any, x: np.ndarray, class_index: int) -> np.ndarray:
    """The gradient of output ``class_index`` with respect to the input batch ``x``.

    Keras 3 has no backend-independent gradient API (``keras.ops`` covers the forward pass
    only), so this is the one place that dispatches on the backend, each branch the backend's
    own idiom: TensorFlow's GradientTape, ``jax.grad``, torch's autograd.

    Args:
        model: A Keras model with a single input.
        x: A float32 batch in the model's input shape.
        class_index: The output unit to differentiate.

    Returns:
        A NumPy array shaped like ``x`` (each sample's own gradient: the score is summed
        over the batch and the samples do not interact).
    """
    import keras

    backend = keras.backend.backend()

    def score(inputs):
        outputs = model(inputs, training=False)
        return keras.ops.sum(outputs[..., class_index])

    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = score(tensor)
        gradient = tape.gradient(value, tensor)
    elif backend == "jax":
        import jax

        gradient = jax.grad(score)(keras.ops.convert_to_tensor(x))
    elif backend == "torch":
        tensor = keras.ops.convert_to_tensor(x)
        tensor.requires_grad_(True)
        score(tensor).backward()
        gradient = tensor.grad
    else:
        raise NotImplementedError(
            "Saliency maps need gradients, available on the tensorflow, jax and torch backends. "
            f"Received: backend={backend!r}"
        )
    return np.asarray(keras.ops.convert_to_numpy(gradient))


def saliency_map(
    model: Any,
    image: np.ndarray,
    class_index: int | None = None,
    *,
    samples: int = 16,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, int, float]:
    """Gradient saliency of one image: ``(|d score / d pixel| max over channels, class, score)``.

    Raw input gradients are speckled; by default they are averaged over ``samples`` copies of
    the image with Gaussian noise added (SmoothGrad, Smilkov et al. 2017), which keeps the
    structure and removes the speckle. The score differentiated is the class's logit when the
    model ends in a softmax (a softmax activation or a ``keras.layers.Softmax``; a saturated
    softmax has no useful gradient); the score returned is the model's output for the clean
    image.

    Args:
        model: A Keras classifier with a single image input.
        image: ``(height, width, channels)`` or a batch of one, preprocessed as the model expects.
        class_index: The class to explain; the predicted class when None.
        samples: Noisy copies to average; 1 gives the plain gradient.
        noise: The noise's standard deviation as a fraction of the image's value range.
        seed: Seed of the noise, so the same call draws the same map.
    """
    x = _one_image(image, "plot_saliency")
    if samples < 1:
        raise ValueError(f"samples must be at least 1. Received: samples={samples}")
    import keras

    scores = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))[0]
    class_index = _class_of(scores, class_index)
    batch = np.repeat(x, samples, axis=0)
    if samples > 1:
        scale = noise * float(x.max() - x.min() or 1.0)
        batch += np.random.default_rng(seed).normal(0.0, scale, batch.shape).astype(np.float32)
    with _softmax_as_logits(model) as logits:
        gradient = input_gradient(logits, batch, class_index).mean(axis=0)
    return np.abs(gradient).max(axis=-1), class_index, float(scores[class_index])


def occlusion_map(
    model: Any,
    image: np.ndarray,
    class_index: int | None = None,
    *,
    patch: int | None = None,
    stride: int | None = None,
    fill: float | np.ndarray | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, int, float]:
    """Occlusion saliency of one image: ``(score drop per pixel, class, score)``.

    A ``patch`` x ``patch`` square of ``fill`` slides over the image (Zeiler & Fergus 2014);
    the model scores every occluded copy, and each pixel gets the drop of the class score
    (clean score minus occluded score) averaged over the patches that covered it. Where the
    drop is large the network needed that region; a negative drop means the region argued
    against the class. Unlike a gradient, this measures what removing a whole region does,
    so it shows the objects a network relies on rather than single pixels (the whale
    classifier that looks at the ocean). Patches start every ``stride`` pixels, plus one
    flush with the far edge when the steps do not reach it, so every pixel is covered.

    Args:
        model: A Keras classifier with a single image input and ``(batch, classes)`` output.
        image: ``(height, width, channels)`` or a batch of one, preprocessed as the model expects.
        class_index: The class to explain; the predicted class when None.
        patch: The patch side in pixels; 1/8 of the image's shorter side (at least 1) when None.
        stride: The step between patches in pixels; half a patch (at least 1) when None.
        fill: The value painted over a patch: a number or one per channel; the image's
            per-channel mean (grey for a natural image) when None, so a patch removes
            information without adding a strong edge.
        batch_size: Occluded copies scored per model call.

    Returns:
        ``(heat, class_index, score)``: a float ``(height, width)`` map of score drops, the
        class explained and the model's score for it on the clean image.

    Raises:
        ValueError: Not one image, a patch larger than the image, a stride, patch or batch
            size below 1, a ``fill`` that is not one value per channel, or a class index out
            of range.
    """
    x = _one_image(image, "occlusion_map")
    _, height, width, channels = x.shape
    patch, stride = _patch_geometry(height, width, patch, stride)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
    if fill is None:
        value = x[0].mean(axis=(0, 1))
    else:
        value = np.asarray(fill, dtype=np.float32)
        if value.ndim > 1 or value.size not in (1, channels):
            raise ValueError(
                f"fill must be a number or one value per channel ({channels}). "
                f"Received: fill with shape {value.shape}"
            )
    clean = _scores(model, x)[0]
    class_index = _class_of(clean, class_index)
    tops = _starts(height, patch, stride)
    lefts = _starts(width, patch, stride)
    corners = [(top, left) for top in tops for left in lefts]
    total = np.zeros((height, width))
    covered = np.zeros((height, width))
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        batch = np.repeat(x, len(chunk), axis=0)
        for copy, (top, left) in zip(batch, chunk, strict=True):
            copy[top : top + patch, left : left + patch] = value
        drops = clean[class_index] - _scores(model, batch)[:, class_index].astype(np.float64)
        for drop, (top, left) in zip(drops, chunk, strict=True):
            total[top : top + patch, left : left + patch] += drop
            covered[top : top + patch, left : left + patch] += 1
    return total / covered, class_index, float(clean[class_index])


def _patch_geometry(
    height: int, width: int, patch: int | None = None, stride: int | None = None
) -> tuple[int, int]:
    """The occlusion patch side and stride for an image, defaults filled in and checked.

    Args:
        height: The image's height in pixels.
        width: The image's width in pixels.
        patch: The patch side; 1/8 of the shorter side (at least 1) when None.
        stride: The step between patches; half a patch (at least 1) when None.

    Returns:
        ``(patch, stride)``.

    Raises:
        ValueError: A patch or stride below 1, or a patch larger than the image.
    """
    if patch is None:
        patch = max(1, min(height, width) // 8)
    if patch < 1:
        raise ValueError(f"patch must be at least 1 pixel. Received: patch={patch}")
    if patch > min(height, width):
        raise ValueError(
            f"the occlusion patch ({patch}x{patch}) is larger than the image "
            f"({height}x{width}); use a patch of at most {min(height, width)} pixels. "
            f"Received: patch={patch}"
        )
    if stride is None:
        stride = max(1, patch // 2)
    if stride < 1:
        raise ValueError(f"stride must be at least 1 pixel. Received: stride={stride}")
    return patch, stride


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one side: every ``stride``, plus one flush with the far edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _one_image(image: np.ndarray, caller: str) -> np.ndarray:
    """``image`` as a float32 batch of one, or a ValueError naming ``caller``."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(
            f"{caller} needs one image, (height, width, channels) or (1, height, width, "
            f"channels). Received: shape={np.shape(image)}"
        )
    return x


def _scores(model: Any, batch: np.ndarray) -> np.ndarray:
    """The model's ``(batch, classes)`` output for ``batch`` as NumPy, in inference mode."""
    import keras

    scores = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)))
    if scores.ndim != 2:
        raise ValueError(
            "Expected a classifier whose output is (batch, classes). "
            f"Received: output shape {scores.shape}"
        )
    return scores


def _class_of(scores: np.ndarray, class_index: int | None) -> int:
    """The class to explain: ``class_index`` checked against the scores, or the top class."""
    if class_index is None:
        return int(np.argmax(scores))
    if not 0 <= class_index < scores.shape[-1]:
        raise ValueError(
            f"class_index must be in [0, {scores.shape[-1]}). Received: class_index={class_index}"
        )
    return int(class_index)


@contextlib.contextmanager
def _softmax_as_logits(model: Any) -> Iterator[Any]:
    """Yield a model whose class score is the logit, not its softmax probability.

    A confident softmax is saturated: its gradient is nearly zero and what remains is noise.
    The usual remedy (as in the saliency literature) is the pre-softmax score. A last layer
    with a softmax activation (``Dense(..., activation="softmax")``, ``Activation``) is
    switched to linear for the duration and restored; a last ``keras.layers.Softmax`` is left
    alone and the yielded model, sharing every weight, outputs that layer's input instead.
    Any other model is yielded as it is.
    """
    import keras

    last = model
    while getattr(last, "layers", None):  # a transfer model ends in its nested head
        last = last.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        yield bypass(model, last)
        return
    activation = getattr(last, "activation", None)
    if getattr(activation, "__name__", None) != "softmax":
        yield model
        return
    last.activation = keras.activations.linear
    try:
        yield model
    finally:
        last.activation = activation
