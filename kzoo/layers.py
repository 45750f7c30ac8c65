"""kzoo's serializable Keras layers and initialisers.

Each one implements a piece of standard training advice so that it travels with a saved model:

* :class:`ImagePreprocessing` - the pretrained weights' own input preprocessing, in the graph,
  so users feed plain RGB 0-255 images and cannot pick the wrong convention.
* :func:`fit_standardization` - zero-mean, unit-variance inputs, fitted on the training data
  (a thin helper over ``keras.layers.Normalization``).
* :class:`TargetStandardizer` - standardise regression targets for training and invert the
  standardisation in the model, so predictions come back in the target's units.
* :class:`GaborInitializer` - start first-layer convolutions as a bank of oriented edge filters.

Everything is written with ``keras.ops`` and works on the TensorFlow, JAX and torch backends.
Importing :mod:`kzoo` is enough for ``keras.saving.load_model`` to find these classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import keras
import numpy as np

from kzoo.errors import UnknownNameError

# Re-exported: kzoo.layers is the public home of every kzoo layer and initialiser, and importing
# it registers them all with Keras.
from kzoo.initializers import GaborInitializer, GaborParams

__all__ = [
    "GaborInitializer",
    "GaborParams",
    "ImagePreprocessing",
    "TargetStandardizer",
    "fit_standardization",
    "preprocess_images",
]

_PACKAGE = "kzoo"

# Per-mode constants of the two ImageNet conventions the zoo's weights use.
# caffe: the original VGG release; BGR channel order, 0-255, mean subtracted, no scaling.
# torch: torchvision; RGB, 0-1, then the ImageNet mean and standard deviation.
_MODES: dict[str, dict[str, Any]] = {
    "caffe": {"flip": True, "scale": 1.0, "mean": (103.939, 116.779, 123.68), "std": None},
    "torch": {
        "flip": False,
        "scale": 1.0 / 255.0,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
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
    if mode not in _MODES:
        raise UnknownNameError("preprocessing mode", str(mode), list(_MODES))
    spec = _MODES[mode]
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
        mode: ``"caffe"``, ``"torch"`` or ``"none"`` (see :class:`ImagePreprocessing`).
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
    * ``"none"``: no conversion unless ``mean``/``std`` are given.

    ``mean``/``std`` override the mode's values; give them in the mode's channel order and
    scale (BGR 0-255 for caffe, RGB 0-1 for torch).

    Args:
        mode: ``"caffe"``, ``"torch"`` or ``"none"``.
        mean: Optional per-channel mean.
        std: Optional per-channel standard deviation.
        **kwargs: Standard layer arguments (``name``, ``dtype``, ...).

    Example:
        >>> inputs = keras.Input((224, 224, 3))
        >>> x = ImagePreprocessing("caffe")(inputs)  # then the pretrained network
    """

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


