"""kzoo.interpret: confusion matrix, per-class scores, top losses with file names; TTA."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from kzoo.loop import interpret, predict_tta
from tests.loop_data import digits, small_cnn


def _write_folder(root: Path, x: np.ndarray, labels: np.ndarray) -> list[str]:
    names = []
    for index, (image, label) in enumerate(zip(x, labels, strict=True)):
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"img_{index:05d}.png"
        Image.fromarray(image[..., 0].astype(np.uint8), mode="L").save(folder / name)
        names.append(name)
    return names


@pytest.mark.backend
def test_the_top_losses_find_deliberately_flipped_labels_by_file_name(tmp_path):
    x, y = digits()
    x, y = x[:2000], y[:2000].copy()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), size=40, replace=False)  # 2 %
    y[flipped] = (y[flipped] + rng.integers(1, 10, size=40)) % 10
    names = _write_folder(tmp_path / "train", x, y)
    model = small_cnn(0)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    found = interpret(model, tmp_path / "train")
    top = found.top_losses(50)
    assert all(t.path is not None for t in top)
    wrong = {names[i] for i in flipped}
    caught = sum(Path(t.path).name in wrong for t in top)
    assert caught >= 0.7 * len(wrong), caught
    # the records say what the folder says: actual class from the folder name
    first = top[0]
    assert Path(first.path).parent.name == first.label
    assert found.class_names == [f"digit_{d}" for d in range(10)]


def test_confusion_matrix_most_confused_and_per_class_against_numpy():
    x, y = digits()
    x, y = x[:300], y[:300]
    model = small_cnn(0)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    found = interpret(model, (x, y))
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    matrix = np.zeros((10, 10), int)
    for actual, guess in zip(y, predicted, strict=True):
        matrix[actual, guess] += 1
    np.testing.assert_array_equal(found.confusion_matrix, matrix)
    scores = found.per_class()
    for c in range(10):
        tp = np.sum((predicted == c) & (y == c))
        precision = tp / max(np.sum(predicted == c), 1)
        recall = tp / np.sum(y == c)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert scores[str(c)]["precision"] == pytest.approx(precision)
        assert scores[str(c)]["recall"] == pytest.approx(recall)
        assert scores[str(c)]["f1"] == pytest.approx(f1)
    pairs = found.most_confused()
    counts = [n for *_, n in pairs]
    assert counts == sorted(counts, reverse=True)
    a, p, n = pairs[0]
    assert matrix[int(a), int(p)] == n and a != p
    # top losses: the cross-entropy of the true class, largest first
    probabilities = model.predict(x, verbose=0).astype(np.float64)
    losses = -np.log(probabilities[np.arange(len(y)), y])
    top = found.top_losses(5)
    np.testing.assert_allclose([t.loss for t in top], np.sort(losses)[::-1][:5], rtol=1e-5)
    assert top[0].path is None


def test_a_dataset_keeps_its_worst_images_for_the_plot(tmp_path):
    tf = pytest.importorskip("tensorflow")
    x, y = digits()
    x, y = x[:200], y[:200]
    model = small_cnn(0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    found = interpret(model, dataset, keep=6)
    assert len(found.labels) == 200
    path = found.plot_top_losses(tmp_path / "top.png", k=4)
    assert path.stat().st_size > 0
    plotted = found.confusion_matrix.sum()
    assert plotted == 200


def test_predict_tta_averages_the_views_by_hand():
    x, _ = digits()
    x = x[:8]
    model = small_cnn(0)
    averaged = predict_tta(model, x, flip=True, crops=1, scale=0.75)
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1, :], verbose=0)
    # the top-left crop, 21x21, resized back to 28x28 bilinearly
    crop = keras.ops.image.resize(x[:, :21, :21, :], (28, 28), interpolation="bilinear")
    cropped = model.predict(keras.ops.convert_to_numpy(crop), verbose=0)
    np.testing.assert_allclose(averaged, (plain + mirrored + cropped) / 3, rtol=1e-5, atol=1e-7)
    assert interpret(model, (x, np.zeros(8, int)), tta={"flip": False, "crops": 0}).probabilities[
        0
    ] == pytest.approx(plain[0], rel=1e-5)
