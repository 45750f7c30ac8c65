"""kzoo.OneCycle: the rate and momentum follow the formula, save and reload; MomentumCycle."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kzoo.layers import OneCycle
from kzoo.loop import MomentumCycle
from tests.loop_data import digits, small_cnn


def _reference(step, max_lr, total, pct, div, final_div):
    """One-cycle, written out by hand: two half cosines."""
    low, end = max_lr / div, max_lr / div / final_div
    warm = pct * total
    step = min(step, total)
    if step < warm:
        t = step / warm
        return max_lr + (low - max_lr) / 2 * (1 + math.cos(math.pi * t))
    t = (step - warm) / (total - warm)
    return end + (max_lr - end) / 2 * (1 + math.cos(math.pi * t))


def _value(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_the_rate_matches_the_formula_at_key_steps():
    schedule = OneCycle(3e-3, total_steps=200, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    assert _value(schedule, 0) == pytest.approx(3e-3 / 25, rel=1e-6)
    assert _value(schedule, 60) == pytest.approx(3e-3, rel=1e-6)  # the peak, end of warm-up
    assert _value(schedule, 200) == pytest.approx(3e-3 / 25 / 1e4, rel=1e-4)
    assert _value(schedule, 10_000) == pytest.approx(3e-3 / 25 / 1e4, rel=1e-4)
    for step in (1, 17, 30, 59, 61, 100, 130, 199):
        expected = _reference(step, 3e-3, 200, 0.3, 25, 1e4)
        # float32 arithmetic: relative to the peak rate near the end, where the rate is tiny
        assert _value(schedule, step) == pytest.approx(expected, rel=1e-5, abs=3e-3 * 1e-7)


def test_momentum_goes_the_other_way():
    schedule = OneCycle(1e-3, total_steps=100, pct_start=0.25)
    assert schedule.momentum(0) == pytest.approx(0.95)
    assert schedule.momentum(25) == pytest.approx(0.85)
    assert schedule.momentum(100) == pytest.approx(0.95)
    # mid warm-up: half way down, by the cosine
    assert schedule.momentum(12.5) == pytest.approx(0.90, abs=1e-6)


def test_scaled_is_the_same_cycle_at_a_lower_rate():
    schedule = OneCycle(1e-3, total_steps=50)
    slow = schedule.scaled(0.1)
    for step in (0, 10, 30, 50):
        assert _value(slow, step) == pytest.approx(0.1 * _value(schedule, step), rel=1e-5)


def test_the_schedule_serialises_and_reloads_with_a_saved_model(tmp_path):
    schedule = OneCycle(2e-3, total_steps=40, pct_start=0.2)
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config)
    assert isinstance(again, OneCycle) and again.get_config() == schedule.get_config()
    x, y = digits()
    model = small_cnn()
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded = loaded.optimizer._learning_rate
    assert isinstance(reloaded, OneCycle) and reloaded.get_config() == schedule.get_config()
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.optimizer.learning_rate),
        _reference(2, 2e-3, 40, 0.2, 25, 1e4),
        rtol=1e-5,
    )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="pct_start"):
        OneCycle(1e-3, total_steps=10, pct_start=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        OneCycle(1e-3, total_steps=0)


@pytest.mark.slow
@pytest.mark.backend
def test_momentum_cycling_sets_beta_1_and_changes_training():
    x, y = digits()
    x, y = x[:320], y[:320]
    schedule = OneCycle(1e-3, total_steps=20, pct_start=0.5)

    def trained(callbacks):
        model = small_cnn(0)
        model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
        return model

    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.optimizer.beta_1))

    cycled = trained([MomentumCycle(schedule, resolution=0.0), Watch()])
    # beta_1 at each step was the schedule's momentum at that step
    expected = [schedule.momentum(step) for step in range(20)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert min(seen) == pytest.approx(0.85, abs=1e-3)
    plain = trained([])
    # and the optimizer used it: the weights differ from a run at a fixed beta_1 of 0.9
    difference = max(
        float(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).max())
        for a, b in zip(cycled.weights, plain.weights, strict=True)
    )
    assert difference > 1e-6


@pytest.mark.backend
def test_one_cycle_drives_each_group_of_a_per_group_optimizer():
    """The fine-tuning optimizer's shape: new layers at the rate, the conv at a tenth."""
    x, y = digits()
    model = small_cnn(0)
    schedule = OneCycle(1e-3, total_steps=10)
    conv_paths = [v.path for v in model.layers[1].trainable_variables]
    fast, slow = keras.optimizers.Adam(schedule), keras.optimizers.Adam(schedule.scaled(0.1))
    mapping = keras.optimizers.OptimizerMap(fast, {path: slow for path in conv_paths})
    model.compile(keras.optimizers.MultiOptimizer(mapping), "sparse_categorical_crossentropy")
    model.fit(x[:96], y[:96], batch_size=32, epochs=1, verbose=0)
    rates = [float(keras.ops.convert_to_numpy(o.learning_rate)) for o in (fast, slow)]
    expected = _reference(3, 1e-3, 10, 0.25, 25, 1e4)
    np.testing.assert_allclose(rates, [expected, expected / 10], rtol=1e-5)
    # the optimizer's config carries both cycles
    again = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
    schedules = [o._learning_rate for o in again.optimizers]
    assert all(isinstance(s, OneCycle) for s in schedules)
    assert sorted({s.max_lr for s in schedules}) == pytest.approx([1e-4, 1e-3])
