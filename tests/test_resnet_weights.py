"""ResNet weights from every source: torchvision/timm (safetensors and .pth), Caffe and Keras h5
each convert to a Keras ResNet whose outputs match a NumPy forward pass in the source's own
semantics; layers pair by the names each format declares; bad files raise typed errors."""

from __future__ import annotations

import collections
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy_reference as ref
import pytest
from resnet_models import keras_resnet

from kzoo import synthetic
from kzoo.converters import convert, inspect, slots_of
from kzoo.converters.assign import assign
from kzoo.converters.caffe import keras_name as caffe_keras_name
from kzoo.converters.torch_state import keras_name as torch_keras_name
from kzoo.errors import ConversionError, UnsafePickleError

TINY50, TINY18 = synthetic.TINY_RESNET50, synthetic.TINY_RESNET18


def images(layout: synthetic.ResNetLayout, seed: int = 1) -> np.ndarray:
    shape = (2, layout.input_size, layout.input_size, layout.in_channels)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def predict(model, x: np.ndarray) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


def converted(fmt: str, path: Path, model) -> np.ndarray:
    assign(model, convert(fmt, path, slots_of(model)))
    return model


# --- each source against its own semantics ---------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize(
    ("container", "layout"),
    [("safetensors", TINY50), ("pth", TINY50), ("safetensors", TINY18), ("pth", TINY18)],
    ids=["safetensors-bottleneck", "pth-bottleneck", "safetensors-basic", "pth-basic"],
)
def test_torchvision_resnet_matches_torch_semantics(container, layout, tmp_path):
    path = tmp_path / f"model.{container}"
    tensors = synthetic.write_torch_resnet(path, layout, container=container)
    model = converted("torch", path, keras_resnet(layout, "torch"))
    x = images(layout)
    expected = ref.torch_resnet_forward(tensors, layout.blocks, layout.bottleneck, nchw(x))
    assert ref.relative_error(predict(model, x), expected) < 1e-5


@pytest.mark.backend
def test_torch_bn_statistics_are_exact_under_another_keras_epsilon(tmp_path):
    # The Keras model keeps its own epsilon (1e-3 here): gamma is rescaled to match torch's 1e-5
    path = tmp_path / "model.safetensors"
    tensors = synthetic.write_torch_resnet(path, TINY50)
    model = keras_resnet(TINY50, "torch")
    for layer in model.layers:
        if hasattr(layer, "epsilon"):
            layer.epsilon = 1e-3
    converted("torch", path, model)
    x = images(TINY50)
    expected = ref.torch_resnet_forward(tensors, TINY50.blocks, True, nchw(x))
    assert ref.relative_error(predict(model, x), expected) < 1e-5


@pytest.mark.backend
@pytest.mark.parametrize("numbered", [(), (3,)], ids=["letters", "res3b1-numbering"])
def test_caffe_resnet_matches_caffe_semantics(numbered, tmp_path):
    path = tmp_path / "ResNet.caffemodel"
    blobs = synthetic.write_caffe_resnet(path, TINY50, numbered_stages=numbered)
    model = converted("caffe", path, keras_resnet(TINY50, "caffe"))
    x = images(TINY50)
    expected = ref.caffe_resnet_forward(blobs, TINY50.blocks, nchw(x), numbered_stages=numbered)
    assert ref.relative_error(predict(model, x), expected) < 1e-5


@pytest.mark.backend
def test_caffe_bias_free_convs_fill_keras_biases_with_zeros(tmp_path):
    # keras.applications' layout has a bias on every conv; Caffe's release only on conv1
    path = tmp_path / "ResNet.caffemodel"
    blobs = synthetic.write_caffe_resnet(path, TINY50)
    slots = synthetic.resnet_slots(TINY50, conv_bias="all")
    arrays = convert("caffe", path, slots)
    np.testing.assert_array_equal(arrays["conv2_block1_1_conv"][1], 0.0)
    np.testing.assert_array_equal(arrays["conv1_conv"][1], blobs["conv1"][1])


def test_caffe_zero_scale_factor_means_zero_statistics(tmp_path):
    path = tmp_path / "zero.caffemodel"
    blobs = synthetic.write_caffe_resnet(path, TINY50)
    # rewrite one BatchNorm's factor to 0 in place: the same bytes, a zero float
    data = bytearray(path.read_bytes())
    factor = blobs["bn_conv1"][2].tobytes()
    assert data.count(factor) == 1
    start = data.index(factor)
    data[start : start + 4] = np.float32(0).tobytes()
    path.write_bytes(bytes(data))
    arrays = convert("caffe", path, synthetic.resnet_slots(TINY50, conv_bias="stem"))
    _, _, mean, variance = arrays["conv1_bn"]
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_array_equal(variance, 0.0)


