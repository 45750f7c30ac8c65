"""Plots: headless PNGs that are small and not blank; saliency gradients against NumPy."""

from __future__ import annotations

import json
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from kzoo import plots
from kzoo.cli import main
from kzoo.errors import UnknownNameError

MAX_BYTES = 200_000


def _assert_picture(path, min_colours: int = 8) -> np.ndarray:
    """The file is a PNG under the size limit with real content (not one flat colour)."""
    assert path.is_file()
    assert 1_000 < path.stat().st_size < MAX_BYTES
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 5.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= min_colours
    return pixels


def _conv_model(channels: int = 1) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((12, 12, channels)),
            keras.layers.Conv2D(8, 5, name="block1_conv1"),
            keras.layers.Conv2D(4, 3, name="block1_conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="predictions"),
        ]
    )


def _linear_model(weights: np.ndarray, activation: str | None = None) -> keras.Model:
    """Flatten + Dense: the input gradient of class c's logit is column c."""
    model = keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(weights.shape[1], activation=activation),
        ]
    )
    model.layers[-1].set_weights([weights.astype("float32"), np.zeros(weights.shape[1], "float32")])
    return model


def test_kernel_grid_scales_each_kernel_to_unit_range_in_its_tile():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 4, 1, 5)) * np.arange(1, 6)  # very different scales
    kernel[..., 4] = 7.0  # a constant kernel
    grid = plots.kernel_grid(kernel, pad=1)
    assert grid.shape == (2 * 4 + 1, 3 * 5 + 1, 3)  # 5 kernels -> 3 columns, 2 rows
    for i in range(4):
        r, c = divmod(i, 3)
        tile = grid[1 + r * 4 : 1 + r * 4 + 3, 1 + c * 5 : 1 + c * 5 + 4, 0]
        expected = (kernel[..., 0, i] - kernel[..., 0, i].min()) / np.ptp(kernel[..., 0, i])
        np.testing.assert_allclose(tile, expected)
    np.testing.assert_allclose(grid[5:8, 6:10], 0.5)  # constant kernel: mid grey


