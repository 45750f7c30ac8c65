"""Standardise inputs and regression targets, with the statistics kept in the model.

* :func:`fit_standardization` - zero-mean, unit-variance inputs, fitted on the training data
  (a thin helper over ``keras.layers.Normalization``).
* :class:`TargetStandardizer` - standardise regression targets for training and invert the
  standardisation in the model, so predictions come back in the target's units.

Their public home is :mod:`kzoo.layers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

__all__ = ["TargetStandardizer", "fit_standardization"]

_PACKAGE = "kzoo"


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

    # Saved configs record the class's module next to its registered name; keep the public
    # home, kzoo.layers, so files written before and after the package split are identical.
    __module__ = "kzoo.layers"

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
        # one input passed as a tensor, not a list of one: Keras warns on every call otherwise
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        return keras.Model(inputs, outputs, name=name or f"{model.name}_in_units")

    def get_config(self) -> dict[str, Any]:
        """Returns the fitted statistics as plain lists (for ``keras.saving``)."""
        return {
            "mean": None if self.mean is None else self.mean.tolist(),
            "variance": None if self.variance is None else self.variance.tolist(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TargetStandardizer:
        return cls(**config)
