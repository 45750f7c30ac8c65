"""Inside the network: feature taps, perceptual and style losses, style transfer, fooling.

Features are checked against each layer's output computed by hand; the losses against NumPy
references; the image optimisers by what they must achieve (losses that fall, images the
classifier is sure about). The zoo model is a tiny VGG-19 with synthetic He-scaled weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from test_zoo import tiny_manifest, write_source

import kzoo
from kzoo import synthetic
from kzoo.cli import main
from kzoo.errors import UnknownNameError
from kzoo.gradients import input_gradient
from kzoo.input_optimization import StyleTransfer, fool
from kzoo.losses import PerceptualLoss, StyleLoss, gram_matrix, total_variation


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.fixture
def tiny(tmp_path) -> dict:
    """A manifest file naming model "tiny" (TINY_VGG19), and its weights as a local file."""
    path, fmt, mode, _ = write_source("keras_h5", tmp_path)
    elsewhere = {"urls": ["https://weights.kzoo.invalid/tiny.h5"]}
    manifest = tiny_manifest(
        {"x": {"format": fmt, "preprocessing": mode, "files": {"top": elsewhere}}}
    )
    manifest_path = tmp_path / "tiny.json"
    manifest_path.write_text(json.dumps(manifest))
    return {"model": "tiny", "weights": str(path), "manifest": str(manifest_path)}


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def by_hand(model: keras.Model, layer: str, x: np.ndarray) -> np.ndarray:
    return numpy(keras.Model(model.inputs[0], model.get_layer(layer).output)(x))


# --- features ---------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize("size", [16, 24])
def test_features_of_a_dsl_model_are_its_layer_outputs(size):
    model = kzoo.build("4C3x2-MP2-8C3+BN-MP2-16C3", input_shape=(None, None, 3))
    taps = kzoo.features(model, ["block1_conv2", "block2_conv1_bn", "block3_conv1"])
    x = images(2, size)
    got = taps(x)
    for layer in ("block1_conv2", "block2_conv1_bn", "block3_conv1"):
        np.testing.assert_allclose(numpy(got[layer]), by_hand(model, layer, x), atol=1e-6)


@pytest.mark.backend
@pytest.mark.parametrize("size", [32, 64])
def test_features_of_a_zoo_name_load_its_weights_and_keep_its_preprocessing(tiny, size):
    taps = kzoo.features(tiny["model"], weights=tiny["weights"], manifest=tiny["manifest"])
    assert list(taps.output) == [
        "block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4"
    ]  # fmt: skip
    assert "preprocessing" in [layer.name for layer in taps.layers]
    loaded = kzoo.load(tiny["model"], weights=tiny["weights"], manifest=tiny["manifest"],
                       include_top=False)  # fmt: skip
    x = images(2, size)
    got = taps(x)
    for layer in taps.output:
        np.testing.assert_allclose(numpy(got[layer]), by_hand(loaded, layer, x), rtol=1e-5,
                                   atol=1e-5)  # fmt: skip


@pytest.mark.backend
@pytest.mark.parametrize("size", [16, 24])
def test_features_reach_inside_the_nested_base_of_a_transfer_model(size):
    base = kzoo.build("4C3x2-MP2-8C3-MP2-FC10", input_shape=(size, size, 3), name="vgg_like")
    clf = kzoo.transfer(base, head="GAP-FC3", cache_features=False)
    taps = kzoo.features(clf.model, ["block1_conv2", "vgg_like_base/block2_conv1", "head"])
    assert sorted(taps.output) == [
        "head",
        "vgg_like_base/block1_conv2",
        "vgg_like_base/block2_conv1",
    ]
    x = images(2, size)
    got = taps(x)
    np.testing.assert_allclose(
        numpy(got["vgg_like_base/block1_conv2"]), by_hand(clf.base, "block1_conv2", x), atol=1e-6
    )
    np.testing.assert_allclose(numpy(got["head"]), numpy(clf.model(x)), atol=1e-6)


def test_a_plain_keras_model_shows_graph_disconnected_where_features_do_not():
    base = kzoo.build("8x8x3:4C3-MP2-FC10", name="b")
    clf = kzoo.transfer(base, head="GAP-FC2", cache_features=False)
    inner = clf.base.get_layer("block1_conv1")
    with pytest.raises(ValueError):
        keras.Model(clf.model.input, inner.output)  # what users hit today
    assert "b_base/block1_conv1" in kzoo.features(clf.model, ["block1_conv1"]).output


def test_unknown_and_ambiguous_layer_names_are_clear_errors():
    base = kzoo.build("8x8x3:4C3-MP2-FC10", name="b")
    clf = kzoo.transfer(base, head="GAP-FC2", cache_features=False)
    with pytest.raises(UnknownNameError, match="did you mean 'block1_conv1'"):
        kzoo.features(clf.model, ["block1_conv"])
    twins = keras.Sequential(
        [kzoo.build("8x8x3:4C3", name="left"), kzoo.build("8x8x4:4C3", name="right")]
    )
    with pytest.raises(UnknownNameError, match="left/block1_conv1, right/block1_conv1"):
        kzoo.features(twins, ["block1_conv1"])
    with pytest.raises(kzoo.KzooError, match="needs pooling layers"):
        kzoo.features(kzoo.build("8x8x3:4C3"), "blocks")


@pytest.mark.backend
def test_a_feature_model_saves_and_reloads_with_the_same_outputs(tmp_path):
    base = kzoo.build("16x16x3:4C3+BNx2-MP2-8C3-MP2-FC10", name="b")
    clf = kzoo.transfer(base, head="GAP-FC3", cache_features=False)
    taps = kzoo.features(clf.model, ["block1_conv2", "head/head_predictions"])
    taps.save(tmp_path / "taps.keras")
    again = keras.saving.load_model(tmp_path / "taps.keras")
    x = images(2, 16)
    for key, value in taps(x).items():
        np.testing.assert_allclose(numpy(again(x)[key]), numpy(value), atol=1e-6)


# --- gradients and losses --------------------------------------------------------------


@pytest.mark.backend
def test_input_gradients_are_exact_for_a_known_function():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([np.array([[1.0], [-2.0], [0.5]], np.float32)])

    def objective(x):
        out = model(x)
        return keras.ops.sum(out**2), out

    step = input_gradient(objective, [model])
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    value, grad, _ = step(keras.ops.convert_to_tensor(x))
    w = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(float(numpy(value)), (x @ w).item() ** 2, rtol=1e-6)
    np.testing.assert_allclose(numpy(grad), 2 * (x @ w).item() * w[None], rtol=1e-6)


@pytest.mark.backend
def test_gram_matrix_and_total_variation_match_numpy():
    f = np.random.default_rng(1).normal(size=(2, 5, 4, 3)).astype(np.float32)
    flat = f.reshape(2, 20, 3)
    np.testing.assert_allclose(numpy(gram_matrix(f)), np.einsum("bpc,bpd->bcd", flat, flat) / 20,
                               rtol=1e-5)  # fmt: skip
    x = images(2, 6, seed=3)
    down, right = x[:, 1:, :-1] - x[:, :-1, :-1], x[:, :-1, 1:] - x[:, :-1, :-1]
    expected = (down**2 + right**2).mean(axis=(1, 2, 3)) / 255**2
    np.testing.assert_allclose(numpy(total_variation(x)), expected, rtol=1e-5)


@pytest.mark.backend
def test_perceptual_and_style_losses_match_numpy_on_the_features(tiny):
    layers = {"block1_conv2": 0.25, "block3_conv4": 0.75}
    perceptual = PerceptualLoss(layers, **tiny, reduction="none")
    style = StyleLoss(layers, **tiny, reduction="none")
    a, b = images(2, 32, seed=4), images(2, 32, seed=5)
    fa, fb = perceptual.feature_model(a), perceptual.feature_model(b)
    want_p = sum(
        w * ((numpy(fa[n]) - numpy(fb[n])) ** 2).mean(axis=(1, 2, 3)) for n, w in layers.items()
    )
    np.testing.assert_allclose(numpy(perceptual(a, b)), want_p, rtol=1e-4)

    def gram(f):
        f = numpy(f).reshape(f.shape[0], -1, f.shape[-1]).astype(np.float64)
        return np.einsum("bpc,bpd->bcd", f, f) / f.shape[1]

    want_s = sum(
        w * ((gram(fa[n]) - gram(fb[n])) ** 2).mean(axis=(1, 2)) for n, w in layers.items()
    )
    np.testing.assert_allclose(numpy(style(a, b)), want_s, rtol=1e-4)
    assert float(numpy(perceptual(a, a)).max()) == 0.0


def mixed_float16_twins(shape: tuple[int, int, int]) -> tuple[keras.Model, keras.Model]:
    """The same small DSL network built under mixed_float16 and under float32."""
    with kzoo.backend.dtype_policy_scope("mixed_float16"):
        keras.utils.set_random_seed(0)
        mixed = kzoo.build("8C3-MP2-16C3-MP2-FC10", input_shape=shape)
    plain = kzoo.build("8C3-MP2-16C3-MP2-FC10", input_shape=shape)
    plain.set_weights(mixed.get_weights())
    return mixed, plain


@pytest.mark.backend
def test_gram_matrix_and_total_variation_of_float16_inputs_are_summed_in_float32():
    # float16 tops out at 65504: 90,000 positions of 1, or 4,096 of 10 * 10, overflow it
    np.testing.assert_allclose(numpy(gram_matrix(np.ones((1, 300, 300, 2), "float16"))), 1.0)
    np.testing.assert_allclose(
        numpy(gram_matrix(np.full((1, 64, 64, 2), 10.0, "float16"))), 100.0, rtol=1e-6
    )
    f = np.random.default_rng(2).normal(0, 30, (2, 48, 48, 3)).astype(np.float16)
    flat = f.astype(np.float64).reshape(2, -1, 3)
    got = gram_matrix(f)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(numpy(got), np.einsum("bpc,bpd->bcd", flat, flat) / flat.shape[1],
                               rtol=1e-4)  # fmt: skip
    board = (np.indices((8, 8)).sum(axis=0) % 2 * 255.0)[None, ..., None].repeat(3, axis=-1)
    want = (2 * 255.0**2) / 255.0**2  # every pixel differs by 255 from both neighbours
    np.testing.assert_allclose(numpy(total_variation(board.astype(np.float16))), [want])


@pytest.mark.backend
def test_losses_on_a_mixed_float16_network_are_finite_and_match_numpy():
    mixed, plain = mixed_float16_twins((64, 64, 3))
    layers = ["block1_conv1", "block2_conv1"]
    a, b = images(2, 64, seed=7), images(2, 64, seed=8)

    def gram(f):
        f = f.reshape(f.shape[0], -1, f.shape[-1])
        return np.einsum("bpc,bpd->bcd", f, f) / f.shape[1]

    references = {
        PerceptualLoss: lambda t, p: ((t - p) ** 2).mean(axis=(1, 2, 3)),
        StyleLoss: lambda t, p: ((gram(t) - gram(p)) ** 2).mean(axis=(1, 2)),
    }
    for cls, distance in references.items():
        loss = cls(layers, model=mixed, weights=None, reduction="none")
        fa, fb = loss.feature_model(a), loss.feature_model(b)
        assert keras.backend.standardize_dtype(fa["block1_conv1"].dtype) == "float16"
        want = sum(
            0.5 * distance(numpy(fa[n]).astype(np.float64), numpy(fb[n]).astype(np.float64))
            for n in layers
        )
        got = numpy(loss(a, b))
        assert np.all(np.isfinite(got)), (cls.__name__, got)
        np.testing.assert_allclose(got, want, rtol=1e-3)
        # and close to the float32 network's value: float16 rounds the features only
        twin = cls(layers, model=plain, weights=None, reduction="none")
        np.testing.assert_allclose(got, numpy(twin(a, b)), rtol=2e-2)


@pytest.mark.backend
def test_a_users_feature_model_stays_trainable_and_the_loss_does_not_train_it():
    feature_net = kzoo.build("8C3-MP2-16C3-MP2-FC10", input_shape=(32, 32, 3))
    before = [w.copy() for w in feature_net.get_weights()]
    layers = ["block1_conv1", "block2_conv1"]
    loss = PerceptualLoss(layers, model=feature_net, weights=None)
    StyleLoss(layers, model=feature_net, weights=None)
    StyleTransfer(images(1, 32)[0], images(1, 32, seed=1)[0], model=feature_net, weights=None,
                  size=32, content_layer="block2_conv1", style_layers=layers)  # fmt: skip
    assert feature_net.trainable and all(layer.trainable for layer in feature_net.layers)
    assert len(feature_net.trainable_weights) == 6
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Conv2D(3, 3, padding="same")(keras.layers.Rescaling(1 / 255)(inputs))
    net = keras.Model(inputs, keras.layers.Rescaling(255.0)(outputs))
    net.compile(keras.optimizers.Adam(1e-2), loss=loss)
    x = images(16, 32, seed=6)
    history = net.fit(x, x, epochs=4, batch_size=8, verbose=0).history["loss"]
    assert history[-1] < history[0]
    for weight, old in zip(feature_net.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weight, old)


@pytest.mark.backend
def test_an_image_to_image_model_trains_with_the_perceptual_loss_and_reloads_with_it(
    tiny, tmp_path
):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Conv2D(3, 3, padding="same")(keras.layers.Rescaling(1 / 255)(inputs))
    net = keras.Model(inputs, keras.layers.Rescaling(255.0)(outputs))
    loss = PerceptualLoss(["block1_conv2", "block2_conv2"], **tiny)
    net.compile(keras.optimizers.Adam(1e-2), loss=loss)
    frozen = [w.copy() for w in loss.feature_model.get_weights()]
    x = images(16, 32, seed=6)
    history = net.fit(x, x, epochs=6, batch_size=8, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]
    for weight, old in zip(loss.feature_model.get_weights(), frozen, strict=True):
        np.testing.assert_array_equal(weight, old)
    net.save(tmp_path / "net.keras")
    again = keras.saving.load_model(tmp_path / "net.keras")
    assert isinstance(again.loss, PerceptualLoss)
    assert again.loss.layer_weights == loss.layer_weights
    y = numpy(net(x[:4]))
    np.testing.assert_allclose(float(numpy(again.loss(x[:4], y))), float(numpy(loss(x[:4], y))),
                               rtol=1e-5)  # fmt: skip


# --- style transfer -------------------------------------------------------------------------


@pytest.mark.backend
def test_style_transfer_lowers_every_loss_and_paints_a_new_image(tiny):
    y, x = np.mgrid[:48, :64]
    photo = np.stack([x * 4.0, y * 5.0, np.full_like(x, 128.0)], axis=-1)
    painting = (((x + y) // 6) % 2)[..., None] * np.array([220.0, 30.0, 60.0]) + 20
    transfer = StyleTransfer(photo, painting, size=64, **tiny)
    image = transfer.run(60, progress=False)
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    for term in ("total", "content", "style"):
        values = transfer.history[term]
        assert len(values) == 60 and values[-1] < 0.7 * values[0], (term, values[0], values[-1])
    assert np.abs(image - photo).mean() > 10 and np.abs(image - painting).mean() > 10


@pytest.mark.backend
def test_style_transfer_on_a_mixed_float16_network_stays_finite_and_lowers_its_loss():
    mixed, _ = mixed_float16_twins((32, 32, 3))
    y, x = np.mgrid[:32, :32]
    photo = np.stack([x * 8.0, y * 8.0, np.full_like(x, 128.0)], axis=-1)
    painting = (((x + y) // 4) % 2)[..., None] * np.array([220.0, 30.0, 60.0]) + 20
    transfer = StyleTransfer(photo, painting, model=mixed, weights=None, size=32,
                             content_layer="block2_conv1",
                             style_layers=["block1_conv1", "block2_conv1"])  # fmt: skip
    transfer.run(30, progress=False)
    for term in ("total", "content", "style"):
        values = np.array(transfer.history[term])
        assert np.all(np.isfinite(values)) and values[-1] < 0.7 * values[0], (term, values)


def test_stylize_from_the_command_line_writes_a_png(capsys, tiny, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("photo", "painting"):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
            tmp_path / f"{name}.png"
        )
    out = tmp_path / "out.png"
    status = main([
        "stylize", str(tmp_path / "photo.png"), str(tmp_path / "painting.png"), "--out", str(out),
        "--size", "64", "--steps", "3", "--model", "tiny", "--weights", tiny["weights"],
        "--manifest", tiny["manifest"],
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    with Image.open(out) as written:
        assert written.size == (48, 64)
    assert "3 steps: total" in capsys.readouterr().out
    assert main(["stylize", str(tmp_path / "nope.png"), str(out), "--out", str(out)]) == 1


# --- fooling ----------------------------------------------------------------------------


def _confident_classifier() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
        keras.layers.Dense(4, activation="softmax"),
    ])  # fmt: skip
    kernel = np.random.default_rng(0).normal(0, 1.0, (36, 4)).astype(np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(4, np.float32)])
    return model


@pytest.mark.backend
def test_fool_makes_images_the_model_is_sure_about():
    model = _confident_classifier()
    result = fool(model, [0, 1, 2, 3], threshold=0.99, steps=300, progress=False)
    assert result.reached and result.steps < 300
    assert result.targets == (0, 1, 2, 3) and result.images.shape == (4, 6, 6, 1)
    probabilities = numpy(model(result.images))
    np.testing.assert_allclose(probabilities[np.arange(4), [0, 1, 2, 3]], result.probabilities,
                               rtol=1e-5)  # fmt: skip
    assert result.images.min() >= 0 and result.images.max() <= 255


@pytest.mark.backend
def test_fool_from_a_given_image_with_regularisers():
    model = _confident_classifier()
    start = np.full((6, 6, 1), 128.0, np.float32)
    before = float(numpy(model(start[None]))[0, 2])
    result = fool(model, 2, start=start, steps=400, l2=0.01, progress=False)
    assert result.reached and result.targets == (2,)
    # blur and jitter fight a pixel-wise linear model, but must still climb, in range
    result = fool(model, 2, start=start, steps=100, blur_every=50, jitter=1, progress=False)
    assert result.probabilities[0] > before + 0.1 and not result.reached
    assert result.images.min() >= 0 and result.images.max() <= 255


@pytest.mark.backend
@pytest.mark.parametrize(
    "options", [{"jitter": 2}, {"blur_every": 3}, {"jitter": 1, "blur_every": 4}]
)
def test_fool_with_jitter_or_blur_reports_what_its_images_reach(options):
    # the step's own probabilities are of the shifted image before the update and the blur;
    # these runs used to stop on them with images below the threshold
    keras.utils.set_random_seed(1)
    model = kzoo.build("16x16x1:8C3-MP2-16C3-MP2-FC10")
    targets = [0, 3, 7]
    result = fool(model, targets, threshold=0.95, steps=200, progress=False, **options)
    p = model.predict(result.images, verbose=0)[np.arange(3), targets]
    np.testing.assert_allclose(result.probabilities, p, rtol=1e-5, atol=1e-7)
    assert result.reached == bool(np.all(p >= 0.95)), (result.steps, p)
    assert result.steps == 200 or result.reached, (result.steps, p)  # stops only when there
    if result.reached:
        assert p.min() >= 0.95


def test_fool_refuses_bad_requests():
    model = _confident_classifier()
    with pytest.raises(ValueError, match=r"classes in \[0, 4\)"):
        fool(model, 7)
    with pytest.raises(ValueError, match="threshold"):
        fool(model, 1, threshold=1.5)
    with pytest.raises(ValueError, match="start must be"):
        fool(model, [0, 1], start=np.zeros((3, 6, 6, 1)))
    with pytest.raises(ValueError, match=r"a class index or a list of them\. Received: '13'"):
        fool(model, "13")


def test_a_negative_layer_weight_is_refused():
    model = kzoo.build("8x8x3:4C3-MP2-FC2")
    with pytest.raises(ValueError, match=r"weights must be 0 or more. Received: \{'block1_conv1'"):
        PerceptualLoss({"block1_conv1": -1.0}, model=model, weights=None)


def test_the_features_api_is_public():
    assert kzoo.features is kzoo.zoo.features
    assert kzoo.stylize.__module__ == "kzoo.input_optimization.style_transfer"
    assert kzoo.losses.StyleLoss is StyleLoss
    assert synthetic.TINY_VGG19.convs_per_block == (2, 2, 4, 4, 4)
    assert Path(kzoo.losses.__file__).name == "losses.py"
