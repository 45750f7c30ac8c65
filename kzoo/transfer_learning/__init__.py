"""Transfer learning in a few lines: cut a pretrained base, freeze it, add a DSL head, train twice.

>>> clf = kzoo.transfer("vgg19", head="GAP-FC256+D0.5-FC5", input_shape=(160, 160, 3))
>>> clf.fit(train_ds, validation_data=val_ds, frozen_epochs=3, fine_tune_epochs=5)

:mod:`.training` holds :func:`transfer` and :class:`Transfer` (the two phases); :mod:`.parts`
cuts the base and builds the head; :mod:`.caching` decides when the frozen phase may train on
cached features, :mod:`.feature_cache` computes them and feeds them to the head, and
:mod:`.feature_store` keeps them (RAM, a spill file, or a keyed folder on disk);
:mod:`.unfreeze` picks the layers fine-tuning trains; :mod:`.rates` makes each phase's
optimizer with its per-group learning rates; :mod:`.processes` shards the data over several
JAX processes.

The face is lazy: listing or pruning kept features (``kzoo cache``) does not import Keras;
everything else does.
"""

from __future__ import annotations

from kzoo.lazy import lazy_exports

_EXPORTS = {
    "FeatureEntry": "kzoo.transfer_learning.feature_store:FeatureEntry",
    "PhaseStop": "kzoo.transfer_learning.training:PhaseStop",
    "Transfer": "kzoo.transfer_learning.training:Transfer",
    "TransferHistory": "kzoo.transfer_learning.training:TransferHistory",
    "initialize_processes": "kzoo.transfer_learning.processes:initialize",
    "is_chief": "kzoo.transfer_learning.processes:is_chief",
    "list_feature_caches": "kzoo.transfer_learning.feature_store:list_entries",
    "prune_feature_caches": "kzoo.transfer_learning.feature_store:prune_entries",
    "select_layers": "kzoo.transfer_learning.unfreeze:select_layers",
    "transfer": "kzoo.transfer_learning.training:transfer",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
