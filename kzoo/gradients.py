"""Gradients with respect to a model's *input*, compiled once, on every Keras backend.

Style transfer and fooling images run gradient descent on the image, not the weights. Keras 3
has no backend-independent gradient API (``keras.ops`` covers the forward pass), so this is
the one module that dispatches on the backend, each branch the backend's own idiom:

* TensorFlow: a ``tf.function`` around a ``GradientTape``;
* JAX: ``jax.jit(jax.value_and_grad(...))`` of a pure function, the models' variables passed
  in through a ``keras.StatelessScope`` (so they are arguments, not constants baked into the
  compiled program);
* torch: autograd, eagerly.

:func:`input_gradient` returns ``step(x) -> (value, gradient, aux)``; the objective is any
function of the input written with ``keras.ops``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

__all__ = ["Objective", "input_gradient"]

#: ``objective(x) -> (scalar value, aux)``: what to differentiate, and anything to report.
Objective = Callable[[Any], tuple[Any, Any]]


def input_gradient(
    objective: Objective, models: Sequence[keras.Model], *, compile: bool = True
) -> Callable[[Any], tuple[Any, Any, Any]]:
    """A function ``step(x) -> (value, d value / d x, aux)``, compiled for the backend.

    Args:
        objective: ``objective(x) -> (value, aux)``, ``value`` a scalar tensor, written with
            ``keras.ops`` and the Keras ``models`` (frozen: their weights are read, not
            trained).
        models: Every Keras model the objective calls (JAX needs their variables).
        compile: Trace and compile once (``tf.function``, ``jax.jit``); False runs eagerly.

    Returns:
        ``step``: takes a float tensor of the input's shape; returns backend tensors.

    Raises:
        NotImplementedError: On a backend other than TensorFlow, JAX or torch.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(objective, compile)
    if backend == "jax":
        return _jax(objective, models, compile)
    if backend == "torch":
        return _torch(objective)
    raise NotImplementedError(
        "input gradients are available on the tensorflow, jax and torch backends. "
        f"Received: backend={backend!r}"
    )


def _tensorflow(objective: Objective, compile: bool):
    import tensorflow as tf

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value, aux = objective(x)
        return value, tape.gradient(value, x), aux

    return tf.function(step, reduce_retracing=True) if compile else step


def _jax(objective: Objective, models: Sequence[keras.Model], compile: bool):
    import jax

    variables = [v for model in models for v in model.variables]

    def pure(x, values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return objective(x)

    gradient = jax.value_and_grad(pure, has_aux=True)
    gradient = jax.jit(gradient) if compile else gradient

    def step(x):
        (value, aux), grad = gradient(x, [v.value for v in variables])
        return value, grad, aux

    return step


def _torch(objective: Objective):
    import torch

    def step(x):
        x = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        value, aux = objective(x)
        (grad,) = torch.autograd.grad(value, [x])
        return value.detach(), grad, aux

    return step