def test_kernel_grid_shows_three_input_channels_as_colour():
    kernel = np.zeros((2, 2, 3, 1))
    kernel[..., 0, 0] = [[1, 0], [0, 0]]  # red only in the top-left pixel
    grid = plots.kernel_grid(kernel, pad=0)
    np.testing.assert_allclose(grid[0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(grid[1, 1], [0.0, 0.0, 0.0])


def test_plot_kernels_draws_the_first_conv_layer(tmp_path):
    written = plots.plot_kernels(_conv_model(), tmp_path / "k.png")
    assert written == tmp_path / "k.png"
    _assert_picture(written)


def test_plot_kernels_accepts_a_named_layer_or_the_layer_itself(tmp_path):
    model = _conv_model(channels=3)
    by_name = plots.plot_kernels(model, tmp_path / "named.png", layer="block1_conv2")
    by_layer = plots.plot_kernels(model.get_layer("block1_conv2"), tmp_path / "layer.png")
    _assert_picture(by_name)
    _assert_picture(by_layer)
    first = _assert_picture(plots.plot_kernels(model, tmp_path / "first.png"))
    assert first.shape != _assert_picture(by_name).shape or not np.array_equal(
        first, _assert_picture(by_name)
    )


def test_plot_kernels_names_a_missing_layer(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'block1_conv1'"):
        plots.plot_kernels(_conv_model(), tmp_path / "k.png", layer="block1_conv")


def test_plot_kernels_needs_a_conv_layer(tmp_path):
    with pytest.raises(ValueError, match=r"needs a model with a Conv2D layer\. Received"):
        plots.plot_kernels(_linear_model(np.ones((60, 2))), tmp_path / "k.png")


@pytest.mark.backend
def test_saliency_of_a_linear_model_is_its_weight_column():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(60, 3))
    image = rng.normal(size=(6, 5, 2)).astype("float32")
    saliency, class_index, score = plots.saliency_map(_linear_model(weights), image, 2)
    expected = np.abs(weights[:, 2].reshape(6, 5, 2)).max(axis=-1)
    np.testing.assert_allclose(saliency, expected, rtol=1e-5)
    assert class_index == 2
    np.testing.assert_allclose(score, image.reshape(-1) @ weights[:, 2], rtol=1e-4)


@pytest.mark.backend
def test_saliency_of_a_softmax_classifier_uses_the_logit_and_restores_the_softmax():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(60, 3)) * 5.0  # a confident, saturated softmax
    image = rng.normal(size=(6, 5, 2)).astype("float32")
    model = _linear_model(weights, activation="softmax")
    saliency, class_index, score = plots.saliency_map(model, image)
    logits = image.reshape(-1) @ weights
    assert class_index == int(np.argmax(logits))
    expected = np.abs(weights[:, class_index].reshape(6, 5, 2)).max(axis=-1)
    np.testing.assert_allclose(saliency, expected, rtol=1e-5)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(score, probabilities[class_index], rtol=1e-4)
    output = keras.ops.convert_to_numpy(model(image[None]))
    np.testing.assert_allclose(output.sum(), 1.0, rtol=1e-5)  # softmax is back


@pytest.mark.backend
def test_smoothgrad_saliency_matches_a_numpy_reference_through_a_relu_layer():
    rng = np.random.default_rng(2)
    w1, b1, w2 = rng.normal(size=(60, 16)), rng.normal(size=16), rng.normal(size=(16, 3))
    model = keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    model.layers[1].set_weights([w1.astype("float32"), b1.astype("float32")])
    model.layers[2].set_weights([w2.astype("float32"), np.zeros(3, "float32")])
    image = rng.normal(size=(6, 5, 2)).astype("float32")

    def reference(samples: int) -> np.ndarray:
        batch = np.repeat(image[None], samples, axis=0).astype(np.float32)
        if samples > 1:
            scale = 0.1 * float(image.max() - image.min())
            batch += np.random.default_rng(7).normal(0.0, scale, batch.shape).astype(np.float32)
        flat = batch.reshape(samples, -1)
        active = (flat @ w1 + b1) > 0  # ReLU passes the gradient where its input is positive
        gradients = (active * w2[:, 1]) @ w1.T
        return np.abs(gradients.mean(axis=0).reshape(6, 5, 2)).max(axis=-1)

    for samples in (1, 8):
        saliency, _, _ = plots.saliency_map(model, image, 1, samples=samples, seed=7)
        np.testing.assert_allclose(saliency, reference(samples), rtol=1e-4, atol=1e-5)
    assert not np.allclose(reference(1), reference(8))


def test_saliency_rejects_zero_samples():
    with pytest.raises(ValueError, match="Received: samples=0"):
        plots.saliency_map(_linear_model(np.ones((60, 2))), np.zeros((6, 5, 2)), samples=0)


@pytest.mark.backend
def test_saliency_explains_the_predicted_class_by_default():
    weights = np.zeros((60, 3))
    weights[:10, 1] = 1.0  # only the first pixels matter, and only to class 1
    image = np.ones((1, 6, 5, 2), "float32")
    saliency, class_index, _ = plots.saliency_map(_linear_model(weights), image)
    assert class_index == 1
    assert saliency[0].sum() > 0 and saliency[1:].sum() == 0


@pytest.mark.backend
def test_plot_saliency_draws_image_and_map(tmp_path):
    model = _conv_model()
    image = np.random.default_rng(0).uniform(0, 255, size=(12, 12, 1)).astype("float32")
    _assert_picture(plots.plot_saliency(model, image, tmp_path / "s.png", class_index=0))


def test_plot_saliency_reads_an_image_file_at_the_model_input_size(tmp_path):
    source = tmp_path / "digit.png"
    pixels = np.zeros((40, 30, 3), np.uint8)
    pixels[10:30, 12:18] = 255
    Image.fromarray(pixels).save(source)
    loaded = plots.load_image(source, (12, 12), 1)
    assert loaded.shape == (12, 12, 1) and loaded.max() > 200 and loaded.min() == 0
    _assert_picture(plots.plot_saliency(_conv_model(), source, tmp_path / "s.png"))


@pytest.mark.backend
@pytest.mark.parametrize("nested", [False, True])
def test_saliency_differentiates_the_input_of_a_final_softmax_layer(nested):
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(60, 3)) * 20.0  # a saturated softmax: its own gradient is ~0
    image = rng.normal(size=(6, 5, 2)).astype("float32")
    logits = keras.layers.Dense(3)
    head = [logits, keras.layers.Softmax()]
    if nested:  # a transfer model ends in its nested head
        head = [keras.Sequential([keras.Input((60,)), *head], name="head")]
    model = keras.Sequential([keras.Input((6, 5, 2)), keras.layers.Flatten(), *head])
    logits.set_weights([weights.astype("float32"), np.zeros(3, "float32")])
    saliency, class_index, score = plots.saliency_map(model, image)
    dense = plots.saliency_map(_linear_model(weights, activation="softmax"), image)
    np.testing.assert_allclose(saliency, dense[0], rtol=1e-6)
    assert class_index == dense[1]
    np.testing.assert_allclose(score, dense[2], rtol=1e-6)
    expected = np.abs(weights[:, class_index].reshape(6, 5, 2)).max(axis=-1)
    np.testing.assert_allclose(saliency, expected, rtol=1e-5)
    assert saliency.max() > 1.0
    output = keras.ops.convert_to_numpy(model(image[None]))
    np.testing.assert_allclose(output.sum(), 1.0, rtol=1e-5)  # still the softmax model


