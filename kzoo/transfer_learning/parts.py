"""The parts of a transfer model: the cut base, the new head and their training defaults.

The base is a zoo model loaded without its top or a Keras model, cut at a named layer or at
the head boundary (the layer before the first Flatten or global pooling, else before the
trailing Dense/Dropout layers); the head is built from the DSL on the base's output shape,
always in float32. This module also checks the requested input shape against the base, picks
the default loss and metrics from the head's activation, and the default precision from
whether the backend sees a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kzoo.backend import dtype_policy_scope
from kzoo.builder import build
from kzoo.errors import KzooError, TransferError
from kzoo.zoo import load, load_manifest, sources

__all__ = [
    "BOUNDARY_LAYERS",
    "cut_base",
    "default_loss",
    "has_gpu",
    "input_shape_of",
    "resolve_base",
    "resolve_head",
    "weights_info",
]

# Layers that start a classifier: the default cut keeps everything before the first of them.
BOUNDARY_LAYERS = (
    keras.layers.Flatten,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
_TOP_LAYERS = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation)


def resolve_base(base, weights, input_shape, precision, manifest) -> keras.Model:
    if isinstance(base, str):
        with dtype_policy_scope(precision):
            return load(
                base, weights=weights, include_top=False, preprocessing=True,
                input_shape=None if input_shape is None else tuple(input_shape),
                manifest=manifest,
            )  # fmt: skip
    if isinstance(base, keras.Model):
        if not isinstance(base, keras.Sequential) and not hasattr(base, "_nodes_by_depth"):
            raise TransferError(
                "the base must be a Functional or Sequential model (a subclassed model has no "
                f"layer graph to cut). Received: base={type(base).__name__}"
            )
        return base
    raise TransferError(f"base must be a zoo model name or a keras.Model. Received: base={base!r}")


def cut_base(model: keras.Model, cut: str | None) -> keras.Model:
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    names = [la.name for la in layers]
    if not layers:
        raise TransferError(f"the base {model.name!r} has no layers to transfer")
    cut = cut or _default_cut(layers)
    if cut not in names:
        raise TransferError(
            f"cut={cut!r} is not a layer of {model.name!r}; valid cut points (the last layer "
            f"to keep): {', '.join(names)}. Received: cut={cut!r}"
        )
    if cut == names[-1]:
        return model
    # one input passed as a tensor, not a list of one: Keras warns on every call otherwise
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, model.get_layer(cut).output, name=f"{model.name}_base")


def _default_cut(layers: list[keras.layers.Layer]) -> str:
    for i, layer in enumerate(layers):
        if isinstance(layer, BOUNDARY_LAYERS) and i > 0:
            return layers[i - 1].name
    end = len(layers)
    while end > 1 and isinstance(layers[end - 1], _TOP_LAYERS):
        end -= 1
    if not any(isinstance(la, (keras.layers.Dense, keras.layers.Dropout)) for la in layers[end:]):
        end = len(layers)  # only activations at the end: a ResNet's last block, not a head
    return layers[end - 1].name


def input_shape_of(base: keras.Model, requested: Sequence[int] | None) -> tuple:
    expected = tuple(base.inputs[0].shape[1:])
    if requested is None:
        return expected
    requested = tuple(int(d) for d in requested)
    fits = len(expected) == len(requested) and all(
        e is None or e == r for e, r in zip(expected, requested, strict=True)
    )
    if not fits:
        raise TransferError(
            f"the base takes inputs of shape {expected}; build or load it at the shape you "
            "want (kzoo.load(name, input_shape=...) or kzoo.build(spec, input_shape=...)). "
            f"Received: input_shape={requested}"
        )
    return requested


def resolve_head(head: str | keras.Model, feature_shape: tuple) -> keras.Model:
    if isinstance(head, keras.Model):
        return head
    if not isinstance(head, str):
        raise TransferError(f"head must be a DSL string or a keras.Model. Received: head={head!r}")
    # The head is tiny next to the base, so it always runs in float32: softmax included.
    with dtype_policy_scope("float32"):
        try:
            return build(head, input_shape=feature_shape, prefix="head_", name="head")
        except KzooError:
            raise
        except Exception as error:
            raise TransferError(
                f"cannot build the head {head!r} on the base's output shape {feature_shape}: "
                f"{error}. Received: head={head!r}"
            ) from error


def default_loss(head: keras.Model, loss: Any, metrics: Any) -> tuple[Any, Any]:
    activation = getattr(getattr(head.layers[-1], "activation", None), "__name__", "linear")
    units = head.output.shape[-1]
    defaults = {
        "softmax": ("sparse_categorical_crossentropy", ["accuracy"]),
        "sigmoid": ("binary_crossentropy", ["accuracy"]),
    }
    default_loss, default_metrics = defaults.get(activation, ("mean_squared_error", []))
    if activation == "softmax" and units == 1:
        raise TransferError("a softmax head over one unit always outputs 1; use FC1+sigmoid")
    return (loss or default_loss), (default_metrics if metrics is None else list(metrics))


def _gpu_jax() -> bool:
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


def _gpu_tensorflow() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _gpu_torch() -> bool:
    import torch

    return torch.cuda.is_available()


_GPU_PROBES = {"jax": _gpu_jax, "tensorflow": _gpu_tensorflow, "torch": _gpu_torch}


def has_gpu() -> bool:
    probe = _GPU_PROBES.get(keras.backend.backend())
    return bool(probe and probe())


def weights_info(base: Any, weights: str | None, manifest: Any) -> dict[str, Any] | None:
    """Where a zoo base's weights came from (source, files, hashes, licence), for the report.

    None for a Keras model, random weights, or a name the manifest does not describe.
    """
    if not isinstance(base, str) or weights is None:
        return None
    if base.startswith("hf://"):
        return {"source": base, "format": "timm safetensors from the Hugging Face Hub"}
    model, _, tag = base.partition(".")
    try:
        tag = tag or (None if weights == "default" else weights)
        tag = tag or load_manifest(manifest).model(model).default_weights
        (source,) = sources(model, tag, manifest)
    except (KzooError, ValueError):
        return None
    info: dict[str, Any] = {
        "source": source.qualified_name,
        "format": source.format,
        "licence": source.license or "not stated",
    }
    for variant, entry in source.files.items():
        info[f"{variant} file"] = entry.urls[0] if entry.urls else "imported"
        algorithm, digest = entry.pinned or ("hash", "not pinned")
        info[f"{variant} {algorithm}"] = digest
    return info
