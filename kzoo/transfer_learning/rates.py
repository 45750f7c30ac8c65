"""Each training phase's optimizer, with per-group learning rates.

Every phase gets a fresh optimizer built from the user's template (a name or an instance) at
that phase's learning rate, so no optimizer state carries over between phases. Fine-tuning
then gives the pretrained variables a fraction of that rate by patching the instance's
``update_step`` (Keras 3 has no per-variable learning rates); the multipliers stay on the
optimizer as ``kzoo_lr_multipliers`` so that ``Transfer.learning_rates`` can report them.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import keras

from kzoo.errors import TransferError

__all__ = ["fresh_optimizer", "scale_learning_rates"]

logger = logging.getLogger("kzoo")


def fresh_optimizer(template: Any, lr: float) -> keras.optimizers.Optimizer:
    if isinstance(template, keras.optimizers.Optimizer):
        config = {**template.get_config(), "learning_rate": lr}
        return type(template).from_config(config)
    if isinstance(template, str):
        return keras.optimizers.get({"class_name": template, "config": {"learning_rate": lr}})
    raise TransferError(
        f"optimizer must be a name or a keras optimizer. Received: optimizer={template!r}"
    )


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
