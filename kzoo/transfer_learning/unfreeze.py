"""Which layers of a transfer base fine-tuning trains.

:func:`select_layers` turns ``fine_tune(unfreeze=...)`` (``"all"``, a number of top blocks, or
the first layer to train) into base layer names, counting ``blockN_`` name prefixes as blocks, or
each weighted layer as one where names carry none.
"""

from __future__ import annotations

import re

import keras

from kzoo.errors import TransferError

__all__ = ["select_layers"]


def select_layers(base: keras.Model, unfreeze: str | int) -> list[str]:
    """The names of the base layers that ``fine_tune(unfreeze=...)`` trains.

    Args:
        base: The cut base model.
        unfreeze: ``"all"``, the number of top blocks, or the first layer to unfreeze.

    Returns:
        Layer names, in model order.

    Raises:
        TransferError: An unknown layer name or a block count out of range.
    """
    layers = [la for la in base.layers if not isinstance(la, keras.layers.InputLayer)]
    names = [la.name for la in layers]
    if unfreeze == "all":
        return names
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, (int, str)):
        raise TransferError(
            f"unfreeze must be 'all', a number of blocks or a layer name. Received: {unfreeze!r}"
        )
    if isinstance(unfreeze, str):
        if unfreeze not in names:
            raise TransferError(
                f"unfreeze={unfreeze!r} is not a layer of the base; valid names: "
                f"{', '.join(names)}. Received: unfreeze={unfreeze!r}"
            )
        return names[names.index(unfreeze) :]
    blocks = _blocks(layers)
    if not 1 <= unfreeze <= len(blocks):
        raise TransferError(
            f"unfreeze counts blocks from the top and the base has {len(blocks)} "
            f"({', '.join(blocks)}). Received: unfreeze={unfreeze}"
        )
    first = blocks[-unfreeze]
    start = next(i for i, la in enumerate(layers) if _block_of(la) == first)
    return names[start:]


def _block_of(layer: keras.layers.Layer) -> str | None:
    match = re.match(r"(block\d+)_", layer.name)
    if match:
        return match.group(1)
    return layer.name if layer.weights else None


def _blocks(layers: list[keras.layers.Layer]) -> list[str]:
    blocks: list[str] = []
    for layer in layers:
        block = _block_of(layer)
        if block is not None and block not in blocks:
            blocks.append(block)
    return blocks
