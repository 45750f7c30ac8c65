"""kzoo.calibrate and kzoo.calibration_error: temperature scaling against an independent fit."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

import kzoo
from kzoo.layers import TemperatureScaling
from kzoo.loop import calibrate, calibration_error
from tests.loop_data import digits


def _ece(labels, probabilities, bins=15):
    """Expected calibration error, written out as in Guo et al. 2017."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(labels, probabilities):
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))


def test_calibration_error_matches_a_hand_written_ece():
    rng = np.random.default_rng(0)
    probabilities = _softmax(rng.normal(0, 3, size=(500, 4)))
    labels = rng.integers(0, 4, size=500)
    assert calibration_error(labels, probabilities) == pytest.approx(_ece(labels, probabilities))
    assert calibration_error(np.eye(4)[labels], probabilities) == pytest.approx(
        _ece(labels, probabilities)
    )


@pytest.fixture(scope="module")
def overconfident():
    """A digit classifier made over-confident: its logits are multiplied by 4 before softmax."""
    x, y = digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    logits = keras.layers.Dense(10)(h)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x[:3000], y[:3000], batch_size=64, epochs=3, verbose=0)
    sharp = keras.Model(
        inputs, keras.layers.Softmax()(keras.layers.Rescaling(4.0)(logits)), name="sharp"
    )
    return sharp, (x[3000:4000], y[3000:4000]), (x[4000:], y[4000:])


def test_temperature_scaling_lowers_held_out_ece_and_nll_like_an_independent_fit(overconfident):
    model, (x_val, y_val), (x_test, y_test) = overconfident
    calibrated = calibrate(model, x_val, y_val)
    assert calibrated.calibration.temperature > 1.5  # it undid (most of) the factor 4
    before_val = model.predict(x_val, verbose=0).astype(np.float64)
    before = model.predict(x_test, verbose=0).astype(np.float64)
    after = calibrated.predict(x_test, verbose=0).astype(np.float64)
    np.testing.assert_array_equal(before.argmax(axis=1), after.argmax(axis=1))
    # an independent fit: a grid over T on the validation log-probabilities
    grid = np.exp(np.linspace(np.log(0.2), np.log(20), 2001))
    log_val = np.log(np.maximum(before_val, 1e-300))
    best = grid[np.argmin([_nll(y_val, _softmax(log_val / t)) for t in grid])]
    assert calibrated.calibration.temperature == pytest.approx(best, rel=0.01)
    reference = _softmax(np.log(np.maximum(before, 1e-300)) / best)
    assert _ece(y_test, after) < _ece(y_test, before)
    assert _nll(y_test, after) < _nll(y_test, before)
    assert _ece(y_test, after) <= _ece(y_test, reference) + 0.005
    assert _nll(y_test, after) <= _nll(y_test, reference) + 1e-3
    # the numbers it reports are the validation set's
    assert calibrated.calibration.ece_before == pytest.approx(_ece(y_val, before_val), abs=1e-6)


def test_a_logit_model_is_scaled_by_its_logits_and_the_layer_reloads(tmp_path):
    x, y = digits()
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
         keras.layers.Dense(10)]
    )  # fmt: skip
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x[:1000], y[:1000], epochs=2, verbose=0)
    calibrated = calibrate(model, x[1000:1500], y[1000:1500])
    layer = calibrated.get_layer("calibration")
    assert isinstance(layer, TemperatureScaling) and layer.from_logits
    logits = model.predict(x[:20], verbose=0).astype(np.float64)
    expected = _softmax(logits / calibrated.calibration.temperature)
    np.testing.assert_allclose(calibrated.predict(x[:20], verbose=0), expected, atol=1e-6)
    path = tmp_path / "calibrated.keras"
    calibrated.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(x[:20], verbose=0), expected, atol=1e-6)


@pytest.mark.skipif(
    not (importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("onnxruntime")),
    reason="needs tf2onnx and onnxruntime (the export extra)",
)
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="ONNX export runs on TF")
def test_the_onnx_export_gives_the_calibrated_probabilities(overconfident, tmp_path):
    import onnxruntime

    model, (x_val, y_val), (x_test, _) = overconfident
    calibrated = calibrate(model, x_val, y_val)
    kzoo.export(calibrated, tmp_path / "calibrated.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "calibrated.onnx"))
    name = session.get_inputs()[0].name
    exported = session.run(None, {name: x_test[:32].astype(np.float32)})[0]
    expected = calibrated.predict(x_test[:32], verbose=0)
    np.testing.assert_allclose(exported, expected, atol=1e-5)
    assert not np.allclose(exported, model.predict(x_test[:32], verbose=0), atol=1e-3)


def test_a_bad_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaling(0.0)
