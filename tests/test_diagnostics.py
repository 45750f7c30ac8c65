"""TrainingDiagnostics: induced failures are caught with the right message; healthy runs are not."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import kzoo
from kzoo.diagnostics import Finding, TrainingDiagnostics
from kzoo.errors import TrainingError

NUM_CLASSES = 10


def _blobs(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ten well-separated Gaussian clusters: a small network learns them in one epoch."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(NUM_CLASSES, 16))
    y = rng.integers(0, NUM_CLASSES, size=n)
    x = centres[y] + rng.normal(0.0, 1.0, size=(n, 16))
    return x.astype("float32"), y.astype("int32")


def _mlp(learning_rate: float = 0.01, hidden_bias: float = 0.0) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(
                32,
                activation="relu",
                bias_initializer=keras.initializers.Constant(hidden_bias),
            ),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _exploding_mlp() -> keras.Model:
    """A huge learning rate on a linear network with logits: the weights overflow to inf."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32), keras.layers.Dense(NUM_CLASSES)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _fit(model, x, y, diagnostics, epochs=6, **kwargs):
    return model.fit(
        x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[diagnostics], **kwargs
    )


def test_is_exported_from_the_package():
    assert kzoo.TrainingDiagnostics is TrainingDiagnostics


@pytest.mark.backend
def test_huge_learning_rate_nan_loss_stops_training_and_names_epoch_and_batch(caplog):
    x, y = _blobs()
    diagnostics = TrainingDiagnostics()
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        history = _fit(_exploding_mlp(), x * 1000.0, y, diagnostics)
    assert [f.kind for f in diagnostics.findings] == ["nan_loss"]
    finding = diagnostics.findings[0]
    assert finding.epoch == 1 and finding.batch is not None and finding.batch >= 1
    assert f"epoch 1, batch {finding.batch}" in finding.message
    assert "learning rate is too high" in finding.message
    assert "not standardised" in finding.message
    assert len(history.history["loss"]) == 1  # stopped inside the first epoch
    assert "Training stopped" in caplog.text


@pytest.mark.backend
def test_shuffled_labels_are_reported_as_chance_level_accuracy():
    # 2100 validation inputs: the accuracy's sampling noise (about 0.007) stays well inside
    # the 0.025 band above chance on every backend's initial weights. With 300, one epoch at
    # 0.137 by chance delayed the finding to epoch 4 on torch.
    x, y = _blobs(n=3000)
    rng = np.random.default_rng(1)
    shuffled = rng.permutation(y)
    diagnostics = TrainingDiagnostics(patience=3)
    history = _fit(
        _mlp(),
        x[:900],
        shuffled[:900],
        diagnostics,
        epochs=10,
        validation_data=(x[900:], shuffled[900:]),
    )
    kinds = [f.kind for f in diagnostics.findings]
    assert kinds == ["chance_accuracy"]
    finding = diagnostics.findings[0]
    assert finding.epoch == 3 and finding.batch is None
    assert "validation accuracy" in finding.message and "chance level (0.100" in finding.message
    assert "labels misaligned" in finding.message
    assert len(history.history["loss"]) == 3


@pytest.mark.backend
def test_dead_relus_are_reported_as_constant_predictions():
    x, y = _blobs()
    # A huge negative bias kills every hidden ReLU: the output is the last layer's bias alone.
    diagnostics = TrainingDiagnostics(sample=(x[:200], y[:200]))
    _fit(_mlp(hidden_bias=-1000.0), x, y, diagnostics)
    assert [f.kind for f in diagnostics.findings] == ["constant_predictions"]
    finding = diagnostics.findings[0]
    assert finding.epoch == 1
    assert "exactly the same output" in finding.message and "100% of 200" in finding.message
    assert "dead ReLUs" in finding.message


@pytest.mark.backend
def test_predictions_collapsed_onto_one_class_are_reported_after_patience_epochs():
    x, y = _blobs()
    model = _mlp(learning_rate=0.0)  # frozen, so the collapse below persists
    model.layers[-1].bias.assign(np.eye(NUM_CLASSES)[3] * 10.0)
    diagnostics = TrainingDiagnostics(patience=2, sample=x[:100])
    _fit(model, x, y, diagnostics)
    collapse = [f for f in diagnostics.findings if f.kind == "constant_predictions"]
    assert len(collapse) == 1
    assert collapse[0].epoch == 2 and "class 3" in collapse[0].message


@pytest.mark.backend
def test_healthy_training_raises_nothing():
    x, y = _blobs()
    diagnostics = TrainingDiagnostics(on_problem="raise", sample=(x[1000:], y[1000:]))
    history = _fit(_mlp(), x[:1000], y[:1000], diagnostics, validation_data=(x[1000:], y[1000:]))
    assert diagnostics.findings == []
    assert len(history.history["loss"]) == 6
    assert history.history["val_accuracy"][-1] > 0.8


def test_healthy_regression_with_a_single_output_raises_nothing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 10.0).astype("float32")  # all positive targets
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    diagnostics = TrainingDiagnostics(on_problem="raise", sample=x[:64])
    _fit(model, x, y, diagnostics, epochs=4)
    assert diagnostics.findings == []


def test_raise_mode_raises_training_error_with_the_causes():
    x, y = _blobs(300)
    with pytest.raises(TrainingError, match=r"loss became (NaN|infinite) .*learning rate"):
        _fit(_exploding_mlp(), x * 1000.0, y, TrainingDiagnostics(on_problem="raise"))


@pytest.mark.backend
def test_warn_mode_keeps_training_and_reports_each_kind_once(caplog):
    # The dead network ends up answering one class, so its accuracy is that class's share:
    # 1200 inputs keep every share under 0.113, at chance whichever class the backend's batch
    # order favours (300 inputs had a class at 0.137, above the 0.125 band on JAX and torch).
    x, y = _blobs()
    assert np.bincount(y).max() / len(y) < 0.125
    diagnostics = TrainingDiagnostics(on_problem="warn", sample=x[:50])
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        history = _fit(_mlp(hidden_bias=-1000.0), x, y, diagnostics, epochs=5)
    assert len(history.history["loss"]) == 5
    # dead from epoch 1; still at chance after 3 epochs; neither repeated afterwards
    assert [(f.kind, f.epoch) for f in diagnostics.findings] == [
        ("constant_predictions", 1),
        ("chance_accuracy", 3),
    ]
    assert caplog.text.count("constant value") == 1
    assert caplog.text.count("chance level") == 1
    assert "Training stopped" not in caplog.text


def test_findings_are_structured_and_print_as_their_message():
    finding = Finding(kind="nan_loss", epoch=2, batch=5, message="the loss became NaN")
    assert (finding.kind, finding.epoch, finding.batch) == ("nan_loss", 2, 5)
    assert str(finding) == "the loss became NaN"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_problem": "explode"}, r"on_problem must be one of .*Received: on_problem='explode'"),
        ({"patience": 0}, r"patience must be at least 1\. Received: patience=0"),
        ({"collapse_fraction": 1.5}, r"Received: collapse_fraction=1\.5"),
    ],
)
def test_invalid_settings_are_rejected_with_the_received_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingDiagnostics(**kwargs)
