"""kzoo.transfer over several processes: JAX processes on localhost, each with one CPU device.

Each test starts its processes with the environment a launcher gives them (the coordinator's
free port, the process count and rank), and a hard timeout. CI runs these in a step of their
own (``-m multiprocess``). The row-sharding rules are checked in-process at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kzoo.errors import TransferError
from kzoo.transfer_learning import processes

WORKER = """
import json, os, sys
import numpy as np
import keras, kzoo

out, epochs = sys.argv[1], int(sys.argv[2])
if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
    kzoo.initialize_processes(heartbeat_timeout=10)
else:  # one process over every (forced) device of its own
    import jax
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
keras.utils.set_random_seed(0)
base = kzoo.build("8C3+BN-MP2-8C3-MP2-FC10", input_shape=(16, 16, 3), name="tiny")
clf = kzoo.transfer(base, head="GAP-FC8-FC3")
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (64, 16, 16, 3)).astype("float32")
y = rng.integers(0, 3, 64)
x[np.arange(64), :, :, y] += 0.5


class Started(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print("EPOCH", epoch, flush=True)


quiet = dict(batch_size=16, verbose=0, diagnostics=False, shuffle=False)
clf.fit_frozen(x, y, epochs=2, cache_features=True, validation_data=(x, y), **quiet)
clf.fine_tune(x, y, epochs=epochs, callbacks=[Started()], **quiet)
weights = np.concatenate([np.ravel(keras.ops.convert_to_numpy(w)) for w in clf.model.weights])
rank = kzoo.transfer_learning.processes.process_index()
np.save(os.path.join(out, f"weights{rank}.npy"), weights)
chief = kzoo.transfer_learning.is_chief()
print("RESULT " + json.dumps({"rank": rank, "loss": clf.history.history["loss"], "chief": chief}))
"""

TIMEOUT = 300  # a hang guard; the test asks for less


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, epochs: int, rank: int | None, port: int) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": ""}
    env.pop("XLA_FLAGS", None)
    if rank is None:
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    else:
        env.update(
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(rank),
        )
    out = tmp_path / ("single" if rank is None else "multi")
    out.mkdir(exist_ok=True)
    command = [sys.executable, "-c", textwrap.dedent(WORKER), str(out), str(epochs)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"a worker hung past {TIMEOUT} s: {stderr[-2000:]}")
    return process.returncode, stdout, stderr


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.multiprocess
def test_two_processes_train_the_same_weights_as_one_process_on_two_devices(tmp_path):
    port = _free_port()
    started = time.monotonic()
    workers = [_start(tmp_path, 2, rank, port) for rank in (0, 1)]
    outcomes = [_finish(w) for w in workers]
    assert time.monotonic() - started < 120 + 30  # both ranks end (limit plus start-up slack)
    for code, _, stderr in outcomes:
        assert code == 0, stderr[-3000:]
    results = [_result(stdout) for _, stdout, _ in outcomes]
    assert [r["chief"] for r in results] == [True, False]  # only process 0 writes files
    rank0 = np.load(tmp_path / "multi" / "weights0.npy")
    rank1 = np.load(tmp_path / "multi" / "weights1.npy")
    np.testing.assert_array_equal(rank0, rank1)

    code, stdout, stderr = _finish(_start(tmp_path, 2, None, port))
    assert code == 0, stderr[-3000:]
    single = np.load(tmp_path / "single" / "weights0.npy")
    np.testing.assert_allclose(rank0, single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0]["loss"], _result(stdout)["loss"], rtol=1e-5)


@pytest.mark.multiprocess
def test_a_killed_worker_ends_the_other_with_an_error_within_a_minute(tmp_path):
    port = _free_port()
    survivor, victim = (_start(tmp_path, 400, rank, port) for rank in (0, 1))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # wait until both train
        line = victim.stdout.readline()
        if line.startswith("EPOCH") or victim.poll() is not None:
            break
    assert victim.poll() is None, victim.stderr.read()[-3000:]
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    try:
        survivor.wait(timeout=90)
    except subprocess.TimeoutExpired:
        survivor.kill()
        pytest.fail("the surviving worker did not stop within 90 s of its peer's death")
    assert time.monotonic() - killed < 60
    assert survivor.returncode != 0
    victim.wait()


TF_WORKER = """
import numpy as np, tensorflow as tf, keras
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(0)
x, y = rng.uniform(0, 1, (64, 4)).astype("float32"), rng.integers(0, 3, 64)
model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
print("FIT OK")
"""


@pytest.mark.multiprocess
@pytest.mark.xfail(
    strict=True,
    reason="keras-team/keras#20585: Keras 3 fit under MultiWorkerMirroredStrategy fails in the "
    "train step's metric reduction; when this passes, the bug is fixed: update distributed.md",
)
def test_keras_fit_under_tensorflow_multi_worker_strategy():
    pytest.importorskip("tensorflow")
    ports = [_free_port(), _free_port()]
    workers = []
    for index in range(2):
        config = {
            "cluster": {"worker": [f"localhost:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "KERAS_BACKEND": "tensorflow",
               "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
        command = [sys.executable, "-c", textwrap.dedent(TF_WORKER)]
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))  # fmt: skip
    outcomes = [_finish(w) for w in workers]
    assert all(code == 0 and "FIT OK" in out for code, out, _ in outcomes), outcomes[0][2][-2000:]


# -- the sharding rules, in one process ------------------------------------------------------


def _as_process(monkeypatch: pytest.MonkeyPatch, rank: int, count: int) -> None:
    monkeypatch.setattr(processes, "process_count", lambda: count)
    monkeypatch.setattr(processes, "process_index", lambda: rank)


def test_each_global_batch_is_the_processes_shares_side_by_side(monkeypatch, caplog):
    shares = []
    for rank in range(3):
        _as_process(monkeypatch, rank, 3)
        shares.append(processes.local_rows(50, 12).reshape(-1, 4))
    batches = np.concatenate(shares, axis=1)  # (global batches, 12 rows)
    np.testing.assert_array_equal(batches, np.arange(48).reshape(4, 12))
    assert "2 of 50 rows are left out" in caplog.text


def test_a_batch_that_the_processes_cannot_share_equally_is_refused(monkeypatch):
    _as_process(monkeypatch, 0, 3)
    with pytest.raises(TransferError, match=r"multiple of 3.*batch_size=16"):
        processes.local_rows(64, 16)
    with pytest.raises(TransferError, match="no whole batch"):
        processes.local_rows(10, 12)


def test_initialize_processes_says_which_variables_are_missing(monkeypatch):
    for name in ("JOB_ADDRESSES", "NUM_PROCESSES", "PROCESS_ID"):
        monkeypatch.delenv(f"KERAS_DISTRIBUTION_{name}", raising=False)
    with pytest.raises(TransferError, match=r"KERAS_DISTRIBUTION_JOB_ADDRESSES|JAX backend"):
        processes.initialize()


def test_only_process_zero_exports(monkeypatch, tmp_path):
    import keras

    import kzoo
    from kzoo.transfer_learning import training

    keras.utils.set_random_seed(0)
    base = kzoo.build("8C3-MP2-FC10", input_shape=(8, 8, 3), name="tiny")
    clf = kzoo.transfer(base, head="GAP-FC3")
    monkeypatch.setattr(training, "process_index", lambda: 1)
    monkeypatch.setattr(training, "is_chief", lambda: False)
    assert clf.export(tmp_path / "model.onnx") is None
    assert list(tmp_path.iterdir()) == []