def any_size_model() -> keras.Model:
    """A classifier on images of any size, like kzoo.load(name, include_top=False) + a head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_plot_saliency_reads_an_image_file_at_its_own_size_for_any_input_size(tmp_path):
    source = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (20, 14, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source)
    model = any_size_model()
    from_file = plots.plot_saliency(model, source, tmp_path / "file.png", samples=2)
    array = plots.plot_saliency(model, pixels.astype("float32"), tmp_path / "a.png", samples=2)
    np.testing.assert_array_equal(_assert_picture(from_file), _assert_picture(array))


def test_load_image_reads_the_channels_a_model_takes_or_says_to_pass_an_array(tmp_path):
    from kzoo.plots.figures import load_image

    path = tmp_path / "rgb.png"
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(path)
    assert [load_image(path, (4, 6), c).shape for c in (1, 3, 4)] == [(4, 6, c) for c in (1, 3, 4)]
    with pytest.raises(ValueError, match=r"takes 2; pass the input as an array"):
        load_image(path, (4, 6), 2)


def test_load_image_keeps_the_files_size_where_the_size_is_none(tmp_path):
    source = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (20, 14, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source)
    np.testing.assert_array_equal(plots.load_image(source, (None, None), 3), pixels)
    narrow = np.asarray(Image.fromarray(pixels).resize((7, 20)), dtype=np.float32)
    np.testing.assert_array_equal(plots.load_image(source, (None, 7), 3), narrow)
    short = np.asarray(Image.fromarray(pixels).convert("L").resize((14, 5)), dtype=np.float32)
    np.testing.assert_array_equal(plots.load_image(source, (5, None), 1), short[..., None])


def test_plot_saliency_rejects_a_batch_of_several_images(tmp_path):
    with pytest.raises(ValueError, match=r"needs one image.*Received: shape=\(2, 12, 12, 1\)"):
        plots.plot_saliency(_conv_model(), np.zeros((2, 12, 12, 1)), tmp_path / "s.png")


def _two_phase_history() -> dict[str, list[float]]:
    epochs = np.arange(8)
    return {
        "loss": list(2.0 * np.exp(-epochs / 3)),
        "val_loss": list(2.2 * np.exp(-epochs / 4)),
        "accuracy": list(1 - 0.9 * np.exp(-epochs / 3)),
        "val_accuracy": list(1 - 0.9 * np.exp(-epochs / 4)),
    }


def test_plot_history_marks_the_phase_boundary(tmp_path):
    curves = _two_phase_history()
    plain = _assert_picture(plots.plot_history(curves, tmp_path / "plain.png"))
    marked = _assert_picture(plots.plot_history(curves, tmp_path / "m.png", phase_boundary=4))
    assert plain.shape == marked.shape and not np.array_equal(plain, marked)


def test_plot_history_accepts_an_object_with_history_and_phase_boundary(tmp_path):
    class TwoPhases:
        history = _two_phase_history()
        phase_boundary = 4

    from_object = _assert_picture(plots.plot_history(TwoPhases(), tmp_path / "o.png"))
    explicit = _assert_picture(
        plots.plot_history(_two_phase_history(), tmp_path / "d.png", phase_boundary=4)
    )
    np.testing.assert_array_equal(from_object, explicit)


def test_plot_history_accepts_a_keras_history(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    history = model.fit(x, x.sum(axis=1), epochs=3, verbose=0)
    _assert_picture(plots.plot_history(history, tmp_path / "h.png"))


def test_plot_history_rejects_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="Received: dict"):
        plots.plot_history({}, tmp_path / "h.png")


def test_missing_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'kzoo\[plot\]'"):
        plots.plot_history(_two_phase_history(), tmp_path / "h.png")


def test_cli_plot_kernels_and_saliency_from_a_saved_model(tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    _conv_model().save(model_path)
    image_path = tmp_path / "image.npy"
    np.save(image_path, np.random.default_rng(0).uniform(size=(12, 12, 1)).astype("float32"))

    assert main(["plot", "kernels", str(model_path), "--out", str(tmp_path / "k.png")]) == 0
    assert (
        main(
            ["plot", "saliency", str(model_path), str(image_path), "--out", str(tmp_path / "s.png")]
        )
        == 0
    )
    _assert_picture(tmp_path / "k.png")
    _assert_picture(tmp_path / "s.png")
    assert str(tmp_path / "s.png") in capsys.readouterr().out


def test_cli_plot_history_from_json(tmp_path):
    history_path = tmp_path / "history.json"
    history_path.write_text(json.dumps({"history": _two_phase_history(), "phase_boundary": 4}))
    assert main(["plot", "history", str(history_path), "--out", str(tmp_path / "h.png")]) == 0
    _assert_picture(tmp_path / "h.png")


def test_cli_plot_reports_a_missing_file_without_a_traceback(tmp_path, capsys):
    assert main(["plot", "kernels", str(tmp_path / "nope.keras"), "--out", "k.png"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no such file") and "Traceback" not in err
