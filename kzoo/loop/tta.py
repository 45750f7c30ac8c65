"""Test-time augmentation: average a model's predictions over flipped and cropped copies."""

from __future__ import annotations

from typing import Any

import numpy as np

from kzoo.loop.outputs import to_probabilities

__all__ = ["predict_tta", "tta_views"]


def tta_views(x: np.ndarray, *, flip: bool = True, crops: int = 4, scale: float = 0.9) -> list:
    """The copies of a ``(batch, height, width, channels)`` batch that TTA averages over.

    The batch itself, its mirror image (``flip``), and ``crops`` corner crops (top-left,
    top-right, bottom-left, bottom-right, then the centre) of ``scale`` times the side,
    resized back to the full size.
    """
    import keras

    if x.ndim != 4:
        raise ValueError(
            "Test-time augmentation needs a batch of images (batch, height, width, channels). "
            f"Received: shape {x.shape}"
        )
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1]. Received: scale={scale}")
    if not 0 <= crops <= 5:
        raise ValueError(f"crops must be between 0 and 5. Received: crops={crops}")
    views = [x]
    if flip:
        views.append(x[:, :, ::-1, :])
    height, width = x.shape[1:3]
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w)]
    corners.append(((height - h) // 2, (width - w) // 2))
    for top, left in corners[:crops]:
        crop = x[:, top : top + h, left : left + w, :]
        resized = keras.ops.image.resize(crop, (height, width), interpolation="bilinear")
        views.append(np.asarray(keras.ops.convert_to_numpy(resized), dtype=np.float32))
    return views


def predict_tta(
    model: Any,
    x: Any,
    *,
    flip: bool = True,
    crops: int = 4,
    scale: float = 0.9,
    batch_size: int = 64,
) -> np.ndarray:
    """Class probabilities averaged over the image, its mirror image and corner crops.

    Averaging the predictions of a few plausible views of each image usually gains a little
    accuracy for the price of a few more forward passes (``1 + flip + crops`` of them). Turn
    ``flip`` off where a mirror image changes the class (digits, text).

    Args:
        model: A Keras classifier on images.
        x: A ``(batch, height, width, channels)`` array, as the model takes it.
        flip: Include the horizontally mirrored image.
        crops: How many corner crops (0-5; the fifth is the centre).
        scale: The crops' side as a fraction of the image's.
        batch_size: Images per forward pass.

    Returns:
        ``(batch, classes)`` probabilities (logit outputs go through a softmax first).
    """
    x = np.asarray(x, dtype=np.float32)
    total = None
    views = tta_views(x, flip=flip, crops=crops, scale=scale)
    for view in views:
        outputs = model.predict(view, batch_size=batch_size, verbose=0)
        probabilities = to_probabilities(outputs)
        total = probabilities if total is None else total + probabilities
    return total / len(views)