def fit_standardization(data: Any, name: str = "standardize") -> keras.layers.Normalization:
    """Returns a ``keras.layers.Normalization`` fitted to ``data``, per feature (last axis).

    "Standardise your inputs" in one call: the layer subtracts the training set's mean and
    divides by its standard deviation, so it belongs in the model (and its saved file) rather
    than in a preprocessing script that must be kept in sync by hand. Fit it on the training
    split only.

    Args:
        data: Training inputs, features on the last axis: a NumPy array, tensor or
            ``tf.data.Dataset`` of batches.
        name: The layer's name.

    Returns:
        An adapted ``keras.layers.Normalization(axis=-1)``.

    Example:
        >>> norm = fit_standardization(x_train)
        >>> model = keras.Sequential([keras.Input(x_train.shape[1:]), norm, keras.layers.Dense(1)])
    """
    layer = keras.layers.Normalization(axis=-1, name=name)
    layer.adapt(data)
    return layer


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TargetStandardizer:
    """Standardises regression targets for training and inverts it in the model.

    Targets in real units (dollars, kelvin) train badly when they are large; the fix is to
    train on ``(y - mean) / std`` *and not forget to invert it* at prediction time.
    ``attach(model)`` appends an inverting ``keras.layers.Normalization`` to the model, so the
    returned model predicts in the target's units and can be saved and reloaded as is.

    Example:
        >>> scaler = TargetStandardizer().fit(y_train)           # y in dollars
        >>> model.fit(x_train, scaler.transform(y_train))        # trains on unit-scale targets
        >>> priced = scaler.attach(model)                        # predicts dollars
        >>> priced.predict(x_test)

    Attributes:
        mean: Per-target mean, shape ``(k,)``; None before :meth:`fit`.
        variance: Per-target variance, shape ``(k,)``; None before :meth:`fit`.
    """

    def __init__(
        self, mean: Sequence[float] | None = None, variance: Sequence[float] | None = None
    ) -> None:
        if (mean is None) != (variance is None):
            raise ValueError(
                f"Give both mean and variance, or neither. Received: mean={mean!r}, "
                f"variance={variance!r}"
            )
        self.mean = None if mean is None else np.atleast_1d(np.asarray(mean, np.float64))
        self.variance = (
            None if variance is None else np.atleast_1d(np.asarray(variance, np.float64))
        )

    def fit(self, y: Any) -> TargetStandardizer:
        """Computes the mean and variance of each target column; returns self."""
        y = np.asarray(y, dtype=np.float64)
        cols = y.reshape(len(y), -1)
        if not np.all(np.isfinite(cols)):
            raise ValueError("Targets contain NaN or inf; clean them before fitting.")
        self.mean = cols.mean(axis=0)
        self.variance = cols.var(axis=0)
        return self

    def _std(self) -> np.ndarray:
        if self.mean is None:
            raise ValueError("TargetStandardizer is not fitted yet; call .fit(y_train) first.")
        # Same floor as keras.layers.Normalization, so transform and the in-model inverse agree.
        return np.maximum(np.sqrt(self.variance), keras.config.epsilon())

    def transform(self, y: Any) -> np.ndarray:
        """Returns ``(y - mean) / std`` as float32, in the shape of ``y``."""
        std = self._std()
        y = np.asarray(y, dtype=np.float64)
        out = (y.reshape(len(y), -1) - self.mean) / std
        return out.reshape(y.shape).astype(np.float32)

    def inverse_transform(self, y_standardized: Any) -> np.ndarray:
        """Maps standardised values back to the target's units (NumPy, outside a model)."""
        std = self._std()
        z = np.asarray(y_standardized, dtype=np.float64)
        out = z.reshape(len(z), -1) * std + self.mean
        return out.reshape(z.shape)

    def inverse_layer(self, name: str = "destandardize") -> keras.layers.Normalization:
        """A ``keras.layers.Normalization(invert=True)`` that maps outputs to real units."""
        self._std()  # raises if not fitted
        return keras.layers.Normalization(
            axis=-1, mean=self.mean, variance=self.variance, invert=True, name=name
        )

    def attach(self, model: keras.Model, name: str | None = None) -> keras.Model:
        """Returns a model that runs ``model`` then inverts the standardisation.

        The new model shares ``model``'s layers and weights (training either trains both);
        train ``model`` on :meth:`transform`-ed targets and predict with the returned one.

        Args:
            model: A built single-output model whose last axis has one unit per target.
            name: The new model's name; defaults to ``model.name + "_in_units"``.
        """
        if len(model.outputs) != 1:
            raise ValueError(
                f"attach() needs a single-output model. Received: {len(model.outputs)} outputs."
            )
        units = model.outputs[0].shape[-1]
        if units != len(self._std()):
            raise ValueError(
                f"The model predicts {units} values per sample but the standardizer was "
                f"fitted on {len(self.mean)} target column(s). Received: model {model.name!r}."
            )
        outputs = self.inverse_layer()(model.outputs[0])
        return keras.Model(model.inputs, outputs, name=name or f"{model.name}_in_units")

    def get_config(self) -> dict[str, Any]:
        """Returns the fitted statistics as plain lists (for ``keras.saving``)."""
        return {
            "mean": None if self.mean is None else self.mean.tolist(),
            "variance": None if self.variance is None else self.variance.tolist(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TargetStandardizer:
        return cls(**config)
