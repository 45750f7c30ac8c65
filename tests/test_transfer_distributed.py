"""kzoo.transfer under data parallelism, on two fake CPU devices in a fresh process each.

Devices must be configured before the backend starts, hence the subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

COMMON = """
import json
import numpy as np
import keras
import kzoo

def data(n=64):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=n)
    x = rng.uniform(0, 0.5, size=(n, 16, 16, 3))
    x[np.arange(n), :, :, y] += 0.5
    return x.astype("float32"), y.astype("int32")

def snapshot(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]

def changed(before, after):
    return sum(not np.array_equal(a, b) for a, b in zip(before, after))

def run(scope):
    with scope:
        keras.utils.set_random_seed(0)
        base = kzoo.build("8C3+BN-MP2-8C3-MP2-FC10", input_shape=(16, 16, 3), name="tiny")
        clf = kzoo.transfer(base, head="GAP-FC8-FC3")
    x, y = data()
    base0, head0 = snapshot(clf.base), snapshot(clf.head)
    quiet = dict(batch_size=16, verbose=0, diagnostics=False)
    clf.fit_frozen(x, y, epochs=2, cache_features=True, **quiet)
    base1, head1 = snapshot(clf.base), snapshot(clf.head)
    clf.fine_tune(x, y, epochs=2, **quiet)
    base2 = snapshot(clf.base)
    return clf, {
        "base_changed_frozen": changed(base0, base1),
        "head_changed_frozen": changed(head0, head1),
        "base_changed_fine_tune": changed(base1, base2),
        "loss": clf.history.history["loss"],
        "phase_boundary": clf.history.phase_boundary,
    }
"""

TF_SCRIPT = (
    """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""
    + COMMON
    + """
clf, result = run(strategy.scope())
result["replicas"] = strategy.num_replicas_in_sync
result["variable_type"] = type(clf.head.weights[0].value).__name__
print("RESULT " + json.dumps(result))
"""
)

JAX_SCRIPT = (
    """
import contextlib
import jax
"""
    + COMMON
    + """
devices = jax.devices()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
clf, result = run(contextlib.nullcontext())
result["replicas"] = len(devices)
result["variable_devices"] = len(clf.head.weights[0].value.sharding.device_set)
print("RESULT " + json.dumps(result))
"""
)


def _run(script: str, env: dict[str, str]) -> dict:
    environment = {**os.environ, **env}
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in process.stdout.splitlines() if ln.startswith("RESULT ")]
    assert process.returncode == 0 and lines, process.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _check(result: dict) -> None:
    assert result["replicas"] == 2
    assert result["base_changed_frozen"] == 0
    assert result["head_changed_frozen"] == 4  # two kernels, two biases
    assert result["base_changed_fine_tune"] > 0
    assert result["phase_boundary"] == 2
    assert len(result["loss"]) == 4 and all(v == v for v in result["loss"])  # no NaN


@pytest.mark.slow
def test_transfer_trains_under_tf_mirrored_strategy_on_two_devices():
    pytest.importorskip("tensorflow")
    result = _run(TF_SCRIPT, {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""})
    _check(result)
    assert result["variable_type"] == "MirroredVariable"


@pytest.mark.slow
def test_transfer_trains_with_keras_data_parallel_on_two_jax_devices():
    pytest.importorskip("jax")
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    result = _run(JAX_SCRIPT, {"KERAS_BACKEND": "jax", "XLA_FLAGS": flags.strip()})
    _check(result)
    assert result["variable_devices"] == 2
