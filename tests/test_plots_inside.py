"""Inside the network: feature maps and occlusion saliency, against NumPy and hand-made models."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image
from test_plots import any_size_model

import kzoo
from kzoo import plots
from kzoo.cli import main
from kzoo.errors import UnknownNameError

MAX_BYTES = 200_000


def _assert_picture(path) -> None:
    """A PNG under the size limit that is not one flat colour."""
    assert path.is_file()
    assert 1_000 < path.stat().st_size < MAX_BYTES
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 5.0


def _linear_model(weights: np.ndarray, bias: np.ndarray, shape=(6, 5, 2)) -> keras.Model:
    """Flatten + Dense without activation: class c's score is ``x.ravel() @ w[:, c] + b[c]``."""
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(weights.shape[1])]
    )
    model.layers[-1].set_weights([weights.astype("float32"), bias.astype("float32")])
    return model


@pytest.fixture(scope="module")
def transfer_model() -> keras.Model:
    """A transfer model: ``image -> vgg_like_base -> head``, the conv layers nested."""
    keras.utils.set_random_seed(0)
    base = kzoo.build("16x16x3:4C3x2-MP2-8C3-MP2-FC10", name="vgg_like")
    return kzoo.transfer(base, head="GAP-FC3", cache_features=False).model


@pytest.fixture(scope="module")
def saved_transfer_model(transfer_model, tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("inside")
    model_path = folder / "flowers.keras"
    transfer_model.save(model_path)
    image_path = folder / "image.npy"
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    np.save(image_path, image)
    return model_path, image_path


def _image(shape=(16, 16, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


# -- occlusion: the maths ---------------------------------------------------------------------


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def _linear_reference(image, weights, bias, class_index, patch, stride, fill) -> np.ndarray:
    """The expected occlusion map of a linear model, worked out pixel by pixel in NumPy."""
    height, width, _ = image.shape
    w = weights[:, class_index].reshape(image.shape)
    clean = float((image * w).sum() + bias[class_index])
    total, covered = np.zeros((height, width)), np.zeros((height, width))
    for top in _starts(height, patch, stride):
        for left in _starts(width, patch, stride):
            occluded = image.astype(np.float64).copy()
            occluded[top : top + patch, left : left + patch] = fill
            drop = clean - float((occluded * w).sum() + bias[class_index])
            total[top : top + patch, left : left + patch] += drop
            covered[top : top + patch, left : left + patch] += 1
    return total / covered


@pytest.mark.backend
@pytest.mark.parametrize(("patch", "stride", "batch_size"), [(2, 2, 64), (3, 1, 4), (4, 3, 1)])
def test_occlusion_of_a_linear_model_matches_a_numpy_reference(patch, stride, batch_size):
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(60, 3)), rng.normal(size=3)
    image = rng.normal(size=(6, 5, 2)).astype(np.float32)
    heat, class_index, score = plots.occlusion_map(
        _linear_model(weights, bias), image, 1, patch=patch, stride=stride, batch_size=batch_size
    )
    fill = image.mean(axis=(0, 1))  # the default: the per-channel mean
    expected = _linear_reference(image, weights, bias, 1, patch, stride, fill)
    assert heat.shape == (6, 5) and heat.dtype == np.float64
    np.testing.assert_allclose(heat, expected, rtol=1e-4, atol=1e-4)
    assert class_index == 1
    np.testing.assert_allclose(score, image.ravel() @ weights[:, 1] + bias[1], rtol=1e-4)


@pytest.mark.backend
def test_occlusion_with_one_pixel_patches_is_the_linear_models_contribution_per_pixel():
    rng = np.random.default_rng(1)
    weights, bias = rng.normal(size=(60, 2)), rng.normal(size=2)
    image = rng.normal(size=(6, 5, 2)).astype(np.float32)
    # a 5-pixel-wide image: the default patch is max(1, 5 // 8) = 1 pixel, stride 1
    heat, class_index, _ = plots.occlusion_map(_linear_model(weights, bias), image, fill=0.0)
    logits = image.ravel() @ weights + bias
    assert class_index == int(np.argmax(logits))
    contribution = image * weights[:, class_index].reshape(image.shape)
    np.testing.assert_allclose(heat, contribution.sum(axis=-1), rtol=1e-4, atol=1e-4)


@pytest.mark.backend
def test_occlusion_takes_a_fill_per_channel():
    rng = np.random.default_rng(2)
    weights, bias = rng.normal(size=(60, 3)), np.zeros(3)
    image = rng.normal(size=(1, 6, 5, 2)).astype(np.float32)  # a batch of one is fine too
    fill = np.array([0.5, -2.0])
    heat, _, _ = plots.occlusion_map(
        _linear_model(weights, bias), image, 2, patch=3, stride=2, fill=fill
    )
    expected = _linear_reference(image[0], weights, bias, 2, 3, 2, fill)
    np.testing.assert_allclose(heat, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.backend
def test_occlusion_of_a_conv_net_matches_scoring_each_occluded_copy_alone():
    keras.utils.set_random_seed(3)
    model = kzoo.build("10x9x3:4C3-MP2-8C3-FC4")
    image = _image((10, 9, 3), seed=3) / 255.0
    heat, class_index, score = plots.occlusion_map(model, image, patch=4, stride=3, batch_size=5)

    def predict(x: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(model(x[None].astype(np.float32)))[0]

    clean = predict(image)
    assert class_index == int(np.argmax(clean))
    np.testing.assert_allclose(score, clean[class_index], rtol=1e-5)
    fill = image.mean(axis=(0, 1))
    total, covered = np.zeros((10, 9)), np.zeros((10, 9))
    for top in (0, 3, 6):  # 10 - 4 = 6: the steps reach the bottom edge
        for left in (0, 3, 5):  # 9 - 4 = 5: one more patch flush with the right edge
            occluded = image.copy()
            occluded[top : top + 4, left : left + 4] = fill
            total[top : top + 4, left : left + 4] += (
                clean[class_index] - predict(occluded)[class_index]
            )
            covered[top : top + 4, left : left + 4] += 1
    np.testing.assert_allclose(heat, total / covered, rtol=1e-4, atol=1e-6)
    assert np.abs(heat).max() > 0


def test_occlusion_default_patch_is_an_eighth_of_the_shorter_side():
    class Recorder:
        """A stand-in model that counts the occluded copies it scores."""

        def __init__(self) -> None:
            self.copies = 0

        def __call__(self, x, training=False):
            self.copies += len(x)
            return np.asarray(x).reshape(len(x), -1)[:, :3].copy()

    recorder = Recorder()
    heat, _, _ = plots.occlusion_map(recorder, np.ones((40, 32, 1)), 0)
    # patch 32 // 8 = 4, stride 2: 19 rows x 15 columns of patches, plus the clean image
    assert heat.shape == (40, 32) and recorder.copies == 19 * 15 + 1


def test_occlusion_rejects_a_patch_larger_than_the_image():
    model = _linear_model(np.ones((60, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"patch \(7x7\) is larger than the image \(6x5\)"):
        plots.occlusion_map(model, np.zeros((6, 5, 2)), patch=7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patch": 0}, r"Received: patch=0"),
        ({"stride": 0}, r"Received: stride=0"),
        ({"batch_size": 0}, r"Received: batch_size=0"),
        ({"fill": [1.0, 2.0, 3.0]}, r"one value per channel \(2\)"),
        ({"class_index": 2}, r"class_index must be in \[0, 2\)"),
    ],
)
def test_occlusion_rejects_bad_options(options, message):
    model = _linear_model(np.ones((60, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=message):
        plots.occlusion_map(model, np.zeros((6, 5, 2)), **options)


def test_occlusion_needs_one_image_and_a_classifier():
    model = _linear_model(np.ones((60, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"needs one image.*Received: shape=\(2, 6, 5, 2\)"):
        plots.occlusion_map(model, np.zeros((2, 6, 5, 2)))
    conv = keras.Sequential([keras.Input((6, 5, 2)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"output is \(batch, classes\)"):
        plots.occlusion_map(conv, np.zeros((6, 5, 2)))


# -- feature maps -----------------------------------------------------------------------------


@pytest.mark.backend
def test_feature_maps_are_the_layers_output():
    keras.utils.set_random_seed(0)
    model = kzoo.build("12x12x1:8C5-MP2-4C3-FC3")
    image = _image((12, 12, 1))
    maps = plots.feature_maps(model, image, "block2_conv1")
    sub_model = keras.Model(model.inputs[0], model.get_layer("block2_conv1").output)
    expected = keras.ops.convert_to_numpy(sub_model(image[None]))[0]
    assert maps.shape == (6, 6, 4)
    np.testing.assert_allclose(maps, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.backend
def test_feature_maps_reach_into_a_nested_base(transfer_model):
    image = _image()
    base = transfer_model.get_layer("vgg_like_base")
    sub_model = keras.Model(base.inputs[0], base.get_layer("block2_conv1").output)
    expected = keras.ops.convert_to_numpy(sub_model(image[None]))[0]
    for name in ("block2_conv1", "vgg_like_base/block2_conv1"):
        maps = plots.feature_maps(transfer_model, image, name)
        assert maps.shape == (8, 8, 8)
        np.testing.assert_allclose(maps, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.backend
def test_feature_maps_read_an_image_file_at_the_model_input_size(transfer_model, tmp_path):
    source = tmp_path / "photo.png"
    pixels = np.zeros((40, 30, 3), np.uint8)
    pixels[10:30, 12:18] = [255, 128, 0]
    Image.fromarray(pixels).save(source)
    from_file = plots.feature_maps(transfer_model, source, "block1_conv1")
    loaded = plots.load_image(source, (16, 16), 3)
    np.testing.assert_allclose(
        from_file, plots.feature_maps(transfer_model, loaded, "block1_conv1"), atol=1e-6
    )


def _photo(folder) -> tuple:
    """A 20x14 RGB file and its pixels."""
    pixels = np.random.default_rng(0).integers(0, 256, (20, 14, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    return folder / "photo.png", pixels.astype(np.float32)


@pytest.mark.backend
def test_feature_maps_read_an_image_file_at_its_own_size_for_any_input_size(tmp_path):
    model = any_size_model()
    source, pixels = _photo(tmp_path)
    maps = plots.feature_maps(model, source, "c1")
    assert maps.shape == (18, 12, 4)  # the file's 20x14, less the 3x3 kernel's border
    np.testing.assert_allclose(maps, plots.feature_maps(model, pixels, "c1"), atol=1e-6)


def test_plot_occlusion_reads_an_image_file_at_its_own_size_for_any_input_size(tmp_path):
    model = any_size_model()
    source, pixels = _photo(tmp_path)
    plots.plot_occlusion(model, source, tmp_path / "file.png", 0, patch=4)
    plots.plot_occlusion(model, pixels, tmp_path / "array.png", 0, patch=4)
    _assert_picture(tmp_path / "file.png")
    with Image.open(tmp_path / "file.png") as a, Image.open(tmp_path / "array.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_feature_maps_name_an_unknown_layer(transfer_model):
    with pytest.raises(UnknownNameError, match="did you mean 'block2_conv1'"):
        plots.feature_maps(transfer_model, _image(), "block2_conv9")


def test_feature_maps_refuse_a_layer_whose_output_is_not_an_image(transfer_model):
    pattern = (
        r"needs a layer whose output is an image.*'head/head_predictions' outputs \(None, 3\)"
        r".*such as 'vgg_like_base/block1_conv1'.*Received: layer='head_predictions'"
    )
    with pytest.raises(ValueError, match=pattern):
        plots.feature_maps(transfer_model, _image(), "head_predictions")


def test_feature_grid_tiles_the_maps_in_channel_order_each_scaled_to_unit_range():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 4, 5)) * np.arange(1, 6)  # very different scales
    maps[..., 4] = 0.0  # a channel that did not respond
    grid = plots.feature_grid(maps, pad=1)
    assert grid.shape == (2 * 4 + 1, 3 * 5 + 1)  # 5 maps -> 3 columns, 2 rows
    for i in range(4):
        r, c = divmod(i, 3)
        tile = grid[1 + r * 4 : 1 + r * 4 + 3, 1 + c * 5 : 1 + c * 5 + 4]
        expected = (maps[..., i] - maps[..., i].min()) / np.ptp(maps[..., i])
        np.testing.assert_allclose(tile, expected)
    np.testing.assert_allclose(grid[5:8, 6:10], 0.0)  # constant map: black
    np.testing.assert_allclose(grid[5:8, 11:15], 1.0)  # the empty sixth tile: background
    assert grid.min() == 0.0 and grid.max() == 1.0


def test_feature_grid_shows_at_most_max_maps():
    maps = np.random.default_rng(0).normal(size=(1, 2, 3, 70))  # a batch of one is fine too
    assert plots.feature_grid(maps).shape == (8 * 3 + 1, 8 * 4 + 1)  # 64 maps: 8 x 8
    assert plots.feature_grid(maps[0], max_maps=3, pad=0).shape == (2 * 2, 2 * 3)
    first = plots.feature_grid(maps[0, ..., :1], pad=0)
    np.testing.assert_allclose(plots.feature_grid(maps[0], max_maps=1, pad=0), first)


def test_feature_grid_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(height, width, channels\). Received: shape=\(4, 4\)"):
        plots.feature_grid(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="Received: max_maps=0"):
        plots.feature_grid(np.zeros((4, 4, 2)), max_maps=0)


# -- pictures and the command line ------------------------------------------------------------


def test_plot_feature_maps_and_occlusion_of_a_nested_transfer_model(transfer_model, tmp_path):
    image = _image()
    first = plots.plot_feature_maps(transfer_model, image, tmp_path / "f.png")
    assert first == tmp_path / "f.png"
    _assert_picture(first)
    deeper = plots.plot_feature_maps(
        transfer_model, image, tmp_path / "f2.png", layer="block2_conv1", max_maps=3
    )
    _assert_picture(deeper)
    occlusion = plots.plot_occlusion(transfer_model, image, tmp_path / "o.png", 1, patch=4)
    assert occlusion == tmp_path / "o.png"
    _assert_picture(occlusion)


def test_plot_feature_maps_needs_a_conv_layer_when_none_is_named(tmp_path):
    model = _linear_model(np.ones((60, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"plot_feature_maps needs a model with a Conv2D"):
        plots.plot_feature_maps(model, np.zeros((6, 5, 2)), tmp_path / "f.png")


def test_cli_plot_features_and_occlusion_end_to_end(saved_transfer_model, tmp_path, capsys):
    model, image = (str(path) for path in saved_transfer_model)
    features, deeper, occlusion = tmp_path / "f.png", tmp_path / "f2.png", tmp_path / "o.png"
    assert main(["plot", "features", model, image, "--out", str(features)]) == 0
    args = ["--layer", "vgg_like_base/block2_conv1", "--maps", "4", "--out", str(deeper)]
    assert main(["plot", "features", model, image, *args]) == 0
    args = ["--class", "2", "--patch", "4", "--stride", "2", "--out", str(occlusion)]
    assert main(["plot", "occlusion", model, image, *args]) == 0
    for path in (features, deeper, occlusion):
        _assert_picture(path)
    out = capsys.readouterr().out
    assert all(str(path) in out for path in (features, deeper, occlusion))


def test_cli_plot_features_and_occlusion_report_bad_arguments(saved_transfer_model, capsys):
    model, image = (str(path) for path in saved_transfer_model)
    assert main(["plot", "features", model, image, "--layer", "block1_conv9"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'block1_conv1'" in err and "Traceback" not in err
    assert main(["plot", "features", model, image, "--layer", "head_avg_pool"]) == 1
    assert "needs a layer whose output is an image" in capsys.readouterr().err
    assert main(["plot", "occlusion", model, image, "--patch", "20"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the occlusion patch (20x20) is larger than the image (16x16)")