@pytest.mark.backend
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
def test_keras_h5_resnet_matches_keras_semantics(include_top, tmp_path):
    path = tmp_path / "resnet.h5"
    arrays = synthetic.write_keras_h5_resnet(path, TINY50, include_top=include_top)
    model = keras_resnet(TINY50, "keras", include_top=include_top, pooling="avg")
    converted("keras_h5", path, model)
    x = images(TINY50)
    expected = ref.keras_resnet_forward(arrays, TINY50.blocks, x)
    assert ref.relative_error(predict(model, x), expected) < 1e-5


# --- pairing by declared names ---------------------------------------------------------------


def test_torch_and_caffe_names_map_to_keras_applications_names():
    assert torch_keras_name("conv1") == "conv1_conv"
    assert torch_keras_name("bn1") == "conv1_bn"
    assert torch_keras_name("layer1.0.conv2") == "conv2_block1_2_conv"
    assert torch_keras_name("layer4.2.bn3") == "conv5_block3_3_bn"
    assert torch_keras_name("layer3.0.downsample.0") == "conv4_block1_0_conv"
    assert torch_keras_name("layer3.0.downsample.1") == "conv4_block1_0_bn"
    assert torch_keras_name("fc") == "predictions"
    assert torch_keras_name("features.0") is None  # VGG: paired in order
    assert caffe_keras_name("conv1") == "conv1_conv"
    assert caffe_keras_name("bn_conv1") == "conv1_bn"
    assert caffe_keras_name("res2a_branch1") == "conv2_block1_0_conv"
    assert caffe_keras_name("bn2c_branch2b") == "conv2_block3_2_bn"
    assert caffe_keras_name("res4b22_branch2c") == "conv4_block23_3_conv"
    assert caffe_keras_name("bn3b7_branch2a") == "conv3_block8_1_bn"
    assert caffe_keras_name("fc1000") == "predictions"
    assert caffe_keras_name("conv1_1") is None  # VGG: paired in order


