"""Images in and out of the input optimisers: files or arrays, RGB 0-255."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kzoo.images import open_image

__all__ = ["as_rgb", "fit_size", "to_uint8"]


def as_rgb(image: Any) -> np.ndarray:
    """An image file (read with Pillow) or an ``(H, W, 3)`` array as float32 RGB 0-255.

    Raises:
        ImageError: A file that cannot be read as an image.
        ValueError: An array that is not ``(height, width, 3)``.
    """
    if isinstance(image, str | os.PathLike):
        return np.asarray(open_image(image), dtype=np.float32)
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"an image is (height, width, 3) RGB in 0-255, or a file. Received: shape {array.shape}"
        )
    return array


def fit_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``(height, width)`` (bilinear), float32."""
    if image.shape[:2] == tuple(size):
        return image
    from PIL import Image

    picture = Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8))
    resized = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB 0-255 -> uint8, rounded and clipped."""
    return np.clip(np.asarray(image), 0, 255).round().astype(np.uint8)
