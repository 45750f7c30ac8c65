"""Transfer and the practitioner's loop: lr_find per phase, one-cycle, balanced weights, report."""

from __future__ import annotations

import logging
import re

import keras
import numpy as np
import pytest

import kzoo
from kzoo.errors import TransferError
from kzoo.layers import OneCycle

SHAPE = (16, 16, 3)
QUIET = {"verbose": 0, "diagnostics": False, "batch_size": 8}


def _transfer(**kwargs) -> kzoo.Transfer:
    keras.utils.set_random_seed(0)
    base = kzoo.build("8C3+BN-MP2-8C3-MP2-FC10", input_shape=SHAPE, name="tiny")
    return kzoo.transfer(base, head="GAP-FC8-FC3", **kwargs)


def _data(n: int = 48, seed: int = 0, weights=(1, 1, 1)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.asarray(weights, float) / sum(weights)
    y = rng.choice(3, size=n, p=p)
    x = rng.uniform(0, 120, size=(n, *SHAPE))
    x[np.arange(n), :, :, y] += 120
    return (x / 255).astype("float32"), y.astype("int32")


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


@pytest.mark.parametrize("phase", ["frozen", "fine_tune"])
def test_lr_find_on_either_phase_leaves_the_model_as_it_was(phase):
    clf = _transfer()
    x, y = _data()
    before = _weights(clf.model)
    result = clf.lr_find(x, y, phase=phase, steps=20, batch_size=8)
    assert clf.lr_finder is result
    assert 0 < len(result.learning_rates) <= 20 and result.suggestion > 0
    for a, b in zip(before, _weights(clf.model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not clf.base.trainable and clf.head.trainable  # frozen again for phase 1
    with pytest.raises(TransferError, match="phase must be one of"):
        clf.lr_find(x, y, phase="both")


def test_one_cycle_drives_both_phases_and_keeps_the_pretrained_groups_lower_rate(caplog):
    clf = _transfer(learning_rate=1e-2, fine_tune_learning_rate=1e-3)
    x, y = _data(n=48)
    with caplog.at_level(logging.WARNING):
        clf.fit(x, y, frozen_epochs=2, fine_tune_epochs=1, schedule="one_cycle", **QUIET)
    assert "retracing" not in caplog.text  # the momentum cycle's retraces are expected
    optimizer = clf.model.optimizer
    groups = list(getattr(optimizer, "optimizers", [optimizer]))
    cycles = [g._learning_rate for g in groups]
    assert all(isinstance(c, OneCycle) for c in cycles)
    assert sorted(c.max_lr for c in cycles) == pytest.approx([1e-4, 1e-3])  # pretrained x0.1
    assert {c.total_steps for c in cycles} == {6}  # 1 epoch of 48 / 8 batches
    # each group ran its cycle to the end: its rate is the cycle's last, far below the peak
    for group, cycle in zip(groups, cycles, strict=True):
        rate = float(keras.ops.convert_to_numpy(group.learning_rate))
        assert rate == pytest.approx(cycle.final_lr, rel=1e-3)
    # and the model reports those end-of-cycle rates, the pretrained group's ten times lower
    reported = clf.learning_rates()
    head_rate = reported[clf.head.trainable_variables[0].path]
    base_rate = reported[clf.base.trainable_variables[0].path]
    assert head_rate == pytest.approx(min(c.final_lr for c in cycles) * 10, rel=1e-3)
    assert base_rate == pytest.approx(min(c.final_lr for c in cycles), rel=1e-3)
    # beta_1 was cycled back up towards its maximum at the end of the run
    assert all(g.beta_1 > 0.9 for g in groups)
    with pytest.raises(TransferError, match="schedule must be one of"):
        clf.fit_frozen(x, y, epochs=1, schedule="cosine", **QUIET)


def test_one_cycle_on_cached_features_counts_the_heads_batches(monkeypatch):
    clf = _transfer(learning_rate=1e-2)
    x, y = _data(n=40)
    seen = []
    real = clf._compile

    def spy(model, lr, *args, **kwargs):
        seen.append(kwargs.get("cycle"))
        return real(model, lr, *args, **kwargs)

    monkeypatch.setattr(clf, "_compile", spy)
    clf.fit_frozen(x, y, epochs=3, cache_features=True, head_batch_size=16, schedule="one_cycle",
                   **QUIET)  # fmt: skip
    cycle = next(c for c in seen if c is not None)
    assert cycle.total_steps == 3 * 3  # 40 rows in batches of 16: 3 per epoch


def test_balanced_class_weight_reaches_both_phases(monkeypatch):
    clf = _transfer()
    x, y = _data(n=60, weights=(8, 1, 1))
    seen = []
    real_fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        seen.append(kwargs.get("class_weight"))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=1, class_weight="balanced", **QUIET)
    counts = np.bincount(y, minlength=3)
    expected = {i: len(y) / (3 * c) for i, c in enumerate(counts)}
    assert len(seen) == 2
    for weights in seen:
        assert weights == pytest.approx(expected)
    with pytest.raises(TransferError, match="class_weight must be"):
        clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=0, class_weight="inverse", **QUIET)


def test_the_report_shows_both_phases_the_lr_curve_and_the_errors(tmp_path):
    clf = _transfer()
    x, y = _data()
    clf.lr_find(x, y, steps=15, batch_size=8)
    clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=1, **QUIET)
    path = clf.report(tmp_path / "run.html", validation_data=(x, y))
    page = path.read_text(encoding="utf-8")
    for section in ("Learning curves", "Learning-rate finder", "Confusion matrix", "Top losses"):
        assert section in page
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)  # nothing outside the page
