"""Several processes on JAX: which rows each one trains on, and features computed locally.

Keras 3 runs data-parallel training over several processes on JAX (each started by a launcher
with ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``_NUM_PROCESSES`` and ``_PROCESS_ID``, then
``keras.distribution.initialize()`` and a ``DataParallel`` distribution). Keras shards only a
batched ``tf.data.Dataset`` by itself, and ``predict``'s outputs span other processes'
devices. So for arrays kzoo shards the rows itself (:func:`local_rows`: each global batch is
the processes' local batches side by side, the same batches one process on all the devices
would see), turns Keras's auto-sharding off while it feeds them (:func:`already_sharded`),
computes cached features on each process's own rows with a local copy of the weights
(:func:`local_predictor`: no collective, so no process waits on another), and lets only
process 0 write files (:func:`is_chief`).

:func:`initialize` is ``keras.distribution.initialize`` with a heartbeat timeout, so a dead
peer ends the others with an error in seconds instead of JAX's default 100 s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from kzoo.errors import TransferError

__all__ = [
    "already_sharded",
    "initialize",
    "is_chief",
    "local_predictor",
    "local_rows",
    "process_count",
    "process_index",
    "shared_seed",
]

logger = logging.getLogger("kzoo")

DEFAULT_HEARTBEAT_SECONDS = 30


def process_count() -> int:
    """How many processes train together (1 unless JAX runs several)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def process_index() -> int:
    """This process's rank (0 for a single process)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def is_chief() -> bool:
    """Whether this process writes files (saved models, reports, exports): process 0."""
    return process_index() == 0


def initialize(
    job_addresses: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_SECONDS,
) -> keras.distribution.DataParallel:
    """Join the other processes and train data-parallel over every device of all of them.

    Reads the same environment variables as ``keras.distribution.initialize``
    (``KERAS_DISTRIBUTION_JOB_ADDRESSES``: the coordinator's ``host:port`` first;
    ``KERAS_DISTRIBUTION_NUM_PROCESSES``; ``KERAS_DISTRIBUTION_PROCESS_ID``).

    Args:
        job_addresses: Overrides the environment's.
        num_processes: Overrides the environment's.
        process_id: Overrides the environment's.
        heartbeat_timeout: Seconds after which a silent peer counts as dead and every
            process stops with an error (JAX's default is 100).

    Returns:
        The ``keras.distribution.DataParallel`` distribution it set.

    Raises:
        TransferError: Not on the JAX backend, or the addresses are missing.
    """
    if keras.backend.backend() != "jax":
        raise TransferError(
            "several processes need the JAX backend (Keras 3's multi-process path); on "
            "TensorFlow, MultiWorkerMirroredStrategy fails in Keras 3's fit "
            "(keras-team/keras#20585). Set KERAS_BACKEND=jax. "
            f"Received: backend={keras.backend.backend()!r}"
        )
    import jax

    env = os.environ
    addresses = job_addresses or env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    count = num_processes or _int_env("KERAS_DISTRIBUTION_NUM_PROCESSES")
    rank = process_id if process_id is not None else _int_env("KERAS_DISTRIBUTION_PROCESS_ID")
    if not addresses or count is None or rank is None:
        raise TransferError(
            "set KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port first), "
            "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID for every "
            f"process. Received: job_addresses={addresses!r}, num_processes={count!r}, "
            f"process_id={rank!r}"
        )
    jax.distributed.initialize(
        coordinator_address=addresses.split(",")[0],
        num_processes=count,
        process_id=rank,
        heartbeat_timeout_seconds=heartbeat_timeout,
    )
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    logger.info("process %d of %d, %d devices in all", rank, count, jax.device_count())
    return distribution


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else None


@contextlib.contextmanager
def already_sharded() -> Iterator[None]:
    """Feed per-process data to ``fit``: Keras's own sharding is off inside the block."""
    distribution = keras.distribution.distribution()
    if process_count() == 1 or not hasattr(distribution, "auto_shard_dataset"):
        yield
        return
    before = distribution.auto_shard_dataset
    distribution.auto_shard_dataset = False
    try:
        yield
    finally:
        distribution.auto_shard_dataset = before


def local_rows(n: int, global_batch: int) -> np.ndarray:
    """This process's rows of ``n``, so that global batch k is every process's k-th batch.

    Process p takes rows ``k*B + p*b ... k*B + (p+1)*b - 1`` of each global batch of B rows
    (b = B / processes): the global batches are the ones a single process would train on,
    split as Keras splits them over devices. The rows past the last whole global batch are
    left out (every process must run the same number of steps, or collectives hang).

    Raises:
        TransferError: ``global_batch`` is not a multiple of the process count.
    """
    count, rank = process_count(), process_index()
    if global_batch % count:
        raise TransferError(
            f"with {count} processes the batch size must be a multiple of {count} (each "
            f"process takes an equal share of every batch). Received: batch_size={global_batch}"
        )
    local = global_batch // count
    batches = n // global_batch
    if batches == 0:
        raise TransferError(
            f"{n} rows make no whole batch of {global_batch}; with several processes every "
            "batch must be whole. Pass a smaller batch_size"
        )
    if n % global_batch:
        logger.warning(
            "%d of %d rows are left out: with several processes every batch is whole",
            n % global_batch, n,
        )  # fmt: skip
    starts = np.arange(batches) * global_batch + rank * local
    return (starts[:, None] + np.arange(local)[None, :]).reshape(-1)


def shared_seed(seed: int) -> int:
    """The same seed on every process: process 0's."""
    if process_count() == 1:
        return seed
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int64(seed)))


def local_predictor(model: keras.Model) -> Callable[[Any], Any] | None:
    """A batch -> outputs function on this process's devices alone, or None with one process.

    The model's variables are replicated over every process's devices; their local copy
    runs the forward pass here, so computing features needs no other process.
    """
    if process_count() == 1:
        return None
    import jax

    def local(variable: keras.Variable) -> Any:
        value = variable.value
        return value if value.is_fully_addressable else value.addressable_data(0)

    trainable = [local(v) for v in model.trainable_variables]
    non_trainable = [local(v) for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable, non_trainable, batch):
        return model.stateless_call(trainable, non_trainable, batch, training=False)[0]

    return lambda batch: forward(trainable, non_trainable, batch)


def local_batch_size(global_batch: int) -> int:
    """Each process's share of a global batch."""
    return math.ceil(global_batch / process_count())
