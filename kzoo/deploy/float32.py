"""A float32 twin of a model trained under a mixed or low-precision dtype policy.

Exported artifacts compute in float32: ONNX export refuses other policies, and a bfloat16
graph on a phone or in TF Serving is slower or unsupported. :func:`float32_twin` rebuilds the
model from its config with every dtype policy, nested models' included, set to float32 and
copies the weights over; a model that is float32 already comes back as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from kzoo.backend import dtype_policy_scope
from kzoo.errors import ExportError

__all__ = ["float32_twin", "is_float32", "leaf_layers"]

_LOW_PRECISION = {"mixed_bfloat16", "mixed_float16", "bfloat16", "float16"}
_POLICY_CLASSES = {"DTypePolicy", "FloatDTypePolicy"}
_QUANTIZED_CLASSES = {"QuantizedDTypePolicy", "QuantizedFloat8DTypePolicy", "GPTQDTypePolicy"}


def leaf_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer inside ``model``, nested models entered rather than yielded."""
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model) or getattr(layer, "layers", None):
            yield from leaf_layers(layer)
        else:
            yield layer


def is_float32(model: keras.Model) -> bool:
    """Whether every layer computes in float32 and every weight is float32."""
    layers = [model, *leaf_layers(model)]
    policies_ok = all(
        layer.dtype_policy.compute_dtype == "float32"
        and layer.dtype_policy.variable_dtype == "float32"
        for layer in layers
    )
    return policies_ok and all(w.dtype == "float32" for w in model.weights if _is_float(w.dtype))


def float32_twin(model: keras.Model) -> tuple[keras.Model, bool]:
    """The model, computing in float32 with the same weights.

    Args:
        model: A built Keras model, possibly under ``mixed_bfloat16``/``mixed_float16``.

    Returns:
        ``(model, False)`` when it is float32 already, else ``(twin, True)`` where ``twin`` is
        a new model built from the config with float32 policies and the same weight values.

    Raises:
        ExportError: A layer cannot be rebuilt from its config (it names the layer), or the
            rebuilt model's weights do not line up with the original's.
    """
    if is_float32(model):
        return model, False
    config = _as_float32(keras.saving.serialize_keras_object(model))
    try:
        with dtype_policy_scope("float32"):
            twin = keras.saving.deserialize_keras_object(config)
    except Exception as error:  # name the layer that cannot be rebuilt
        raise _rebuild_error(model, error) from error
    source, target = model.weights, twin.weights
    shapes = [tuple(w.shape) for w in source], [tuple(w.shape) for w in target]
    if shapes[0] != shapes[1]:
        raise ExportError(
            f"the float32 copy of {model.name!r} has other weights than the model "
            f"({len(target)} vs {len(source)} arrays); its get_config() does not describe it. "
            "Build it under the float32 dtype policy and export that model"
        )
    for src, dst in zip(source, target, strict=True):
        value = keras.ops.convert_to_numpy(src)
        dst.assign(value.astype(np.float32) if _is_float(str(value.dtype)) else value)
    return twin, True


def _is_float(dtype: str) -> bool:
    return "float" in str(dtype)


def _as_float32(node: Any) -> Any:
    """A copy of a serialized config with every dtype policy set to float32."""
    if isinstance(node, list):
        return [_as_float32(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _as_float32(value) for key, value in node.items()}
    inner = node.get("config")
    if node.get("class_name") in _POLICY_CLASSES and isinstance(inner, dict):
        node["config"] = {**inner, "name": "float32"}
    elif node.get("class_name") in _QUANTIZED_CLASSES and isinstance(inner, dict):
        node["config"] = {**inner, "source_name": "float32"}
    dtype = node.get("dtype")
    if isinstance(dtype, str) and dtype in _LOW_PRECISION:  # a policy given as a bare name
        node["dtype"] = "float32"
    return node


def _rebuild_error(model: keras.Model, error: Exception) -> ExportError:
    culprit = None
    for layer in leaf_layers(model):
        try:
            with dtype_policy_scope("float32"):
                keras.saving.deserialize_keras_object(
                    _as_float32(keras.saving.serialize_keras_object(layer))
                )
        except Exception:
            culprit = layer
            break
    what = (
        f"layer {culprit.name!r} ({type(culprit).__name__})"
        if culprit is not None
        else f"model {model.name!r}"
    )
    policy = next(
        (la.dtype_policy.name for la in leaf_layers(model) if la.dtype_policy.name != "float32"),
        model.dtype_policy.name,
    )
    return ExportError(
        f"cannot re-create {what} in float32 to export it (the model computes in {policy}): "
        f"{type(error).__name__}: {error}. Give the layer a "
        "get_config() and register it with @keras.saving.register_keras_serializable, or build "
        "the model under the float32 dtype policy"
    )
