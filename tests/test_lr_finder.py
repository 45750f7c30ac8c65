"""kzoo.lr_find: it restores the model bit for bit, and its suggestion trains well."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kzoo
from kzoo.errors import TrainingError
from kzoo.layers import OneCycle
from kzoo.loop import RULES, lr_find
from tests.loop_data import digits, small_cnn


def _state(model: keras.Model) -> list[np.ndarray]:
    variables = [*model.variables, *model.optimizer.variables]
    return [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]


def _compiled(optimizer: keras.optimizers.Optimizer, seed: int = 0) -> keras.Model:
    model = small_cnn(seed)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _per_group(model: keras.Model, rate: float) -> keras.optimizers.Optimizer:
    """The fine-tuning optimizer kzoo's transfer builds: a tenth of the rate for the conv."""
    from kzoo.transfer_learning.rates import group_optimizer

    conv = model.layers[1].trainable_variables
    others = [v for v in model.trainable_variables if all(v is not c for c in conv)]
    return group_optimizer("adam", rate, conv, others, 0.1)


OPTIMIZERS = {
    "adam": lambda model: keras.optimizers.Adam(1e-3),
    "schedule": lambda model: keras.optimizers.Adam(OneCycle(1e-3, total_steps=50)),
    "per_group": lambda model: _per_group(model, 1e-3),
}


@pytest.mark.backend
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_lr_find_leaves_weights_and_optimizer_state_bit_identical(kind):
    x, y = digits()
    x, y = x[:640], y[:640]
    model, twin = small_cnn(0), small_cnn(0)
    for m in (model, twin):
        m.compile(OPTIMIZERS[kind](m), "sparse_categorical_crossentropy", metrics=["accuracy"])
        m.train_on_batch(x[:32], y[:32])  # optimizer state that is not all zeros
    before = _state(model)
    result = lr_find(model, x, y, steps=30, batch_size=32)
    after = _state(model)
    assert len(after) == len(before)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(result.learning_rates) >= 5
    # the sweep really moved the weights (a restore of nothing would also compare equal)
    assert result.losses[-1] != result.losses[0]
    if kind != "schedule":
        return
    # a schedule is swapped out during the sweep: the model trains on as if lr_find never
    # happened (the traced step uses the user's schedule again)
    model.train_on_batch(x[32:64], y[32:64])
    twin.train_on_batch(x[32:64], y[32:64])
    for a, b in zip(_state(model), _state(twin), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.backend
def test_lr_find_sweeps_each_group_at_its_ratio():
    x, y = digits()
    model = small_cnn(0)
    optimizer = _per_group(model, 1e-3)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    inner = optimizer.optimizers
    result = lr_find(model, x[:640], y[:640], steps=10, start_lr=1e-6, end_lr=1e-2)
    # the rates are back, in their ratio
    rates = sorted(float(keras.ops.convert_to_numpy(g.learning_rate)) for g in inner)
    np.testing.assert_allclose(rates, [1e-4, 1e-3], rtol=1e-6)
    expected = 1e-6 * (1e-2 / 1e-6) ** (np.arange(10) / 9)
    np.testing.assert_allclose(result.learning_rates, expected[: len(result.learning_rates)])


def test_the_suggestion_names_its_rule_and_follows_it():
    x, y = digits()
    model = _compiled(keras.optimizers.Adam(1e-3))
    result = lr_find(model, x[:1600], y[:1600], steps=40, batch_size=32, rule="minimum/10")
    assert result.rule == "minimum/10" and result.rule_description == RULES["minimum/10"]
    lowest = int(np.argmin(result.smoothed_losses))
    assert result.suggestion == pytest.approx(result.learning_rates[lowest] / 10)
    assert set(result.suggestions) == set(RULES)
    # the smoothed curve is a smoothing: its total variation is below the raw curve's
    raw, smooth = np.asarray(result.losses), np.asarray(result.smoothed_losses)
    assert np.abs(np.diff(smooth)).sum() < np.abs(np.diff(raw)).sum()


def test_lr_find_stops_when_the_loss_diverges():
    x, y = digits()
    model = _compiled(keras.optimizers.SGD(0.01))
    result = lr_find(model, x[:1600], y[:1600], steps=60, start_lr=1e-4, end_lr=1e4)
    assert result.diverged
    assert len(result.learning_rates) < 60


def test_lr_find_refuses_an_uncompiled_model_and_bad_settings():
    x, y = digits()
    with pytest.raises(TrainingError, match="compiled"):
        lr_find(small_cnn(), x[:64], y[:64])
    model = _compiled(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="start_lr"):
        lr_find(model, x[:64], y[:64], start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="rule"):
        lr_find(model, x[:64], y[:64], rule="valley")


def _accuracy_after_three_epochs(rate: float, x, y, x_val, y_val) -> float:
    keras.utils.set_random_seed(0)
    model = kzoo.build("lenet", input_shape=(28, 28, 1))
    model.compile(
        keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return float(model.evaluate(x_val, y_val, verbose=0)[1])


@pytest.mark.slow
def test_three_epochs_at_the_suggestion_match_the_best_hand_picked_rate():
    x, y = digits()
    x = x / 255.0
    x_train, y_train, x_val, y_val = x[:4000], y[:4000], x[4000:], y[4000:]
    keras.utils.set_random_seed(0)
    model = kzoo.build("lenet", input_shape=(28, 28, 1))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    suggestion = lr_find(model, x_train, y_train, batch_size=32).suggestion
    best = max(
        _accuracy_after_three_epochs(rate, x_train, y_train, x_val, y_val)
        for rate in (1e-4, 1e-3, 1e-2)
    )
    found = _accuracy_after_three_epochs(suggestion, x_train, y_train, x_val, y_val)
    assert found >= best - 0.01, (suggestion, found, best)


def test_a_sweep_whose_loss_never_falls_says_the_suggestion_means_nothing(caplog):
    from kzoo.loop.lr_finder import _suggestions

    rates = np.geomspace(1e-6, 1.0, 20)
    _suggestions(rates, np.linspace(2.0, 3.0, 20))  # rising from the start
    assert "did not fall" in caplog.text
    caplog.clear()
    _suggestions(rates, np.concatenate([np.linspace(2.0, 0.5, 15), np.linspace(0.6, 3.0, 5)]))
    assert "did not fall" not in caplog.text
