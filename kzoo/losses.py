"""Losses computed on the features of a pretrained network: perceptual and style losses.

VGG-19 is still the standard perceptual-loss network (Johnson et al. 2016; SRGAN; LPIPS): two
images are compared through what the network's layers see, not pixel by pixel.

* :func:`gram_matrix` - channel correlations of a feature map, the texture statistic of
  Gatys et al. (2015);
* :class:`PerceptualLoss` - feature distance at chosen layers, with per-layer weights;
* :class:`StyleLoss` - Gram-matrix distance at chosen layers (style, not content);
* :func:`total_variation` - neighbouring-pixel differences, the smoothness prior of style
  transfer.

Both losses take images (RGB 0-255, channels last) as ``y_true`` and ``y_pred``, so they fit
``model.compile(loss=...)`` for an image-to-image model; the feature network is a zoo name
(``"vgg19"``, loaded with its weights and preprocessing, frozen) or a Keras model, whose
weights are read, not trained, and whose layers stay as trainable as they were. Features are
compared in float32, so a ``mixed_float16`` network works too. They are registered Keras
objects: a compiled model that uses them saves and reloads as ``.keras``. Everything is
``keras.ops``: TensorFlow, JAX and torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from kzoo.zoo.extractor import features
from kzoo.zoo.names import DEFAULT

__all__ = ["PerceptualLoss", "StyleLoss", "gram_matrix", "total_variation"]

logger = logging.getLogger("kzoo")

_PACKAGE = "kzoo"
#: Gatys et al.'s style layers: the first convolution of each VGG block.
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
#: Johnson et al.'s perceptual layers (their relu2_2 .. relu4_3, as VGG-19 names them).
PERCEPTUAL_LAYERS = ("block2_conv2", "block3_conv4", "block4_conv4")


def gram_matrix(feature_map: Any) -> Any:
    """Channel correlations ``G[c, d] = sum_xy F[x, y, c] F[x, y, d] / (H W)`` per image.

    Dividing by the number of positions makes the statistic independent of the image size.
    Computed in float32 at least: float16 features (a ``mixed_float16`` network) overflow
    when summed over a few thousand positions.

    Args:
        feature_map: ``(batch, height, width, channels)``.

    Returns:
        ``(batch, channels, channels)``, float32 (float64 for float64 features).
    """
    feature_map = as_float32(feature_map)
    shape = keras.ops.shape(feature_map)
    flat = keras.ops.reshape(feature_map, (shape[0], -1, shape[-1]))
    positions = keras.ops.cast(keras.ops.shape(flat)[1], flat.dtype)
    return keras.ops.einsum("bpc,bpd->bcd", flat, flat) / positions


def as_float32(tensor: Any) -> Any:
    """``tensor`` as float32, unless it is float64 already: reductions need the range.

    A network under the ``mixed_float16`` policy returns float16 features; their squares and
    sums overflow float16 (its largest value is 65504).
    """
    tensor = keras.ops.convert_to_tensor(tensor)
    if keras.backend.standardize_dtype(tensor.dtype) == "float64":
        return tensor
    return keras.ops.cast(tensor, "float32")


def total_variation(images: Any) -> Any:
    """Squared differences to the next pixel down plus to the right, averaged, on a 0-1 scale.

    Args:
        images: ``(batch, height, width, channels)`` in 0-255.

    Returns:
        ``(batch,)``.
    """
    images = as_float32(images)  # squared 0-255 differences overflow float16
    down = images[:, 1:, :-1, :] - images[:, :-1, :-1, :]
    right = images[:, :-1, 1:, :] - images[:, :-1, :-1, :]
    return keras.ops.mean(keras.ops.square(down) + keras.ops.square(right), axis=(1, 2, 3)) / (
        255.0**2
    )


class _FeatureLoss(keras.losses.Loss):
    """What the two losses share: a feature network, read and not trained, and weighted layers."""

    default_layers: tuple[str, ...] = ()

    def __init__(
        self,
        layers: Sequence[str] | Mapping[str, float] | None = None,
        *,
        model: str | keras.Model = "vgg19",
        weights: str | os.PathLike[str] | None = DEFAULT,
        manifest: str | os.PathLike[str] | None = None,
        name: str | None = None,
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name or type(self).__name__.lower(), reduction=reduction, dtype=dtype)
        if isinstance(layers, Mapping):
            self.layer_weights = {str(k): float(v) for k, v in layers.items()}
            negative = {k: v for k, v in self.layer_weights.items() if not v >= 0}
            if negative:  # a negative (or NaN) weight rewards the distance it should penalise
                raise ValueError(
                    f"{type(self).__name__}'s layer weights must be 0 or more. Received: {negative}"
                )
        else:
            names = self.default_layers if layers is None else tuple(layers)
            self.layer_weights = {n: 1.0 / len(names) for n in names} if names else {}
        if not self.layer_weights:
            raise ValueError(f"{type(self).__name__} needs at least one layer. Received: []")
        self.model_spec = model
        self.weights = weights if weights is None else str(weights)
        self.manifest = None if manifest is None else str(manifest)
        self.feature_model = features(
            model, {layer: layer for layer in self.layer_weights}, weights=weights,
            manifest=manifest, name=f"{self.name}_features",
        )  # fmt: skip
        if isinstance(model, str):
            # the loss's own network; a user's model shares its layers with the taps, and
            # freezing them would freeze the user's model (Keras does not train a loss's
            # variables anyway: they are not the compiled model's)
            self.feature_model.trainable = False

    def call(self, y_true: Any, y_pred: Any) -> Any:
        true = self.feature_model(y_true, training=False)
        pred = self.feature_model(y_pred, training=False)
        total = 0.0
        for layer, weight in self.layer_weights.items():
            target = keras.ops.stop_gradient(as_float32(true[layer]))  # a target, not learnt
            total = total + weight * self.distance(target, as_float32(pred[layer]))
        return total

    def distance(self, true: Any, pred: Any) -> Any:  # per image, (batch,)
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        model = self.model_spec
        if not isinstance(model, str):
            logger.warning(
                "%s is saved with its feature network's architecture but not its weights; "
                "after loading, set them with loss.feature_model.set_weights(...), or give "
                "the loss a zoo name (model='vgg19') to have them loaded again",
                self.name,
            )
            model = keras.saving.serialize_keras_object(model)
        config.update(
            {
                "layers": dict(self.layer_weights),
                "model": model,
                "weights": self.weights,
                "manifest": self.manifest,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> _FeatureLoss:
        config = dict(config)
        if isinstance(config.get("model"), dict):
            config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PerceptualLoss(_FeatureLoss):
    """Mean squared feature distance at chosen layers of a network, weighted per layer.

    ``loss(y_true, y_pred) = sum_l w_l * mean((F_l(y_true) - F_l(y_pred))**2)``, per image.

    Args:
        layers: Layer names (equal weights summing to 1), or a mapping name -> weight.
            Default: ``block2_conv2``, ``block3_conv4``, ``block4_conv4``.
        model: A zoo name (``"vgg19"``) or a Keras model; layers may sit in nested models.
        weights: The zoo weights tag (None: random weights, for tests).
        manifest: A user manifest for a zoo name (a path, so that the loss can be saved).
        name, reduction, dtype: As for ``keras.losses.Loss``.

    Example:
        >>> upscaler.compile("adam", loss=kzoo.losses.PerceptualLoss())
    """

    default_layers = PERCEPTUAL_LAYERS

    def distance(self, true: Any, pred: Any) -> Any:
        return keras.ops.mean(keras.ops.square(true - pred), axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StyleLoss(_FeatureLoss):
    """Gram-matrix distance at chosen layers: same textures, wherever they are in the image.

    ``loss(y_true, y_pred) = sum_l w_l * mean((G_l(y_true) - G_l(y_pred))**2)``, per image,
    with :func:`gram_matrix` normalised by the number of positions.

    Args:
        layers: Layer names (equal weights summing to 1), or a mapping name -> weight.
            Default: the first convolution of each VGG block (Gatys et al.).
        model, weights, manifest, name, reduction, dtype: As for :class:`PerceptualLoss`.
    """

    default_layers = STYLE_LAYERS

    def distance(self, true: Any, pred: Any) -> Any:
        return keras.ops.mean(keras.ops.square(gram_matrix(true) - gram_matrix(pred)), axis=(1, 2))
