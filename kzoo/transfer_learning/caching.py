"""Phase 1 on cached base features: when that is safe, and the pieces that do it.

A frozen base gives the same output for the same input, so the head can train on features
computed in one forward pass instead of running the base every epoch, but only when every
epoch sees the same data. :func:`can_cache` checks that (no random augmentation or base
layers, arrays or a finite tf.data pipeline free of random ops, no ``steps_per_epoch``) and
says why not; :class:`OnFullModel` points the user's callbacks at the full model while only
the head trains. :mod:`.feature_cache` computes the features and feeds them to the head;
``Transfer`` puts them together.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kzoo.errors import TransferError
from kzoo.taps import walk

__all__ = ["HEAD_STEPS_PER_EXECUTION", "OnFullModel", "can_cache", "unpack_validation"]

logger = logging.getLogger("kzoo")

# Ops in a tf.data graph that make its elements differ between passes (or hide what they do).
_RANDOM_TF_OPS = re.compile(r"Random|Multinomial|Rng|TruncatedNormal|SampleDistorted|PyFunc")
HEAD_STEPS_PER_EXECUTION = 16


def can_cache(
    base: keras.Model,
    augmentation: keras.layers.Layer | None,
    x: Any,
    validation_data: Any,
    setting: Any,
    fit_kwargs: dict,
) -> bool:
    """Whether the frozen phase may train on cached features (logs or raises why not).

    Args:
        base: The frozen base.
        augmentation: The layers in front of it, or None.
        x: The training inputs; ``validation_data`` the validation data.
        setting: ``"auto"`` (decide), ``True`` or ``"disk"`` (insist: raise if unsafe) or
            ``False``.
        fit_kwargs: The other ``fit`` arguments.

    Raises:
        TransferError: ``setting=True`` and caching would change the training.
    """
    if setting is False:
        return False
    reasons = _random_stages(base, augmentation)
    reasons += [r for r in (_input_problem(x), _input_problem(validation_data)) if r]
    if "steps_per_epoch" in fit_kwargs:
        reasons.append("steps_per_epoch is set (epochs are not passes over the data)")
    if not reasons:
        logger.info("frozen phase: caching the base's features (one forward pass)")
        return True
    message = "cannot cache the base's features: " + "; ".join(reasons)
    if setting is True or setting == "disk":
        raise TransferError(
            f"{message}. Cached features would silently drop the randomness. Use "
            f"cache_features='auto' or False. Received: cache_features={setting!r}"
        )
    logger.warning("%s; training the frozen phase on the full model instead", message)
    return False


def _random_stages(base: keras.Model, augmentation: keras.layers.Layer | None) -> list[str]:
    reasons = []
    if augmentation is not None and _random_layers(augmentation):
        names = ", ".join(_random_layers(augmentation))
        reasons.append(f"the inputs are augmented by random layers ({names})")
    if _random_layers(base):  # fit() runs them in training mode, predict() does not
        names = ", ".join(_random_layers(base))
        reasons.append(f"the base has random layers ({names})")
    return reasons


def _random_layers(model: keras.layers.Layer) -> list[str]:
    """Names of layers that draw random numbers (they hold a keras.random.SeedGenerator)."""
    found = []
    for layer in walk(model):
        if any(isinstance(v, keras.random.SeedGenerator) for v in vars(layer).values()):
            found.append(layer.name)
    return found


def _is_tf_dataset(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec")


def _input_problem(x: Any) -> str | None:
    """Why ``x`` may differ between epochs, or None when every pass yields the same data."""
    if x is None or isinstance(x, (np.ndarray, list, dict)) or hasattr(x, "__array__"):
        return None
    if isinstance(x, tuple):
        return next((p for p in map(_input_problem, x) if p), None)
    if _is_tf_dataset(x):
        return _tf_dataset_problem(x)
    return (
        f"inputs of type {type(x).__name__} (a generator or PyDataset) cannot be proven to "
        "yield the same data every epoch"
    )


def _tf_dataset_problem(dataset: Any) -> str | None:
    import tensorflow as tf

    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        return "the dataset repeats forever"
    try:
        # tf.data has no public way to inspect a pipeline; its serialized graph lists every
        # op, those of map() functions included (in the function library).
        graph = tf.compat.v1.GraphDef()
        graph.ParseFromString(dataset._as_serialized_graph().numpy())
    except Exception:
        return "the dataset's pipeline cannot be inspected"
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    random_ops = sorted(op for op in ops if _RANDOM_TF_OPS.search(op))
    if random_ops:
        return f"the dataset applies random or opaque ops ({', '.join(random_ops)})"
    return None


def unpack_validation(validation_data: Any) -> tuple[Any, Any]:
    if isinstance(validation_data, tuple):
        return validation_data[0], validation_data[1:]
    return validation_data, None


class OnFullModel(keras.callbacks.Callback):
    """Runs a user callback against the full model while only the head trains.

    On cached features Keras fits the head sub-model, but checkpoints, early stopping with
    weight restoring and diagnostics must see the model the user will save.
    """

    def __init__(self, callback: keras.callbacks.Callback, full_model: keras.Model) -> None:
        super().__init__()
        self.callback = callback
        self.full_model = full_model
        callback.set_model(full_model)

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.callback.set_model(self.full_model)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.callback.set_params(params)

    def _forward(self, hook: str, *args: Any) -> None:
        _ = self.model  # on JAX this copies the trained head state back into its variables
        getattr(self.callback, hook)(*args)
        if self.full_model.stop_training:
            self.model.stop_training = True


def _forwarding(hook: str) -> Callable:
    def method(self, *args: Any, **kwargs: Any) -> None:
        self._forward(hook, *args, *kwargs.values())

    method.__name__ = hook
    return method


for _hook in (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end",
):  # fmt: skip
    setattr(OnFullModel, _hook, _forwarding(_hook))
