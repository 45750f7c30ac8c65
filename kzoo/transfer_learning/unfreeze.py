"""Which layers of a transfer base fine-tuning trains.

:func:`select_layers` turns ``fine_tune(unfreeze=...)`` (``"all"``, a number of top blocks, or
the first layer to train) into base layer names, counting ``blockN_`` (VGG) and ``convN_``
(ResNet stages) name prefixes as blocks, or each weighted layer as one where names carry none
(a BatchNormalization without a prefix belongs to the block before it).
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
    start = next(i for i, la in enumerate(layers) if _block_of(la) == first)  # its first layer
    return names[start:]


# VGG's blocks (block5_conv1) and ResNet's stages (conv5_block3_1_conv: stage conv5)
_BLOCK = re.compile(r"(block\d+|conv\d+)_")


def _block_of(layer: keras.layers.Layer, previous: str | None = None) -> str | None:
    match = _BLOCK.match(layer.name)
    if match:
        return match.group(1)
    if isinstance(layer, keras.layers.BatchNormalization) and previous is not None:
        return previous  # normalises the block before it (ResNet v2's post_bn)
    return layer.name if layer.weights else None


def _blocks(layers: list[keras.layers.Layer]) -> list[str]:
    blocks: list[str] = []
    for layer in layers:
        block = _block_of(layer, blocks[-1] if blocks else None)
        if block is not None and block not in blocks:
            blocks.append(block)
    return blocks
