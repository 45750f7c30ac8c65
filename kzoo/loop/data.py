"""Labelled data in the forms a practitioner has it: arrays, a tf.data dataset, a folder.

A folder holds one sub-folder per class (the layout of
``keras.utils.image_dataset_from_directory``: classes in sorted order, images as RGB or grey
0-255 floats at the model's input size), and keeps each image's file name, so that the worst
predictions can be traced back to a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.images import open_image

__all__ = ["IMAGE_SUFFIXES", "Labelled", "labelled"]

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


@dataclass
class Labelled:
    """Batches of ``(inputs, labels)`` plus what is known about each sample.

    Attributes:
        x: All inputs when they are in memory (arrays, a folder), else None.
        y: All labels when known up front, else None.
        paths: One file path per sample (a folder), else None.
        class_names: The class names, when the data carries them.
        dataset: The batched dataset (or iterable of batches) when the data came as one.
    """

    x: np.ndarray | None = None
    y: np.ndarray | None = None
    paths: list[str] | None = None
    class_names: list[str] | None = None
    dataset: Any = None

    def batches(self, batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(inputs, labels)`` NumPy batches, in order."""
        if self.dataset is not None:
            for batch in self.dataset:
                if not isinstance(batch, tuple | list) or len(batch) < 2:
                    raise ValueError(
                        "A dataset given for evaluation must yield (inputs, labels) batches. "
                        f"Received: a batch of type {type(batch).__name__}"
                    )
                yield np.asarray(batch[0]), np.asarray(batch[1])
            return
        assert self.x is not None and self.y is not None  # set by labelled()
        for start in range(0, len(self.x), batch_size):
            stop = start + batch_size
            yield np.asarray(self.x[start:stop], dtype=np.float32), np.asarray(self.y[start:stop])


def labelled(data: Any, y: Any = None, *, input_shape: tuple | None = None) -> Labelled:
    """Read ``data`` (with ``y``) into :class:`Labelled`.

    Args:
        data: ``(x, y)`` arrays (or ``x`` with ``y`` given), a ``tf.data.Dataset`` (or any
            iterable) of ``(inputs, labels)`` batches, or a folder of class sub-folders.
        y: The labels when ``data`` is an array.
        input_shape: The model's ``(height, width, channels)``, to read a folder's images at.
    """
    if isinstance(data, str | os.PathLike):
        return _folder(Path(data), input_shape)
    if isinstance(data, tuple | list) and y is None and len(data) == 2:
        data, y = data
    if y is not None:
        x = np.asarray(data)
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(
                f"Inputs and labels differ in length. Received: {len(x)} inputs, {len(y)} labels"
            )
        return Labelled(x=x, y=y)
    if hasattr(data, "__iter__") and not isinstance(data, np.ndarray):
        return Labelled(dataset=data, class_names=getattr(data, "class_names", None))
    raise ValueError(
        "Expected (x, y) arrays, a dataset of (inputs, labels) batches or a folder of class "
        f"sub-folders. Received: {type(data).__name__} without labels"
    )


def _folder(root: Path, input_shape: tuple | None) -> Labelled:
    if not root.is_dir():
        raise FileNotFoundError(
            f"Expected a folder of class sub-folders of images. Received: {os.fspath(root)}"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(index)
    if not paths:
        raise FileNotFoundError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) in class sub-folders of {os.fspath(root)}. "
            f"Received: sub-folders {classes}"
        )
    height, width, channels = _image_shape(input_shape)
    images = np.stack([_read(path, height, width, channels) for path in paths])
    return Labelled(
        x=images,
        y=np.asarray(labels, dtype=np.int64),
        paths=[os.fspath(p) for p in paths],
        class_names=classes,
    )


def _image_shape(input_shape: tuple | None) -> tuple[int | None, int | None, int]:
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(
            "Reading a folder needs a model with one image input (height, width, channels). "
            f"Received: input shape {input_shape}"
        )
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise ValueError(
            f"Images are read as grey (1 channel) or RGB (3). Received: {channels} channels"
        )
    return height, width, channels


def _read(path: Path, height: int | None, width: int | None, channels: int) -> np.ndarray:
    image = open_image(path, "L" if channels == 1 else "RGB")
    if height and width and image.size != (width, height):
        image = image.resize((width, height), resample=2)  # bilinear, like Keras's loader
    array = np.asarray(image, dtype=np.float32)
    return array[..., None] if channels == 1 else array
