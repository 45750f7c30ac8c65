"""Assign converted arrays to a Keras model by layer name, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kzoo.converters.slots import flat_layers
from kzoo.errors import ConversionError

__all__ = ["assign"]


def assign(
    model: Any, arrays: dict[str, list[np.ndarray]], *, skip_missing: Sequence[str] = ()
) -> None:
    """Set each layer's weights from ``arrays[layer.name]`` with strict shape checks.

    Every problem is collected first; nothing is assigned unless everything fits, so a failed
    call leaves the model as it was.

    Args:
        model: A built Keras model (nested models are walked).
        arrays: Arrays keyed by layer name, in ``layer.weights`` order.
        skip_missing: Layer names that may keep their own weights (e.g. a new head).

    Raises:
        ConversionError: Lists every model layer with no arrays, every array with no layer
            and every count or shape that differs (expected vs got).
    """
    problems = []
    plan = []
    seen = set()
    for layer in flat_layers(model):
        if not layer.weights:
            continue
        seen.add(layer.name)
        if layer.name not in arrays:
            if layer.name not in skip_missing:
                problems.append(f"model layer {layer.name!r} has no arrays")
            continue
        given = arrays[layer.name]
        expected = [tuple(int(d) for d in w.shape) for w in layer.weights]
        got = [tuple(np.shape(a)) for a in given]
        if expected != got:
            problems.append(f"layer {layer.name!r}: expected shapes {expected}, got {got}")
        else:
            plan.append((layer, given))
    extra = [name for name in arrays if name not in seen]
    if extra:
        problems.append(f"arrays for layers the model does not have: {extra}")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ConversionError(
            f"the weights do not fit the model; nothing was assigned ({len(problems)} "
            f"problem(s)):\n{listing}"
        )
    for layer, given in plan:
        layer.set_weights([np.asarray(a) for a in given])
