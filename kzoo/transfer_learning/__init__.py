"""Transfer learning in a few lines: cut a pretrained base, freeze it, add a DSL head, train twice.

>>> clf = kzoo.transfer("vgg19", head="GAP-FC256+D0.5-FC5", input_shape=(160, 160, 3))
>>> clf.fit(train_ds, validation_data=val_ds, frozen_epochs=3, fine_tune_epochs=5)

:mod:`.training` holds :func:`transfer` and :class:`Transfer` (the two phases); :mod:`.parts`
cuts the base and builds the head; :mod:`.caching` decides when the frozen phase may train on
cached features; :mod:`.unfreeze` picks the layers fine-tuning trains; :mod:`.rates` makes each
phase's optimizer with its per-group learning rates. Importing this package imports Keras.
"""

from __future__ import annotations

from kzoo.transfer_learning.training import PhaseStop, Transfer, TransferHistory, transfer
from kzoo.transfer_learning.unfreeze import select_layers

__all__ = ["PhaseStop", "Transfer", "TransferHistory", "select_layers", "transfer"]
