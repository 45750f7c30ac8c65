"""Each training phase's optimizer, with per-group learning rates.

Every phase gets a fresh optimizer built from the user's template (a name or an instance) at
that phase's learning rate, so no optimizer state carries over between phases. Fine-tuning
gives the pretrained variables a fraction of that rate through Keras's own
``keras.optimizers.MultiOptimizer``: one optimizer instance for the new layers, one for the
pretrained ones, assigned by variable path (an ``OptimizerMap``), so the pair saves and
reloads with the model, optimizer state included, on every backend.

Two cases use one optimizer instead: two variables that share a path (a user's head with
layer names the base also has), which paths cannot tell apart, and a template with
``global_clipnorm``, whose norm must span both groups. Then, on TensorFlow and JAX, the
pretrained variables' rate is scaled inside the optimizer's ``update_step`` (exact; not saved
with the model), and torch trains every layer at one rate, saying so.
"""

from __future__ import annotations

import logging
import re
import types
from collections.abc import Sequence
from typing import Any

import keras

from kzoo.errors import TransferError
from kzoo.layers import OneCycle

__all__ = [
    "check_template",
    "fresh_optimizer",
    "group_optimizer",
    "rates_of",
    "scale_learning_rates",
]

logger = logging.getLogger("kzoo")


def check_template(template: Any) -> None:
    """Raise TransferError unless ``template`` is an optimizer name or a plain optimizer."""
    wrappers = (keras.optimizers.LossScaleOptimizer, keras.optimizers.MultiOptimizer)
    if isinstance(template, wrappers):
        raise TransferError(
            f"optimizer must be a plain optimizer, not a {type(template).__name__}: kzoo builds "
            "a fresh one per phase, splits it into per-group rates itself and adds loss scaling "
            "for precision='mixed_float16'; pass the optimizer it wraps. Received: "
            f"optimizer={template!r}"
        )
    if not isinstance(template, str | keras.optimizers.Optimizer):
        raise TransferError(
            f"optimizer must be a name or a keras optimizer. Received: optimizer={template!r}"
        )


def fresh_optimizer(template: Any, lr: float) -> keras.optimizers.Optimizer:
    """A new optimizer like ``template`` (a name or an instance) at learning rate ``lr``."""
    check_template(template)
    if isinstance(template, keras.optimizers.Optimizer):
        config = {**template.get_config(), "learning_rate": lr}
        return type(template).from_config(config)
    return keras.optimizers.get({"class_name": template, "config": {"learning_rate": lr}})


def group_optimizer(
    template: Any,
    lr: float | OneCycle,
    pretrained: Sequence[keras.Variable],
    others: Sequence[keras.Variable],
    ratio: float,
) -> keras.optimizers.Optimizer:
    """One phase's optimizer: ``lr`` for ``others``, ``lr * ratio`` for ``pretrained``.

    A ``keras.optimizers.MultiOptimizer`` over two fresh optimizers built from ``template``,
    the pretrained variables mapped by their paths; a plain optimizer when ``ratio`` is 1.
    """
    if ratio == 1.0 or not pretrained:
        return fresh_optimizer(template, lr)
    paths = {v.path for v in pretrained}
    optimizer = fresh_optimizer(template, lr)
    if paths & {v.path for v in others} or len(paths) < len(pretrained):
        why = "variable paths do not tell pretrained and new layers apart (shared layer names)"
    elif optimizer.global_clipnorm:
        # a MultiOptimizer's optimizers would each clip their own group to the full norm
        why = "global_clipnorm clips all gradients together"
    else:
        slow = fresh_optimizer(template, _scaled(lr, ratio))
        mapping = keras.optimizers.OptimizerMap(
            optimizer, {re.escape(path): slow for path in sorted(paths)}
        )
        return keras.optimizers.MultiOptimizer(mapping, name="kzoo_per_group_rates")
    logger.info("%s: scaling the pretrained rate inside one optimizer", why)
    scale_learning_rates(optimizer, {id(v): ratio for v in pretrained})
    return optimizer


def _scaled(lr: Any, ratio: float) -> Any:
    """``lr * ratio`` for a rate; the same cycle at ``ratio`` times the rate for a OneCycle."""
    return lr.scaled(ratio) if isinstance(lr, OneCycle) else lr * ratio


def rates_of(optimizer: keras.optimizers.Optimizer, variables: Sequence[keras.Variable]) -> dict:
    """Variable path -> the learning rate ``optimizer`` applies to it."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        # the map as the optimizer's public config has it (its own copy is private); those
        # copies are fresh, so a schedule is read at the wrapper's step, not at step 0
        mapping = keras.saving.deserialize_keras_object(optimizer.get_config()["optimizer_map"])
        return {v.path: _rate_at(mapping(v), optimizer.iterations) for v in variables}
    scale = getattr(optimizer, "kzoo_lr_multipliers", {})
    base = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    return {v.path: base * scale.get(id(v), 1.0) for v in variables}


def _rate_at(optimizer: keras.optimizers.Optimizer, step: Any) -> float:
    """``optimizer``'s learning rate at ``step``, for a fixed rate or a schedule."""
    rate = optimizer.get_config()["learning_rate"]  # a number or a serialized schedule
    if isinstance(rate, dict):
        rate = keras.optimizers.schedules.deserialize(rate)(step)
    return float(keras.ops.convert_to_numpy(rate))


def scale_learning_rates(optimizer: keras.optimizers.Optimizer, multipliers: dict) -> None:
    """Gives some variables a learning rate ``multiplier`` times the optimizer's.

    Keras 3 has no per-variable learning rates. On TensorFlow and JAX every variable's update
    goes through ``update_step(gradient, variable, learning_rate)``, and the updates of SGD,
    Adam, AdamW, RMSprop, ... are linear in that rate, so scaling it per variable is exact.
    The method is replaced on this instance rather than in a subclass so that the optimizer
    stays a public Keras class: a saved model reloads with plain ``keras.saving.load_model``
    (the multipliers are a training-time setting and are not saved).
    """
    if keras.backend.backend() not in ("tensorflow", "jax"):
        # Keras' torch optimizers (SGD, Adam, AdamW, RMSprop, ...) update every variable in
        # one fused step that never calls update_step, so there is no per-variable hook.
        logger.warning(
            "per-layer learning rates need the TensorFlow or JAX backend: Keras' %s "
            "optimizers update all variables in one fused step. Every layer trains at %s; "
            "pass pretrained_lr_multiplier=1.0 to silence this, or use "
            "KERAS_BACKEND=tensorflow or jax. Received: pretrained_lr_multiplier=%s",
            keras.backend.backend(),
            optimizer.get_config()["learning_rate"],
            ", ".join(sorted({f"{m:g}" for m in multipliers.values() if m != 1.0})),
        )
        return
    plain_update = optimizer.update_step
    by_id = dict(multipliers)
    keyed: dict[Any, float] = {}

    def update_step(self, gradient, variable, learning_rate):
        if not keyed:  # variable keys are backend-specific: ask the optimizer itself
            for v in self._trainable_variables:
                keyed[self._var_key(v)] = by_id.get(id(v), 1.0)
        scale = keyed.get(self._var_key(variable), 1.0)
        if scale != 1.0:
            learning_rate = learning_rate * scale
        return plain_update(gradient, variable, learning_rate)

    optimizer.update_step = types.MethodType(update_step, optimizer)
    optimizer.kzoo_lr_multipliers = by_id
