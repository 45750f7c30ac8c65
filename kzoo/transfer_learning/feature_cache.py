"""The frozen phase's feature cache: how deep it goes, how it is computed, how the head reads it.

* :func:`split_head` - the head's leading layers that hold no weights and draw no random
  numbers (``GAP``, ``GMP``, ``Flatten``, pooling) run inside the cached pass, so a
  ``GAP-...`` head caches C floats per image instead of H*W*C; the rest of the head trains.
* :func:`extract` - runs the base (and that prefix) once, batch by batch, into arrays
  preallocated in RAM, or into a memory-mapped file past a memory budget (the
  :class:`~kzoo.transfer_learning.feature_store.FeatureSink` decides): there is never a list
  of batches to concatenate, so the peak is the features themselves.
* :class:`FeatureBatches` - feeds the cached features to ``fit`` with a seeded per-epoch
  shuffle, the same whether the features are in RAM or on disk.

:mod:`.feature_store` keeps extracted features on disk between runs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from kzoo.errors import TransferError
from kzoo.taps import walk
from kzoo.transfer_learning.feature_store import (
    ArrayWriter,
    CachedFeatures,
    FeatureSink,
    cache_key,
    digest_arrays,
    digest_files,
    features_root,
    read_entry,
    seal_entry,
    write_entry,
)
from kzoo.transfer_learning.parts import BOUNDARY_LAYERS
from kzoo.transfer_learning.processes import local_predictor, local_rows, shared_seed

__all__ = [
    "FeatureBatches",
    "cached_features",
    "data_fingerprint",
    "extract",
    "feature_model",
    "is_tf_dataset",
    "model_fingerprint",
    "split_head",
]

logger = logging.getLogger("kzoo")

# Layers that are the same function in training and inference and hold no weights: running
# them once in the cached pass is exactly what the head would do every epoch.
_PASSIVE_LAYERS = (
    *BOUNDARY_LAYERS,  # Flatten and the global poolings
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)


# -- how deep -----------------------------------------------------------------------------


def split_head(head: keras.Model) -> tuple[list[keras.layers.Layer], keras.Model]:
    """Split a head into the passive layers it starts with and the model that trains.

    Args:
        head: A Functional head (``kzoo.build(..., prefix="head_")`` or the user's own).

    Returns:
        ``(prefix, trainable_rest)``: the leading weightless, deterministic layers of a
        straight chain (empty when there are none, or when a later layer also reads what
        they skip), and a model from the prefix's output to the head's output that shares
        the head's layers, so training it trains the head. With no prefix the rest is the
        head itself.
    """
    prefix: list[keras.layers.Layer] = []
    tensor = head.inputs[0] if len(head.inputs) == 1 else None
    for layer in head.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if tensor is None or not _is_passive(layer) or _single_input(layer) is not tensor:
            break
        prefix.append(layer)
        tensor = layer.output
    if not prefix or tensor is head.outputs[0]:
        return [], head
    try:
        rest = keras.Model(tensor, head.outputs[0], name=f"{head.name}_trained")
    except ValueError:  # a later layer reads a tensor before the cut (a skip connection)
        return [], head
    return prefix, rest


def _is_passive(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, _PASSIVE_LAYERS) and not layer.weights


def _single_input(layer: keras.layers.Layer) -> Any:
    """The one tensor a layer was called on, or None (called several times, or on several)."""
    try:
        return layer.input
    except (AttributeError, ValueError):
        return None


def feature_model(base: keras.Model, prefix: Sequence[keras.layers.Layer]) -> keras.Model:
    """The base followed by fresh copies of the head's passive prefix: what the cache holds.

    Copies, not the head's own layers: calling those on another tensor would add a node to
    the head's graph. The prefix has no weights, so a copy computes the same function.
    """
    if not prefix:
        return base
    inputs = keras.Input(tuple(base.inputs[0].shape[1:]), dtype=base.inputs[0].dtype)
    x = base(inputs, training=False)
    for layer in prefix:
        x = layer.__class__.from_config(layer.get_config())(x)
    return keras.Model(inputs, x, name=f"{base.name}_features")


# -- one pass of the base ------------------------------------------------------------------


def is_tf_dataset(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec")


def extract(
    model: keras.Model,
    x: Any,
    y: Any,
    batch_size: int,
    *,
    sink: FeatureSink,
    rows: np.ndarray | None = None,
) -> CachedFeatures:
    """Run ``model`` once over the data into preallocated arrays.

    Args:
        model: The feature model (base and cached head prefix), run in inference mode.
        x: Arrays (or a nest of them), or a finite ``tf.data.Dataset`` of ``(x, y[, w])``.
        y: Targets for arrays, or ``(targets, sample_weights)`` from validation data.
        batch_size: The batch size of the pass over arrays.
        sink: Where each array goes (RAM, a spill file past the budget, a disk entry).
        rows: For arrays, the rows to run (this process's share), in order; default all.

    Returns:
        The :class:`CachedFeatures`; spill files are already unlinked, so nothing is left
        behind even if the process is killed.
    """
    try:
        if is_tf_dataset(x):
            return _extract_dataset(model, x, sink)
        return _extract_arrays(model, x, y, batch_size, sink, rows)
    finally:
        sink.release()


def _extract_arrays(
    model, x, y, batch_size: int, sink: FeatureSink, rows: np.ndarray | None
) -> CachedFeatures:
    n = len(keras.tree.flatten(x)[0]) if rows is None else len(rows)
    targets, weights = (y[0], y[1] if len(y) > 1 else None) if isinstance(y, tuple) else (y, None)
    if rows is not None:
        targets, weights = (None if a is None else np.asarray(a)[rows] for a in (targets, weights))
    features, predict = None, _predictor(model)
    for start in range(0, n, batch_size):
        picked = (
            slice(start, start + batch_size) if rows is None else rows[start : start + batch_size]
        )
        batch = _float32(predict(keras.tree.map_structure(lambda a, p=picked: a[p], x)))
        if features is None:
            features = sink.writer("features", batch.shape[1:], np.float32, n)
        features.append(batch)
    if features is None:
        raise TransferError("there are no images to train on: the inputs are empty")
    if sink.folder is not None:  # the disk store keeps the targets with the features
        targets = _copy_into(sink, "targets", targets)
        weights = _copy_into(sink, "sample_weights", weights)
    return CachedFeatures(features.finish(), targets, weights)


def _copy_into(sink: FeatureSink, name: str, array: Any) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    writer = sink.writer(name, array.shape[1:], array.dtype, len(array))
    writer.append(array)
    return writer.finish()


def _extract_dataset(model, dataset, sink: FeatureSink) -> CachedFeatures:
    # One pass that keeps features and targets together: a dataset that reshuffles on every
    # iteration would pair them wrongly if it were iterated twice.
    writers: dict[str, ArrayWriter] = {}
    capacity, batch_size, predict = None, None, _predictor(model)
    try:
        for batch in dataset.as_numpy_iterator():  # numpy: every backend's predict takes it
            batch = batch if isinstance(batch, tuple) else (batch,)
            if batch_size is None:
                batch_size = len(keras.tree.flatten(batch[0])[0])
                capacity = _capacity(dataset, batch_size)
            parts = {"features": _float32(predict(batch[0]))}
            for name, value in zip(("targets", "sample_weights"), batch[1:3], strict=False):
                parts[name] = np.asarray(value)
            for name, value in parts.items():
                if name not in writers:
                    writers[name] = sink.writer(name, value.shape[1:], value.dtype, capacity)
                writers[name].append(value)
    except BaseException:
        for writer in writers.values():
            writer.close()
        raise
    if "features" not in writers:
        raise TransferError("there are no images to train on: the dataset is empty")
    arrays = {name: writer.finish() for name, writer in writers.items()}
    return CachedFeatures(
        arrays["features"], arrays.get("targets"), arrays.get("sample_weights"), batch_size
    )


def _predictor(model: keras.Model) -> Callable[[Any], Any]:
    """One batch in, its features out. With several JAX processes, a forward pass on this
    process's devices alone; ``predict_on_batch`` under a ``tf.distribute`` strategy returns
    each replica's copy of the outputs (twice the rows on two replicas), so there the batch
    goes through ``predict``, which gathers them right."""
    local = local_predictor(model)  # several processes: this one's devices only
    if local is not None:
        return local
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return lambda batch: model.predict(batch, batch_size=_rows(batch), verbose=0)
    return model.predict_on_batch


def _rows(batch: Any) -> int:
    return len(keras.tree.flatten(batch)[0])


def _capacity(dataset: Any, batch_size: int) -> int | None:
    """An upper bound on the dataset's rows (batches x the first batch's size), if known."""
    batches = int(dataset.cardinality())
    return batches * batch_size if batches >= 0 else None


def _float32(features: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(features), dtype=np.float32)


# -- how the head reads them ---------------------------------------------------------------


class FeatureBatches(keras.utils.PyDataset):
    """Batches of rows for ``fit`` (cached features, or images), shuffled per epoch by a seed.

    RAM arrays and memory maps are read the same way, so a head trained on spilled features
    gets exactly the updates it would get from RAM.

    Args:
        cached: The arrays: features (or inputs), targets, sample weights.
        batch_size: Rows per batch; with several processes, per global batch.
        shuffle: Draw a new order each epoch (else the stored order).
        seed: The permutation seed (default: drawn from NumPy's global generator, which
            ``keras.utils.set_random_seed`` sets; process 0's with several processes).
        processes: With several processes, each process feeds its share of every global
            batch of the same (shared-seed) order, as :func:`~.processes.local_rows` says;
            the arrays must then be the whole data, the same on every process.
    """

    def __init__(
        self,
        cached: CachedFeatures,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int | None = None,
        processes: int = 1,
    ) -> None:
        super().__init__()
        self.cached, self.shuffle, self.processes = cached, shuffle, processes
        seed = int(np.random.randint(2**31 - 1)) if seed is None else seed
        self.seed = shared_seed(seed) if processes > 1 else seed
        # several processes: batch_size is the global batch and each process feeds its share
        self.global_batch = int(batch_size)
        self.batch_size = int(batch_size) // processes
        self.epoch = 0
        self._order: np.ndarray | None = None
        self._local = local_rows(len(cached), self.global_batch) if processes > 1 else None

    def __len__(self) -> int:
        rows = len(self.cached) if self._local is None else len(self._local)
        return math.ceil(rows / self.batch_size)

    def __getitem__(self, index: int) -> tuple:
        start, stop = index * self.batch_size, (index + 1) * self.batch_size
        rows: Any = slice(start, stop)
        if self.shuffle or self._local is not None:
            if self._order is None:
                self._order = self._epoch_order()
            rows = self._order[start:stop]
        parts = [self.cached.features[rows]]
        if self.cached.targets is not None:
            parts.append(self.cached.targets[rows])
            if self.cached.sample_weights is not None:
                parts.append(self.cached.sample_weights[rows])
        return tuple(np.asarray(p) for p in parts)

    def _epoch_order(self) -> np.ndarray:
        order = np.arange(len(self.cached))
        if self.shuffle:  # the same permutation on every process: the seed is shared
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.cached))
        return order if self._local is None else order[self._local]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = None


# -- kept on disk between runs -----------------------------------------------------------------


def cached_features(
    model: keras.Model,
    x: Any,
    y: Any,
    batch_size: int,
    *,
    budget: int,
    keep: bool,
    role: str,
    rows: np.ndarray | None = None,
) -> CachedFeatures:
    """The feature model's output over the data: from the disk store, or computed now.

    Args:
        model: The feature model (:func:`feature_model`).
        x, y, batch_size: As for :func:`extract`.
        budget: Bytes of RAM the features may take before they spill to a file.
        keep: Look the features up in the disk store by a key of everything that determines
            them (the model's layers and weights, the data), and keep them there on a miss.
        role: ``"train"`` or ``"validation"``: part of the key and of the description.
        rows: This process's rows of array data (several processes), default all.
    """
    if not keep:
        sink = FeatureSink(budget, spill_folder=features_root() / "spill")
        return extract(model, x, y, batch_size, sink=sink, rows=rows)  # releases the spills
    data = data_fingerprint(x, y)
    share = None if rows is None else digest_arrays([rows])
    key = cache_key(
        {"model": model_fingerprint(model), "data": data, "role": role, "rows": share}
    )  # fmt: skip
    found = read_entry(key)
    if found is not None:
        logger.info("feature cache: %s features of %d images read from disk", role, len(found))
        return found
    description = {
        "model": model.name,
        "output_shape": list(model.outputs[0].shape[1:]),
        "role": role,
        "data": _describe(x),
    }
    with write_entry(key, description) as folder:
        sink = FeatureSink(budget, folder=folder)
        computed = extract(model, x, y, batch_size, sink=sink, rows=rows)
        kept = seal_entry(folder, key, computed, description)
    logger.info("feature cache: %s features of %d images kept on disk", role, len(kept))
    return kept


def model_fingerprint(model: keras.Model) -> dict[str, Any]:
    """What determines a model's function: its layer graph and configs, and its weights.

    Layer names are replaced by their position, so a model rebuilt in another process (where
    Keras's counters gave its input layer another name) has the same fingerprint.
    """
    names = {layer.name: f"#{i}" for i, layer in enumerate(walk(model))}
    config = _rename(model.get_config(), names)
    weights = digest_arrays(np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights)
    return {
        "config": config,
        "weights": weights,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rename(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rename(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def data_fingerprint(x: Any, y: Any) -> str:
    """A hash of the data: files' paths, sizes and times for a folder dataset, else content.

    A dataset from ``keras.utils.image_dataset_from_directory`` carries ``file_paths``; any
    other dataset is read once and hashed (cheap next to the base's forward pass).
    """
    if is_tf_dataset(x):
        paths = getattr(x, "file_paths", None)
        if isinstance(paths, list) and paths:
            spec = repr(x.element_spec)
            names = getattr(x, "class_names", None)
            return cache_key({"files": digest_files(paths), "spec": spec, "classes": names})
        return digest_arrays(
            part for batch in x.as_numpy_iterator() for part in keras.tree.flatten(batch)
        )
    return digest_arrays([*keras.tree.flatten(x), *keras.tree.flatten(y)])


def _describe(x: Any) -> str:
    if is_tf_dataset(x):
        paths = getattr(x, "file_paths", None)
        if isinstance(paths, list) and paths:
            return f"{len(paths)} files under {os.path.commonpath(paths)}"
        return "a tf.data dataset"
    first = keras.tree.flatten(x)[0]
    return f"array of shape {tuple(first.shape)}"
