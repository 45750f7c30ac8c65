"""The pretrained weights' input preprocessing, as a layer in the graph.

:class:`ImagePreprocessing` converts plain RGB 0-255 images to what a network's weights expect
(the caffe or torch ImageNet convention), so a saved model carries its own preprocessing and
users cannot pick the wrong convention; :func:`preprocess_images` applies the same constants
outside a model. Written with ``keras.ops``: TensorFlow, JAX and torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import keras
import numpy as np

from kzoo.errors import UnknownNameError

__all__ = ["MODES", "ImagePreprocessing", "preprocess_images"]

_PACKAGE = "kzoo"

# Per-mode constants of the two ImageNet conventions the zoo's weights use.
# caffe: the original VGG release; BGR channel order, 0-255, mean subtracted, no scaling.
# torch: torchvision; RGB, 0-1, then the ImageNet mean and standard deviation.
MODES: dict[str, dict[str, Any]] = {
    "caffe": {"flip": True, "scale": 1.0, "mean": (103.939, 116.779, 123.68), "std": None},
    "torch": {
        "flip": False,
        "scale": 1.0 / 255.0,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
    # tf: Inception and ResNet V2 in keras.applications; RGB scaled to [-1, 1]
    "tf": {"flip": False, "scale": 1.0 / 127.5, "mean": (1.0, 1.0, 1.0), "std": None},
    "none": {"flip": False, "scale": 1.0, "mean": None, "std": None},
}

ArrayT = TypeVar("ArrayT")


def _affine(
    mode: str, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[bool, np.ndarray, np.ndarray]:
    """Folds a preprocessing mode into ``flip`` and a per-channel ``x * a + b``.

    One multiply-add per pixel is both the cheapest form in the graph and the one the NumPy
    path can reproduce exactly. ``mean``/``std`` are in the channel order *after* the flip
    (BGR for caffe), in the units after scaling, as the weights' authors publish them.
    """
    if mode not in MODES:
        raise UnknownNameError("preprocessing mode", str(mode), list(MODES))
    spec = MODES[mode]
    mean_v = np.asarray(spec["mean"] if mean is None else mean, dtype=np.float64)
    std_v = np.asarray(spec["std"] if std is None else std, dtype=np.float64)
    if spec["mean"] is None and mean is None:
        mean_v = np.zeros(1)
    if spec["std"] is None and std is None:
        std_v = np.ones(1)
    if mean_v.ndim != 1 or std_v.ndim != 1:
        raise ValueError(
            f"mean and std must be flat sequences of per-channel values. "
            f"Received: mean={mean!r}, std={std!r}"
        )
    if len(std_v) > 1 and len(mean_v) > 1 and len(std_v) != len(mean_v):
        raise ValueError(
            f"mean and std must have one value per channel, and as many. "
            f"Received: mean={mean!r}, std={std!r}"
        )
    if np.any(std_v <= 0):
        raise ValueError(f"std must be positive for every channel. Received: std={std!r}")
    scale = np.asarray(spec["scale"] / std_v, dtype=np.float32)
    offset = np.asarray(-mean_v / std_v, dtype=np.float32)
    scale, offset = np.broadcast_arrays(scale, offset)
    return bool(spec["flip"]), np.array(scale), np.array(offset)


def _check_channels(channels: int | None, flip: bool, scale: np.ndarray, mode: str) -> None:
    needed = 3 if flip else (scale.shape[0] if scale.shape[0] > 1 else None)
    if needed is not None and channels is not None and channels != needed:
        raise ValueError(
            f"ImagePreprocessing(mode={mode!r}) expects channels-last images with {needed} "
            f"channels (RGB). Received: input with {channels} channels on the last axis."
        )


def preprocess_images(
    x: ArrayT,
    mode: str = "caffe",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ArrayT:
    """Applies :class:`ImagePreprocessing` outside a model, with the same constants.

    Args:
        x: Channels-last RGB images with values in 0-255: a NumPy array (any numeric dtype) or
            a backend tensor.
        mode: ``"caffe"``, ``"torch"``, ``"tf"`` or ``"none"`` (see :class:`ImagePreprocessing`).
        mean: Optional per-channel mean replacing the mode's.
        std: Optional per-channel standard deviation replacing the mode's.

    Returns:
        A float32 NumPy array for NumPy input, otherwise a float32 backend tensor.

    Example:
        >>> batch = preprocess_images(np.full((1, 2, 2, 3), 255, np.uint8), "torch")
    """
    flip, scale, offset = _affine(mode, mean, std)
    if isinstance(x, np.ndarray) or not hasattr(x, "shape"):
        arr = np.asarray(x, dtype=np.float32)
        _check_channels(arr.shape[-1] if arr.ndim else None, flip, scale, mode)
        if flip:
            arr = arr[..., ::-1]
        return arr * scale + offset
    return _apply(x, flip, scale, offset, mode)


def _apply(x: Any, flip: bool, scale: np.ndarray, offset: np.ndarray, mode: str, dtype=None):
    dtype = dtype or "float32"
    _check_channels(x.shape[-1], flip, scale, mode)
    x = keras.ops.cast(x, dtype)
    if flip:
        x = keras.ops.flip(x, axis=-1)
    return x * keras.ops.cast(scale, dtype) + keras.ops.cast(offset, dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImagePreprocessing(keras.layers.Layer):
    """Converts RGB 0-255 images to what a pretrained network expects, inside the model.

    Preprocessing belongs to the weights, not to the user's input pipeline: a saved model
    carries this layer, so whoever reloads it feeds plain RGB images and gets correct
    predictions. Modes:

    * ``"caffe"``: RGB -> BGR, then subtract the ImageNet mean ``[103.939, 116.779, 123.68]``
      (BGR order, 0-255 scale). The original VGG weights and ``keras.applications.vgg19``.
    * ``"torch"``: divide by 255, subtract ``[0.485, 0.456, 0.406]``, divide by
      ``[0.229, 0.224, 0.225]``. torchvision's weights.
    * ``"tf"``: divide by 127.5 and subtract 1, so RGB lands in [-1, 1]. InceptionV3 and
      ResNet V2 as keras.applications ships them.
    * ``"none"``: no conversion unless ``mean``/``std`` are given.

    ``mean``/``std`` override the mode's values; give them in the mode's channel order and
    scale (BGR 0-255 for caffe, RGB 0-1 for torch).

    Args:
        mode: ``"caffe"``, ``"torch"``, ``"tf"`` or ``"none"``.
        mean: Optional per-channel mean.
        std: Optional per-channel standard deviation.
        **kwargs: Standard layer arguments (``name``, ``dtype``, ...).

    Example:
        >>> inputs = keras.Input((224, 224, 3))
        >>> x = ImagePreprocessing("caffe")(inputs)  # then the pretrained network
    """

    # Saved models record the class's module next to its registered name: keep the public
    # home, kzoo.layers, so files written before and after the package split are identical.
    __module__ = "kzoo.layers"

    def __init__(
        self,
        mode: str = "caffe",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._flip, self._scale, self._offset = _affine(mode, mean, std)
        self.mode = mode
        # tuples, not lists: Keras would wrap list attributes in trackers
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        _check_channels(input_shape[-1], self._flip, self._scale, self.mode)
        self.built = True

    def call(self, inputs: Any) -> Any:
        return _apply(inputs, self._flip, self._scale, self._offset, self.mode, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"mode": self.mode, "mean": self.mean, "std": self.std})
        return config
