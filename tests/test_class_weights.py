"""kzoo.balanced_class_weight against n_samples / (n_classes * count), computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kzoo.loop import balanced_class_weight


def _by_hand(labels: np.ndarray, classes: int) -> dict[int, float]:
    total = len(labels)
    return {c: total / (classes * int(np.sum(labels == c))) for c in range(classes)}


LABELS = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)


def test_weights_from_indices_and_one_hot_rows():
    expected = _by_hand(LABELS, 4)
    assert balanced_class_weight(LABELS) == pytest.approx(expected)
    assert balanced_class_weight(np.eye(4)[LABELS]) == pytest.approx(expected)
    assert balanced_class_weight(LABELS.reshape(-1, 1)) == pytest.approx(expected)
    # a balanced set weighs every class 1
    assert balanced_class_weight(np.arange(20) % 5) == pytest.approx(dict.fromkeys(range(5), 1.0))


def test_weights_from_a_tf_data_dataset_in_one_pass():
    tf = pytest.importorskip("tensorflow")
    x = np.zeros((len(LABELS), 3), np.float32)
    order = np.random.default_rng(0).permutation(len(LABELS))
    dataset = tf.data.Dataset.from_tensor_slices((x, LABELS[order])).batch(7)
    assert balanced_class_weight(dataset) == pytest.approx(_by_hand(LABELS, 4))
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(4)[LABELS])).batch(16)
    assert balanced_class_weight(one_hot) == pytest.approx(_by_hand(LABELS, 4))


def test_a_class_without_samples_weighs_nothing_and_bad_labels_are_refused(caplog):
    weights = balanced_class_weight(np.array([0, 0, 2, 2]), classes=3)
    assert weights == pytest.approx({0: 4 / 6, 1: 0.0, 2: 4 / 6})
    assert "no sample" in caplog.text
    with pytest.raises(ValueError, match="class indices"):
        balanced_class_weight(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="classes=2"):
        balanced_class_weight(np.array([0, 3]), classes=2)
