"""Gradient saliency maths: which input pixels move a class score, as NumPy arrays.

:func:`input_gradient` differentiates one output unit with respect to the input on the
current Keras backend; :func:`saliency_map` averages it over noisy copies (SmoothGrad) and
differentiates the logit rather than a saturated softmax. :mod:`.figures` draws the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


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
    model ends in a softmax layer (a saturated softmax has no useful gradient); the score
    returned is the model's output for the clean image.

    Args:
        model: A Keras classifier with a single image input.
        image: ``(height, width, channels)`` or a batch of one, preprocessed as the model expects.
        class_index: The class to explain; the predicted class when None.
        samples: Noisy copies to average; 1 gives the plain gradient.
        noise: The noise's standard deviation as a fraction of the image's value range.
        seed: Seed of the noise, so the same call draws the same map.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(
            "plot_saliency needs one image, (height, width, channels) or (1, height, width, "
            f"channels). Received: shape={np.shape(image)}"
        )
    if samples < 1:
        raise ValueError(f"samples must be at least 1. Received: samples={samples}")
    import keras

    scores = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))[0]
    if class_index is None:
        class_index = int(np.argmax(scores))
    elif not 0 <= class_index < scores.shape[-1]:
        raise ValueError(
            f"class_index must be in [0, {scores.shape[-1]}). Received: class_index={class_index}"
        )
    batch = np.repeat(x, samples, axis=0)
    if samples > 1:
        scale = noise * float(x.max() - x.min() or 1.0)
        batch += np.random.default_rng(seed).normal(0.0, scale, batch.shape).astype(np.float32)
    with _softmax_as_logits(model):
        gradient = input_gradient(model, batch, class_index).mean(axis=0)
    return np.abs(gradient).max(axis=-1), class_index, float(scores[class_index])


@contextlib.contextmanager
def _softmax_as_logits(model: Any) -> Iterator[None]:
    """Differentiate the class logit, not its softmax probability, while inside.

    A confident softmax is saturated: its gradient is nearly zero and what remains is noise.
    The usual remedy (as in the saliency literature) is the pre-softmax score, obtained here by
    switching the last layer's activation to linear for the duration, then restoring it.
    """
    import keras

    last = model
    while getattr(last, "layers", None):  # a transfer model ends in its nested head
        last = last.layers[-1]
    activation = getattr(last, "activation", None)
    if getattr(activation, "__name__", None) != "softmax":
        yield
        return
    last.activation = keras.activations.linear
    try:
        yield
    finally:
        last.activation = activation
