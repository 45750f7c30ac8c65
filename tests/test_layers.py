"""kzoo.layers: numerics against NumPy references, and reloading in a fresh process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from kzoo.errors import UnknownNameError
from kzoo.layers import (
    GaborInitializer,
    ImagePreprocessing,
    TargetStandardizer,
    fit_standardization,
    preprocess_images,
)

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])


def _images(n: int = 2, size: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


# --- ImagePreprocessing / preprocess_images ---------------------------------------------------


@pytest.mark.backend
def test_caffe_mode_flips_to_bgr_and_subtracts_the_bgr_mean():
    x = _images()
    expected = x[..., ::-1].astype(np.float64) - CAFFE_MEAN_BGR
    np.testing.assert_allclose(_np(ImagePreprocessing("caffe")(x)), expected, atol=1e-4)


@pytest.mark.backend
def test_torch_mode_scales_to_unit_range_then_standardises_with_imagenet_stats():
    x = _images()
    expected = (x.astype(np.float64) / 255.0 - TORCH_MEAN) / TORCH_STD
    np.testing.assert_allclose(_np(ImagePreprocessing("torch")(x)), expected, atol=1e-5)


@pytest.mark.backend
def test_tf_mode_scales_rgb_to_minus_one_one():
    x = _images()
    expected = x.astype(np.float64) / 127.5 - 1.0
    np.testing.assert_allclose(_np(ImagePreprocessing("tf")(x)), expected, atol=1e-5)
    extremes = np.array([[[[0, 255, 127.5]]]], np.float32)
    np.testing.assert_allclose(_np(ImagePreprocessing("tf")(extremes)), [[[[-1, 1, 0]]]], atol=1e-6)


def test_custom_mean_and_std_replace_the_modes_constants():
    x = _images()
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    expected = (x[..., ::-1].astype(np.float64) - mean) / std
    got = _np(ImagePreprocessing("caffe", mean=mean, std=std)(x))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_none_mode_is_a_float_cast_unless_given_statistics():
    x = _images()
    np.testing.assert_array_equal(_np(ImagePreprocessing("none")(x)), x.astype(np.float32))
    got = _np(ImagePreprocessing("none", mean=[128.0], std=[64.0])(x))
    np.testing.assert_allclose(got, (x - 128.0) / 64.0, atol=1e-6)


@pytest.mark.backend
@pytest.mark.parametrize("mode", ["caffe", "torch", "tf", "none"])
def test_preprocess_images_on_numpy_gives_the_layers_result(mode):
    x = _images(size=7, seed=3)
    from_numpy = preprocess_images(x, mode)
    assert isinstance(from_numpy, np.ndarray)
    assert from_numpy.dtype == np.float32
    np.testing.assert_allclose(from_numpy, _np(ImagePreprocessing(mode)(x)), rtol=0, atol=2e-5)


@pytest.mark.backend
def test_preprocess_images_on_a_tensor_returns_a_tensor():
    x = keras.ops.convert_to_tensor(_images().astype(np.float32))
    out = preprocess_images(x, "torch")
    assert not isinstance(out, np.ndarray)
    np.testing.assert_allclose(_np(out), preprocess_images(_images(), "torch"), atol=1e-6)


def test_image_preprocessing_accepts_uint8_model_inputs():
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    model = keras.Model(inputs, ImagePreprocessing("caffe")(inputs))
    x = _images(size=4)
    out = model.predict(x, verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x[..., ::-1] - CAFFE_MEAN_BGR, atol=1e-4)


def test_image_preprocessing_rejects_non_rgb_input_with_the_channel_count():
    with pytest.raises(ValueError, match=r"3 channels.*Received: input with 1 channels"):
        ImagePreprocessing("caffe")(np.zeros((1, 4, 4, 1), np.float32))


def test_unknown_mode_suggests_the_closest_one():
    with pytest.raises(UnknownNameError, match=r"did you mean 'caffe'"):
        ImagePreprocessing("cafe")
    with pytest.raises(UnknownNameError):
        preprocess_images(_images(), "tensorflow-ish")


def test_non_positive_std_is_refused():
    with pytest.raises(ValueError, match=r"std must be positive.*Received"):
        ImagePreprocessing("torch", std=(0.2, 0.0, 0.2))


def test_mean_and_std_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"one value per channel.*Received"):
        ImagePreprocessing("none", mean=(1.0, 2.0, 3.0), std=(1.0, 2.0))


def test_image_preprocessing_config_round_trips():
    layer = ImagePreprocessing("torch", mean=(0.5, 0.5, 0.5), name="prep")
    clone = ImagePreprocessing.from_config(layer.get_config())
    assert clone.name == "prep"
    x = _images()
    np.testing.assert_array_equal(_np(clone(x)), _np(layer(x)))


# --- fit_standardization / TargetStandardizer -------------------------------------------------


def test_fit_standardization_gives_zero_mean_unit_variance_per_feature():
    data = np.random.default_rng(1).normal([5.0, -300.0, 0.01], [2.0, 50.0, 0.001], (500, 3))
    layer = fit_standardization(data, name="norm")
    out = _np(layer(data.astype(np.float32)))
    assert layer.name == "norm"
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    expected = (data - data.mean(axis=0)) / data.std(axis=0)
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_target_standardizer_transform_and_inverse_match_numpy():
    y = np.random.default_rng(2).normal(250_000.0, 80_000.0, 200)
    scaler = TargetStandardizer().fit(y)
    z = scaler.transform(y)
    assert z.shape == y.shape
    np.testing.assert_allclose(z, (y - y.mean()) / y.std(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(z), y, rtol=1e-6)


@pytest.mark.backend
def test_attached_model_predicts_in_the_targets_units():
    y = np.random.default_rng(3).normal([20.0, 1e6], [5.0, 3e5], (100, 2))
    scaler = TargetStandardizer().fit(y)
    # An identity "model": its output is the standardised value we feed in.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Identity()], name="net")
    priced = scaler.attach(model)
    z = scaler.transform(y)
    got = priced.predict(z, verbose=0)
    assert priced.name == "net_in_units"
    np.testing.assert_allclose(got, y, rtol=1e-5)
    np.testing.assert_allclose(got, z * y.std(axis=0) + y.mean(axis=0), rtol=1e-5)
    with warnings.catch_warnings():  # one input stays one tensor, not a list of one
        warnings.simplefilter("error")
        priced(z[:1].astype("float32"))


def test_attach_refuses_a_model_with_the_wrong_number_of_outputs():
    scaler = TargetStandardizer().fit(np.arange(10.0))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"predicts 2 values.*1 target column"):
        scaler.attach(model)


def test_target_standardizer_must_be_fitted_first():
    with pytest.raises(ValueError, match=r"not fitted yet"):
        TargetStandardizer().transform([1.0, 2.0])


def test_target_standardizer_serializes_with_keras():
    scaler = TargetStandardizer().fit(np.array([[1.0, 10.0], [3.0, 30.0]]))
    config = keras.saving.serialize_keras_object(scaler)
    clone = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert isinstance(clone, TargetStandardizer)
    np.testing.assert_array_equal(clone.mean, [2.0, 20.0])
    np.testing.assert_array_equal(clone.variance, [1.0, 100.0])


# --- GaborInitializer -------------------------------------------------------------------------


def _dominant_frequency(kernel2d: np.ndarray) -> tuple[float, float]:
    """Angle in [0, pi) and period in pixels of the strongest frequency (NumPy FFT)."""
    n = 256
    spectrum = np.abs(np.fft.fft2(kernel2d, s=(n, n)))
    ky, kx = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    fy, fx = np.fft.fftfreq(n)[ky], np.fft.fftfreq(n)[kx]
    return math.atan2(fy, fx) % math.pi, 1.0 / math.hypot(fx, fy)


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % math.pi
    return min(d, math.pi - d)


def test_gabor_filters_have_the_orientations_and_wavelengths_claimed():
    init = GaborInitializer(orientations=8, wavelengths=(4.0, 6.0))
    kernel = init.kernel((21, 21, 1, 32))
    for j, params in enumerate(init.bank(32)):
        angle, period = _dominant_frequency(kernel[:, :, 0, j])
        assert _angle_gap(angle, params.theta) < math.radians(4), (j, params, angle)
        assert period == pytest.approx(params.wavelength, rel=0.15), (j, params, period)


def test_default_gabor_bank_on_7x7_kernels_covers_all_orientations():
    init = GaborInitializer()
    kernel = init.kernel((7, 7, 3, 48))
    bank = init.bank(48, (7, 7))
    thetas = sorted({round(p.theta, 6) for p in bank})
    assert len(thetas) == 8
    step = math.pi / 8
    for j, params in enumerate(bank):
        angle, _ = _dominant_frequency(kernel[:, :, 0, j])
        assert _angle_gap(angle, params.theta) < step / 2, (j, params, angle)


def test_gabor_kernels_are_zero_mean_unit_norm_and_equal_across_input_channels():
    kernel = GaborInitializer(gain=2.0).kernel((5, 5, 3, 20))
    assert kernel.shape == (5, 5, 3, 20)
    assert kernel.dtype == np.float32
    np.testing.assert_allclose(kernel.sum(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(kernel.reshape(-1, 20), axis=0), 2.0, rtol=1e-5)
    np.testing.assert_array_equal(kernel[:, :, 0], kernel[:, :, 2])


def test_gabor_filters_beyond_the_bank_follow_the_seed():
    size = 8 * 3 * 2  # the default bank
    first = GaborInitializer(seed=7).kernel((7, 7, 1, size + 10))
    again = GaborInitializer(seed=7).kernel((7, 7, 1, size + 10))
    other = GaborInitializer(seed=8).kernel((7, 7, 1, size + 10))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[..., :size], other[..., :size])
    assert not np.allclose(first[..., size:], other[..., size:])


@pytest.mark.backend
def test_gabor_initializer_fills_a_conv2d_kernel_by_default_construction():
    conv = keras.layers.Conv2D(16, 7, kernel_initializer=GaborInitializer())
    conv.build((None, 32, 32, 3))
    np.testing.assert_allclose(
        _np(conv.kernel), GaborInitializer().kernel((7, 7, 3, 16)), rtol=1e-6, atol=1e-7
    )


def test_gabor_initializer_refuses_non_conv2d_shapes():
    with pytest.raises(ValueError, match=r"\(kh, kw, in, out\).*Received: shape=\(3, 4\)"):
        GaborInitializer()((3, 4))


def test_gabor_initializer_serializes_with_keras():
    init = GaborInitializer(orientations=4, wavelengths=[3.0], seed=5)
    clone = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(clone, GaborInitializer)
    np.testing.assert_array_equal(clone.kernel((3, 3, 2, 9)), init.kernel((3, 3, 2, 9)))


# --- a saved model reloads after a bare `import kzoo` -------------------------------------------

_RELOAD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import kzoo
    import keras

    model = keras.saving.load_model(sys.argv[1])
    x = np.load(sys.argv[2])
    np.save(sys.argv[3], np.asarray(model.predict(x, verbose=0)))
    conv = model.get_layer("gabor_conv")
    print(json.dumps({
        "classes": sorted({type(layer).__module__ + "." + type(layer).__name__
                           for layer in model.layers}),
        "initializer": type(conv.kernel_initializer).__module__ + "."
                       + type(conv.kernel_initializer).__name__,
        "backend": keras.backend.backend(),
    }))
    """
)


@pytest.mark.slow
@pytest.mark.backend
def test_saved_model_with_every_kzoo_layer_reloads_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    h = ImagePreprocessing("caffe", mean=(100.0, 110.0, 120.0), std=(50.0, 60.0, 70.0))(inputs)
    h = fit_standardization(preprocess_images(x, "torch"), name="standardize")(
        ImagePreprocessing("torch", name="torch_prep")(inputs) + h
    )
    h = keras.layers.Conv2D(
        8, 3, name="gabor_conv", kernel_initializer=GaborInitializer(orientations=4, seed=3)
    )(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(2)(h)
    scaler = TargetStandardizer().fit(rng.normal([1e3, -5.0], [2e2, 1.0], (50, 2)))
    model = scaler.attach(keras.Model(inputs, outputs))
    expected = model.predict(x, verbose=0)

    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RELOAD,
            str(path),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["backend"] == keras.backend.backend()
    assert "kzoo.layers.ImagePreprocessing" in info["classes"]
    assert info["initializer"] == "kzoo.layers.GaborInitializer"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-3)
    assert np.abs(expected[:, 0]).mean() > 100  # the inverse standardisation ran
