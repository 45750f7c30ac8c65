"""Architecture strings -> Keras models.

All decisions (names, BN placement, head, padding, shapes, the wiring of residual and
branching graphs) are made in pure Python by :func:`kzoo.dsl.plan`; this module only turns
each planned step into one Keras layer called on the tensors of the steps it names: the
``keras.layers`` class a built-in token names as data (its planned parameters are the
constructor's arguments), or a user token's own ``build`` function. The way back,
:func:`kzoo.to_string`, lives in :mod:`kzoo.dsl.writer`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kzoo.dsl import Step, plan
from kzoo.errors import SpecError

if TYPE_CHECKING:
    import keras

__all__ = ["build", "make_layer"]

logger = logging.getLogger("kzoo")


def build(
    spec: str,
    input_shape: tuple[int | None, ...] | None = None,
    *,
    head: str | None = None,
    padding: str = "same",
    dialect: str | None = None,
    bn: bool = False,
    dropout: float | None = None,
    activation: str = "relu",
    include_top: bool = True,
    pooling: str | None = None,
    preprocessing: keras.layers.Layer | None = None,
    prefix: str = "",
    name: str | None = None,
) -> keras.Model:
    """Build a Keras model from an architecture string.

    Args:
        spec: e.g. ``"20C5-MP2-50C5-MP2-FC256-FC10"``, ``"28x28x1:FC64-FC10"`` or a named
            architecture (``"vgg19"``, see :func:`kzoo.list_architectures`).
        input_shape: Keras order (height, width, channels); needed unless the spec has a header
            or is a named architecture. A header and a different ``input_shape`` is an error.
        head: Activation of the last dense layer when the spec does not say (default softmax).
        padding: Default padding of convolutions, ``"same"`` (default) or ``"valid"``.
        dialect: ``"ciresan"`` reads the literature's meaning: valid convolutions.
        bn: BatchNormalization after every hidden conv/dense, before its activation.
        dropout: Dropout rate after every hidden dense layer.
        activation: Activation of hidden conv/dense layers.
        include_top: False drops the flatten (or global pooling) and every layer after it.
        pooling: With ``include_top=False``: ``"avg"`` or ``"max"`` global pooling at the end.
        preprocessing: A layer applied right after the input.
        prefix: Prepended to every layer name.
        name: Model name (default: the architecture's name, or ``"kzoo"``).

    Returns:
        A functional ``keras.Model`` with keras.applications layer names.

    Raises:
        SpecError: For a malformed spec or a layer that cannot take its input.
        ValueError: For a bad option.
    """
    import keras

    steps = plan(
        spec,
        input_shape,
        head=head,
        padding=padding,
        dialect=dialect,
        bn=bn,
        dropout=dropout,
        activation=activation,
        include_top=include_top,
        pooling=pooling,
        prefix=prefix,
    )
    inputs = keras.Input(shape=steps.input_shape, name=steps.input_name)
    x = preprocessing(inputs) if preprocessing is not None else inputs
    tensors = {steps.input_name: x}
    for step in steps.steps:
        args = [tensors[name] for name in step.inputs] if step.inputs else [x]
        try:  # a layer's options are checked by Keras when it is made and when it is called
            x = tensors[step.name] = make_layer(step)(args[0] if len(args) == 1 else args)
        except SpecError:
            raise
        except (ValueError, TypeError, ImportError) as problem:
            raise SpecError(
                f"cannot build {step.label!r} as {step.name!r}: {problem}",
                steps.text,
                step.span or (0, len(steps.text)),
                help="check the layer's options",
            ) from problem
    model = keras.Model(inputs, x, name=name or steps.name or "kzoo")
    logger.info(
        "built %s: %d layers, %d params", model.name, len(model.layers), model.count_params()
    )
    return model


def make_layer(step: Step) -> keras.layers.Layer:
    """The Keras layer for one planned step.

    Args:
        step: A step of a :class:`kzoo.dsl.Plan`: a built-in token becomes
            ``keras.layers.<token.keras_class>(**step.params)``, a user token calls its
            ``build(step.params)``.
    """
    token = step.token
    if token.keras_class is None:
        return token.build(step.params)
    from keras import layers

    params = {
        key: _initializer(value) if key.endswith("_initializer") else value
        for key, value in step.params.items()
    }
    return getattr(layers, token.keras_class)(**params)


def _initializer(value: Any) -> Any:
    if value is None:
        return "glorot_uniform"
    if value == "gabor":
        from kzoo.layers import GaborInitializer

        return GaborInitializer()
    import keras

    return keras.initializers.get(value)