def test_h5_pairs_by_layer_name_whatever_the_file_order(tmp_path):
    import h5py

    path = tmp_path / "resnet.h5"
    written = synthetic.write_keras_h5_resnet(path, TINY50)
    with h5py.File(path, "r+") as h5:
        h5.attrs["layer_names"] = list(reversed(h5.attrs["layer_names"]))
    arrays = convert("keras_h5", path, synthetic.resnet_slots(TINY50))
    for name, expected in written.items():
        for got, want in zip(arrays[name], expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_missing_layer_is_named_with_its_keras_name(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = synthetic.write_torch_resnet(path, TINY50)
    from safetensors.numpy import save_file

    save_file({k: v for k, v in tensors.items() if not k.startswith("layer2.1.bn2")}, str(path))
    with pytest.raises(ConversionError, match=r"\['conv3_block2_2_bn'\] have no source"):
        convert("torch", path, synthetic.resnet_slots(TINY50, conv_bias="none"))


def test_a_resnet18_file_does_not_fit_a_resnet50_model(tmp_path):
    path = tmp_path / "model.safetensors"
    synthetic.write_torch_resnet(path, TINY18)
    with pytest.raises(ConversionError, match="conv2_block1_3_conv"):
        convert("torch", path, synthetic.resnet_slots(TINY50, conv_bias="none"))


# --- .pth files: restricted unpickling -------------------------------------------------------


def _pth_with_pickle(path: Path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pth_pickle_is_refused_before_running(tmp_path):
    path = tmp_path / "evil.pth"
    _pth_with_pickle(path, pickle.dumps(collections.OrderedDict(w=_RunsCode()), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        convert("torch", path, synthetic.resnet_slots(TINY50, conv_bias="none"))
    with pytest.raises(UnsafePickleError):
        inspect("torch", path)


def test_malicious_pth_import_leaves_nothing_in_the_cache(tmp_path, kzoo_home):
    from kzoo.zoo import import_weights

    path = tmp_path / "evil.pth"
    _pth_with_pickle(path, pickle.dumps(collections.OrderedDict(w=_RunsCode()), protocol=2))
    manifest = {
        "schema": 1,
        "models": {
            "tiny": {
                "spec": "4C3-FC2",
                "input_shape": [8, 8, 3],
                "weights": {
                    "tv": {
                        "format": "torch",
                        "preprocessing": "torch",
                        "import_only": "test",
                        "files": {"top": {"urls": []}},
                    }
                },
            }
        },
    }
    with pytest.raises(UnsafePickleError):
        import_weights("tiny.tv", path, manifest=manifest)
    assert not [p for p in Path(kzoo_home).rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "damage",
    ["truncated", "no-data-pkl", "missing-storage", "short-storage", "past-storage"],
)
def test_damaged_pth_files_raise_conversion_error(damage, tmp_path):
    good = tmp_path / "good.pth"
    synthetic.write_torch_resnet(good, TINY18, container="pth")
    path = tmp_path / "bad.pth"
    entries = {i.filename: zipfile.ZipFile(good).read(i) for i in zipfile.ZipFile(good).infolist()}
    if damage == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        if damage == "no-data-pkl":
            del entries["archive/data.pkl"]
        elif damage == "missing-storage":
            del entries["archive/data/0"]
        elif damage == "short-storage":
            entries["archive/data/0"] = entries["archive/data/0"][:-4]
        else:  # a tensor whose offset reads past its storage
            entries["archive/data.pkl"] = entries["archive/data.pkl"].replace(
                b"K\x00(", b"K\x05(", 1
            )
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
    with pytest.raises(ConversionError):
        convert("torch", path, synthetic.resnet_slots(TINY18, conv_bias="none"))


def test_pth_tensors_are_views_of_the_file_not_copies(tmp_path):
    from kzoo.converters._mapped import offset_of
    from kzoo.converters._torch_pickle import load_pth

    path = tmp_path / "model.pth"
    tensors = synthetic.write_torch_resnet(path, TINY50, container="pth")
    state, buf = load_pth(path)
    assert offset_of(buf, state["fc.weight"]) is not None
    np.testing.assert_array_equal(state["fc.weight"], tensors["fc.weight"])
    assert state["bn1.num_batches_tracked"].shape == ()


def test_synthetic_pth_loads_identically_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    tensors = synthetic.write_torch_resnet(path, TINY50, container="pth")
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(tensors)
    for key, value in tensors.items():
        np.testing.assert_array_equal(loaded[key].numpy(), value)


# --- malformed Caffe ResNets -----------------------------------------------------------------


def test_caffe_scale_without_batchnorm_is_rejected(tmp_path):
    from kzoo.synthetic.encoding import caffe_layer

    path = tmp_path / "bad.caffemodel"
    with open(path, "wb") as handle:
        caffe_layer(handle, 2, "conv1", "conv", [np.ones((2, 3, 7, 7), "f4")])
        caffe_layer(handle, 2, "scale_conv1", "scale", [np.ones(2, "f4"), np.zeros(2, "f4")])
    with pytest.raises(ConversionError, match="does not follow a BatchNorm"):
        inspect("caffe", path)


def test_caffe_batchnorm_with_two_blobs_is_rejected(tmp_path):
    from kzoo.synthetic.encoding import caffe_layer

    path = tmp_path / "bad.caffemodel"
    with open(path, "wb") as handle:
        caffe_layer(handle, 2, "bn_conv1", "bn", [np.ones(2, "f4"), np.ones(2, "f4")])
    with pytest.raises(ConversionError, match="mean, variance and scale factor"):
        inspect("caffe", path)


def test_torch_state_dict_with_foreign_keys_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"encoder.block.0.weight": np.ones((2, 2), "f4")}, str(path))
    with pytest.raises(ConversionError, match="not a torchvision or timm VGG or ResNet"):
        inspect("torch", path)


# --- full size: keras.applications' own files -----------------------------------------------


def _legacy_file(model, path: Path, renumber: bool = False) -> None:
    """Write ``model``'s weights in the published legacy layout (``layer_names``,
    ``weight_names``); ``renumber`` renames generated names as a fresh Keras 2 session did
    (``conv2d_1``, ``batch_normalization_1``...), as InceptionV3's published file has them."""
    import re

    counters: dict[str, int] = {}
    layers = []
    for layer in model.layers:
        name = layer.name
        generated = re.fullmatch(r"(conv2d|batch_normalization)(_\d+)?", name)
        if renumber and generated:
            counters[generated.group(1)] = counters.get(generated.group(1), 0) + 1
            name = f"{generated.group(1)}_{counters[generated.group(1)]}"
        layers.append((name, [np.asarray(w) for w in layer.get_weights()]))
    synthetic.write_legacy_h5(path, layers)


def _randomise(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            shapes = [w.shape for w in weights]
            values = [rng.uniform(0.5, 1.5, s).astype("f4") * 0.1 for s in shapes]
            if len(weights) in (3, 4) and all(len(s) == 1 for s in shapes):
                values[-1] = rng.uniform(0.5, 2.0, shapes[-1]).astype("f4")  # variance
            layer.set_weights(values)


@pytest.mark.slow
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
def test_keras_applications_resnet50_file_fills_a_fresh_resnet50_identically(include_top, tmp_path):
    import keras

    source = keras.applications.ResNet50(weights=None, include_top=include_top)
    _randomise(source, seed=3)
    path = tmp_path / "resnet50.h5"
    _legacy_file(source, path)
    target = keras.applications.ResNet50(weights=None, include_top=include_top)
    converted("keras_h5", path, target)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype("f4")
    np.testing.assert_array_equal(predict(target, x), predict(source, x))


@pytest.mark.slow
def test_inception_v3_file_with_generated_names_pairs_by_order(tmp_path):
    import keras

    source = keras.applications.InceptionV3(weights=None)
    _randomise(source, seed=4)
    path = tmp_path / "inception_v3.h5"
    _legacy_file(source, path, renumber=True)
    target = keras.applications.InceptionV3(weights=None)  # this session numbers it otherwise
    assert {layer.name for layer in target.layers} != {layer.name for layer in source.layers}
    converted("keras_h5", path, target)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 299, 299, 3)).astype("f4")
    np.testing.assert_array_equal(predict(target, x), predict(source, x))


# --- the zoo's named architectures, full width -----------------------------------------------


@pytest.mark.slow
def test_kzoo_load_of_keras_applications_resnet50_file_matches_keras_applications(tmp_path):
    import keras

    import kzoo

    source = keras.applications.ResNet50(weights=None)
    _randomise(source, seed=5)
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    _legacy_file(source, path)
    reference = keras.applications.ResNet50(weights=str(path))
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("f4")
    expected = predict(reference, keras.applications.resnet50.preprocess_input(x.copy()))
    model = kzoo.load("resnet50", weights=path)
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-7)
    bare = kzoo.load("resnet50", weights=path, preprocessing=False)
    inputs = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_array_equal(predict(bare, inputs), predict(reference, inputs))


@pytest.mark.slow
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
def test_kzoo_load_of_keras_applications_resnet50v2_file_matches_keras_applications(
    include_top, tmp_path
):
    import keras

    import kzoo

    source = keras.applications.ResNet50V2(weights=None, include_top=include_top)
    _randomise(source, seed=7)
    path = tmp_path / "resnet50v2.h5"
    _legacy_file(source, path)
    x = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype("f4")
    inputs = keras.applications.resnet_v2.preprocess_input(x.copy())
    model = kzoo.load(
        "resnet50_v2",
        weights=path,
        include_top=include_top,  # without the top: any input size, (None, None, 3)
        preprocessing=False,
    )
    np.testing.assert_array_equal(predict(model, inputs), predict(source, inputs))


@pytest.mark.slow
def test_kzoo_load_of_inception_v3_file_matches_keras_applications(tmp_path):
    import keras

    import kzoo

    source = keras.applications.InceptionV3(weights=None)
    _randomise(source, seed=6)
    path = tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
    _legacy_file(source, path, renumber=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 299, 299, 3)).astype("f4")
    inputs = keras.applications.inception_v3.preprocess_input(x.copy())
    model = kzoo.load("inception_v3", weights=path, preprocessing=False)
    np.testing.assert_array_equal(predict(model, inputs), predict(source, inputs))
    with_layer = kzoo.load("inception_v3", weights=path)
    np.testing.assert_allclose(
        predict(with_layer, x), predict(source, inputs), rtol=1e-5, atol=1e-7
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pth", "safetensors", "caffemodel"])
def test_kzoo_load_of_full_width_source_files_matches_their_semantics(kind, tmp_path):
    # kzoo.load("resnet50", weights=FILE) builds the variant of the model's source in the
    # file's format (resnet50_torch, resnet50_caffe); features at 64x64 keep NumPy quick
    import kzoo

    layout = synthetic.RESNET50
    path = tmp_path / f"resnet50.{kind}"
    x = images(replace(layout, input_size=64))
    if kind == "caffemodel":
        blobs = synthetic.write_caffe_resnet(path, layout)
        features = {k: v for k, v in blobs.items() if k != "fc1000"}
        expected = ref.caffe_resnet_forward(features, layout.blocks, nchw(x))
    else:
        tensors = synthetic.write_torch_resnet(path, layout, container=kind)
        features = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
        expected = ref.torch_resnet_forward(features, layout.blocks, True, nchw(x))
    model = kzoo.load(
        "resnet50", weights=path, include_top=False, pooling="avg", preprocessing=False
    )
    assert ref.relative_error(predict(model, x), expected) < 1e-5
