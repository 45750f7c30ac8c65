"""Converters: each source format, converted and assigned, matches a NumPy forward pass in the
source's own layout; malformed files raise ConversionError; malicious pickles never run."""

from __future__ import annotations

import os
import pickle
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy_reference as ref
import pytest

from kzoo import synthetic
from kzoo.converters import FORMATS, WeightSlot, convert, slots_of
from kzoo.converters.assign import assign
from kzoo.converters.lasagne import read_lasagne_metadata
from kzoo.errors import ConversionError, UnknownNameError, UnsafePickleError

BATCH = 2


def vgg_spec(layout: synthetic.VGGLayout) -> str:
    bn = "+BN" if layout.batchnorm else ""
    blocks = [
        f"{width}C3{bn}x{count}-MP2"
        for count, width in zip(layout.convs_per_block, layout.widths, strict=True)
    ]
    return "-".join([*blocks, *(f"FC{width}" for width in layout.fc)])


def keras_vgg(layout: synthetic.VGGLayout, include_top: bool = True, bn_epsilon=None):
    """kzoo.build's VGG (keras.applications names) with logits out (a linear head)."""
    import kzoo

    shape = (layout.input_size, layout.input_size, layout.in_channels)
    model = kzoo.build(vgg_spec(layout), input_shape=shape, head="linear", include_top=include_top)
    for layer in model.layers:
        if bn_epsilon is not None and hasattr(layer, "epsilon"):
            layer.epsilon = bn_epsilon
    return model


def predict(model, x: np.ndarray) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def images(layout: synthetic.VGGLayout, seed: int = 1) -> np.ndarray:
    shape = (BATCH, layout.input_size, layout.input_size, layout.in_channels)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def write_source(case: str, layout: synthetic.VGGLayout, folder: Path):
    """Write a synthetic file for ``case``; return (format, path, reference forward)."""
    blocks = layout.convs_per_block

    def nchw(x):
        return x.transpose(0, 3, 1, 2)

    if case.startswith("keras_h5"):
        path = folder / "weights.h5"
        arrays = synthetic.write_keras_h5(path, layout, naming=case.split("-")[1])
        return "keras_h5", path, lambda x: ref.keras_forward(arrays, blocks, x)
    if case.startswith("caffe"):
        path = folder / "weights.caffemodel"
        blobs = synthetic.write_caffe(path, layout, version=int(case[-1]))
        return "caffe", path, lambda x: ref.caffe_forward(blobs, blocks, nchw(x))
    if case == "lasagne":
        path = folder / "weights.pkl"
        params = synthetic.write_lasagne(path, layout)["param values"]
        return "lasagne", path, lambda x: ref.lasagne_forward(params, blocks, nchw(x))
    path = folder / "model.safetensors"
    keys = "timm" if case == "timm" else "torchvision"
    tensors = synthetic.write_safetensors(path, layout, keys=keys)
    if keys == "timm":
        return "safetensors_vgg", path, lambda x: ref.timm_forward(tensors, blocks, nchw(x))
    bn = layout.batchnorm
    return (
        "safetensors_vgg",
        path,
        lambda x: ref.torchvision_forward(tensors, blocks, nchw(x), batchnorm=bn),
    )


CASES = [
    ("keras_h5-keras1", synthetic.TINY_VGG19),
    ("keras_h5-keras2", synthetic.TINY_VGG16),
    ("caffe-v1", synthetic.TINY_VGG19),
    ("caffe-v2", synthetic.TINY_VGG16),
    ("lasagne", synthetic.TINY_VGG19),
    ("lasagne", synthetic.TINY_VGG16),
    ("torchvision", synthetic.TINY_VGG19),
    ("torchvision", synthetic.TINY_VGG16),
    ("timm", synthetic.TINY_VGG19),
    ("torchvision", synthetic.TINY_VGG19_BN),
    ("torchvision-eps1e-5", synthetic.TINY_VGG19_BN),
]


@pytest.mark.backend
@pytest.mark.parametrize(
    ("case", "layout"),
    CASES,
    ids=[f"{c}-{sum(lay.convs_per_block) + 3}{'-bn' * lay.batchnorm}" for c, lay in CASES],
)
def test_converted_model_matches_numpy_forward_in_source_layout(case, layout, tmp_path):
    fmt, path, reference = write_source(case.replace("-eps1e-5", ""), layout, tmp_path)
    # kzoo.build's BN layers keep Keras's epsilon 1e-3 (gamma rescaled); torch's is 1e-5
    model = keras_vgg(layout, bn_epsilon=1e-5 if case.endswith("eps1e-5") else None)
    arrays = convert(fmt, path, slots_of(model))
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for v in arrays.values() for a in v)
    assign(model, arrays)
    x = images(layout)
    assert ref.relative_error(predict(model, x), reference(x)) < 1e-5


@pytest.mark.parametrize(
    ("case", "layout"),
    [
        ("caffe-v1", synthetic.TINY_VGG19),
        ("lasagne", synthetic.TINY_VGG19),
        ("torchvision", synthetic.TINY_VGG19_BN),
        ("timm", synthetic.TINY_VGG19),
    ],
    ids=["caffe", "lasagne", "torchvision-bn", "timm"],
)
def test_threaded_tiled_conversion_matches_numpy_forward(case, layout, tmp_path, monkeypatch):
    # Full-size files take the threaded path; the tiny ones here only do when forced, with
    # tiles and row blocks small enough to leave ragged edges in every layer.
    from kzoo.converters import _layout

    monkeypatch.setattr(_layout, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(_layout, "_BLOCK_ROWS", 5)
    monkeypatch.setattr(_layout, "_TILE_ROWS", 3)
    monkeypatch.setattr(_layout, "_TILE_COLUMNS", 7)
    monkeypatch.setattr(_layout, "_threads", lambda: 3)
    fmt, path, reference = write_source(case, layout, tmp_path)
    model = keras_vgg(layout)
    assign(model, convert(fmt, path, slots_of(model)))
    x = images(layout)
    assert ref.relative_error(predict(model, x), reference(x)) < 1e-5


@pytest.mark.backend
def test_reference_catches_a_naive_fc6_transpose(tmp_path):
    # pool5 is 2x2 in the tiny layout, so (C, H, W) vs (H, W, C) flatten order matters
    layout = synthetic.TINY_VGG19
    fmt, path, reference = write_source("caffe-v1", layout, tmp_path)
    model = keras_vgg(layout)
    arrays = convert(fmt, path, slots_of(model))
    blobs = dict(synthetic.write_caffe(tmp_path / "again.caffemodel", layout, version=1))
    arrays["fc1"][0] = np.ascontiguousarray(blobs["fc6"][0].T)  # the trap: no reorder
    assign(model, arrays)
    x = images(layout)
    assert ref.relative_error(predict(model, x), reference(x)) > 1e-3


@pytest.mark.backend
def test_batchnorm_conv_bias_is_folded_into_moving_mean(tmp_path):
    layout = synthetic.TINY_VGG19_BN
    fmt, path, reference = write_source("torchvision", layout, tmp_path)
    tensors = synthetic.write_safetensors(tmp_path / "again.safetensors", layout)
    model = keras_vgg(layout, bn_epsilon=ref.TORCH_BN_EPSILON)
    arrays = convert(fmt, path, slots_of(model))
    moving_mean = arrays["block1_conv1_bn"][2]
    expected = tensors["features.1.running_mean"] - tensors["features.0.bias"]
    np.testing.assert_allclose(moving_mean, expected, rtol=1e-6)
    assert len(arrays["block1_conv1"]) == 1  # the kzoo conv has no bias
    # without the fold the model is measurably wrong, so the reference test can see it
    unfolded = {k: list(v) for k, v in arrays.items()}
    unfolded["block1_conv1_bn"][2] = tensors["features.1.running_mean"]
    assign(model, unfolded)
    x = images(layout)
    assert ref.relative_error(predict(model, x), reference(x)) > 1e-4


@pytest.mark.parametrize("case", ["keras_h5-keras2", "caffe-v1", "lasagne", "torchvision", "timm"])
def test_conv_only_slots_convert_a_prefix_and_ignore_dense_layers(case, tmp_path):
    layout = synthetic.TINY_VGG19
    fmt, path, _ = write_source(case, layout, tmp_path)
    full = convert(fmt, path, synthetic.keras_slots(layout))
    convs = convert(fmt, path, synthetic.keras_slots(layout, include_top=False))
    assert list(convs) == [f"block{b}_conv{i}" for b, i, _, _ in layout.convs()]
    for name, arrays in convs.items():
        for got, expected in zip(arrays, full[name], strict=True):
            np.testing.assert_array_equal(got, expected)


def test_keras_notop_file_fills_a_notop_model(tmp_path):
    layout = synthetic.TINY_VGG16
    path = tmp_path / "notop.h5"
    written = synthetic.write_keras_h5(path, layout, include_top=False)
    arrays = convert("keras_h5", path, synthetic.keras_slots(layout, include_top=False))
    assert list(arrays) == list(written)
    np.testing.assert_array_equal(arrays["block5_conv3"][0], written["block5_conv3"][0])
    with pytest.raises(ConversionError, match=r"model layers \['fc1', 'fc2', 'predictions'\]"):
        convert("keras_h5", path, synthetic.keras_slots(layout))


@pytest.mark.parametrize("case", ["keras_h5-keras2", "caffe-v2", "lasagne", "torchvision"])
def test_a_deeper_model_than_the_file_names_both_sides(case, tmp_path):
    fmt, path, _ = write_source(case, synthetic.TINY_VGG16, tmp_path)
    with pytest.raises(ConversionError) as caught:
        convert(fmt, path, synthetic.keras_slots(synthetic.TINY_VGG19))
    message = str(caught.value)
    assert "the model has 16 conv, 3 dense layers" in message
    assert "file 13 conv, 3 dense" in message
    if fmt == "keras_h5":  # the file names its layers: the missing ones are named
        assert "['block3_conv4', 'block4_conv4', 'block5_conv4'] have no source" in message
    else:  # paired in order: the model's last three layers have no source
        assert "['fc1', 'fc2', 'predictions'] have no source" in message
        assert "model layer 'block5_conv4' (conv" in message


@pytest.mark.parametrize("case", ["keras_h5-keras2", "caffe-v1", "lasagne", "torchvision"])
def test_wrong_widths_list_expected_and_received_shapes(case, tmp_path):
    fmt, path, _ = write_source(case, synthetic.TINY_VGG19, tmp_path)
    wider = replace(synthetic.TINY_VGG19, fc=(32, 32, 12))
    with pytest.raises(
        ConversionError, match=r"'predictions' expects shapes \[\(32, 12\), \(12,\)\]"
    ):
        convert(fmt, path, synthetic.keras_slots(wider))


def test_bn_model_on_a_plain_file_is_a_kind_mismatch(tmp_path):
    fmt, path, _ = write_source("torchvision", synthetic.TINY_VGG19, tmp_path)
    with pytest.raises(ConversionError, match="'block1_conv1_bn' \\(batchnorm"):
        convert(fmt, path, synthetic.keras_slots(synthetic.TINY_VGG19_BN))


def test_unknown_format_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'caffe'"):
        convert("cafe", Path("x"), [])


# --- malformed files ---------------------------------------------------------------------------


def _corrupt_variants(data: bytes, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    cuts = sorted(
        {0, 1, 7, 8, 9, 16, len(data) // 2, len(data) - 1, *rng.integers(1, len(data), 40)}
    )
    variants = [data[:cut] for cut in cuts]
    for _ in range(40):
        flipped = bytearray(data)
        for pos in rng.integers(0, min(len(data), 4096), 3):  # headers, where parsing happens
            flipped[pos] ^= int(rng.integers(1, 256))
        variants.append(bytes(flipped))
    variants.append(rng.bytes(2048))
    return variants


@pytest.mark.parametrize("case", ["keras_h5-keras2", "caffe-v1", "caffe-v2", "lasagne", "timm"])
def test_truncated_or_garbled_files_raise_conversion_error_or_fit(case, tmp_path):
    layout = synthetic.TINY_VGG16
    fmt, path, _ = write_source(case, layout, tmp_path)
    slots = synthetic.keras_slots(layout)
    for variant in _corrupt_variants(path.read_bytes()):
        path.write_bytes(variant)
        try:
            arrays = convert(fmt, path, slots)
        except ConversionError:
            continue
        # a flip inside float data still parses: then the arrays must fit exactly
        assert [tuple(a.shape) for a in arrays["predictions"]] == [(32, 10), (10,)]


def test_caffe_length_that_runs_past_the_end_is_rejected_at_once(tmp_path):
    path = tmp_path / "huge.caffemodel"
    path.write_bytes(bytes([2 << 3 | 2]) + bytes([0xFF] * 5) + b"\x01" + b"x" * 10)
    with pytest.raises(ConversionError, match="claims"):
        convert("caffe", path, [])


def test_caffe_unpacked_floats_are_reported_not_misread(tmp_path):
    blob = bytes([1 << 3, 1]) + bytes([5 << 3 | 5]) + b"\x00\x00\x80\x3f"  # num=1, data: 1.0
    layer = bytes([4 << 3 | 2, 1]) + b"c" + bytes([5 << 3, 4, 6 << 3 | 2, len(blob)]) + blob
    path = tmp_path / "unpacked.caffemodel"
    path.write_bytes(bytes([2 << 3 | 2, len(layer)]) + layer)
    with pytest.raises(ConversionError, match="unpacked float data"):
        convert("caffe", path, [])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_empty_and_missing_files_raise_conversion_error(fmt, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ConversionError):
        convert(fmt, empty, synthetic.keras_slots(synthetic.TINY_VGG19))
    with pytest.raises(ConversionError):
        convert(fmt, tmp_path / "missing", synthetic.keras_slots(synthetic.TINY_VGG19))


def test_safetensors_with_foreign_keys_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "bert.safetensors"
    save_file({"encoder.layer.0.attention.weight": np.zeros((4, 4), np.float32)}, str(path))
    with pytest.raises(ConversionError, match="not a torchvision or timm VGG"):
        convert("safetensors_vgg", path, synthetic.keras_slots(synthetic.TINY_VGG19))


def test_float16_safetensors_convert_like_their_float32_values(tmp_path):
    from safetensors.numpy import save_file

    layout = synthetic.TINY_VGG19
    tensors = synthetic.write_safetensors(tmp_path / "f32.safetensors", layout)
    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in tensors.items()}
    save_file(half, str(tmp_path / "f16.safetensors"))
    rounded = {k: v.astype(np.float32) for k, v in half.items()}
    save_file(rounded, str(tmp_path / "rounded.safetensors"))
    slots = synthetic.keras_slots(layout)
    got = convert("safetensors_vgg", tmp_path / "f16.safetensors", slots)
    expected = convert("safetensors_vgg", tmp_path / "rounded.safetensors", slots)
    for name, arrays in expected.items():
        for a, b in zip(got[name], arrays, strict=True):
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)


def test_whole_model_h5_reads_weights_under_model_weights(tmp_path):
    import h5py

    layout = synthetic.TINY_VGG16
    weights = tmp_path / "weights.h5"
    written = synthetic.write_keras_h5(weights, layout, naming="keras1")
    saved_model = tmp_path / "model.h5"
    with h5py.File(weights, "r") as src, h5py.File(saved_model, "w") as dst:
        dst.attrs["model_config"] = b"{}"
        src.copy(src["/"], dst, name="model_weights")
        for key, value in src.attrs.items():
            dst["model_weights"].attrs[key] = value
    arrays = convert("keras_h5", saved_model, synthetic.keras_slots(layout))
    np.testing.assert_array_equal(arrays["fc2"][0], written["fc2"][0])


def test_h5_without_keras_attributes_is_rejected(tmp_path):
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.zeros(3)
    with pytest.raises(ConversionError, match="layer_names"):
        convert("keras_h5", path, synthetic.keras_slots(synthetic.TINY_VGG19))


# --- pickles -----------------------------------------------------------------------------------


class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> list[bytes]:
    calls = [
        (os.system, (f"touch {marker}",)),
        (subprocess.call, (["touch", str(marker)],)),
        (eval, (f"open({str(marker)!r}, 'w').close()",)),
    ]
    out = []
    for func, args in calls:
        for protocol in (0, 2, 5):
            out.append(pickle.dumps(_Payload(func, args), protocol=protocol))
            nested = {"param values": [np.zeros(2), _Payload(func, args)]}
            out.append(pickle.dumps(nested, protocol=protocol))
    return out


def test_the_malicious_payloads_are_live_with_plain_pickle(tmp_path):
    # so the next test proves something: plain pickle.loads runs the command
    marker = tmp_path / "ran"
    pickle.loads(_payloads(marker)[-1])
    assert marker.exists()


def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "vgg19.pkl"
    for payload in _payloads(marker):
        path.write_bytes(payload)
        with pytest.raises(UnsafePickleError, match="refusing"):
            convert("lasagne", path, synthetic.keras_slots(synthetic.TINY_VGG19))
        with pytest.raises(UnsafePickleError):
            read_lasagne_metadata(path)
    assert not marker.exists()


def test_lasagne_metadata_gives_class_names_and_mean(tmp_path):
    path = tmp_path / "vgg19.pkl"
    data = synthetic.write_lasagne(path, synthetic.TINY_VGG19)
    meta = read_lasagne_metadata(path)
    assert meta["synset_words"] == data["synset words"]
    np.testing.assert_array_equal(meta["mean_value"], data["mean value"])
    assert meta["model_name"] == data["model name"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_of_the_same_dict_convert_identically(protocol, tmp_path):
    py2 = tmp_path / "py2.pkl"
    data = synthetic.write_lasagne(py2, synthetic.TINY_VGG16)
    py3 = tmp_path / "py3.pkl"
    py3.write_bytes(pickle.dumps(data, protocol=protocol))  # protocol 2: _codecs.encode bytes
    slots = synthetic.keras_slots(synthetic.TINY_VGG16)
    expected, got = convert("lasagne", py2, slots), convert("lasagne", py3, slots)
    for name, arrays in expected.items():
        for a, b in zip(arrays, got[name], strict=True):
            np.testing.assert_array_equal(a, b)
    assert read_lasagne_metadata(py3)["synset_words"] == data["synset words"]


def test_codecs_encode_is_admitted_only_for_latin1(tmp_path):
    import _codecs

    path = tmp_path / "codec.pkl"
    path.write_bytes(pickle.dumps(_Payload(_codecs.encode, ("x", "rot13")), protocol=2))
    with pytest.raises(UnsafePickleError, match="rot13"):
        convert("lasagne", path, [])


def test_pickled_object_arrays_are_refused(tmp_path):
    # an object array's "data" is a list of pickled objects, not raw bytes
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"param values": [np.array([1, "x"], dtype=object)]}, 2))
    with pytest.raises(UnsafePickleError, match="Python objects"):
        convert("lasagne", path, [])


def test_large_pickled_arrays_are_views_of_the_file_not_copies(tmp_path):
    from kzoo.converters._mapped import offset_of
    from kzoo.converters._safe_pickle import load_mapped

    path = tmp_path / "vgg19.pkl"
    layout = replace(synthetic.TINY_VGG19, fc=(160, 160, 10))  # fc2: 100 KB
    written = synthetic.write_lasagne(path, layout)["param values"]
    data, buf = load_mapped(path)
    params = data[b"param values"]
    big = [i for i, p in enumerate(written) if p.nbytes >= 1 << 16]
    assert big
    for i in big:
        assert offset_of(buf, params[i]) is not None
        np.testing.assert_array_equal(params[i], written[i])
    assert all(offset_of(buf, p) is None for p in params if p.nbytes < 1 << 16)


def test_truncated_pickles_raise_conversion_error(tmp_path):
    path = tmp_path / "vgg19.pkl"
    synthetic.write_lasagne(path, synthetic.TINY_VGG19)
    whole = path.read_bytes()
    for cut in (1, 100, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        with pytest.raises(ConversionError, match=r"truncated|damaged"):
            convert("lasagne", path, synthetic.keras_slots(synthetic.TINY_VGG19))


def test_pickle_that_is_not_a_lasagne_dict_is_rejected(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ConversionError, match="'param values'"):
        convert("lasagne", path, [])
    path.write_bytes(pickle.dumps({"param values": [np.zeros(2), np.array(["W"])]}, protocol=2))
    with pytest.raises(ConversionError, match=r"non-numeric entries at positions \[1\]"):
        convert("lasagne", path, [])


# --- slots -------------------------------------------------------------------------------------


def test_slots_of_lists_weight_layers_in_order_with_keras_shapes():
    model = keras_vgg(replace(synthetic.TINY_VGG16, batchnorm=True))
    slots = slots_of(model)
    assert slots[:3] == [
        WeightSlot("block1_conv1", "conv", ((3, 3, 3, 4),)),
        WeightSlot("block1_conv1_bn", "batchnorm", ((4,), (4,), (4,), (4,)), epsilon=1e-3),
        WeightSlot("block1_conv2", "conv", ((3, 3, 4, 4),)),
    ]
    assert slots[-1] == WeightSlot("predictions", "dense", ((32, 10), (10,)))


@pytest.mark.parametrize("include_top", [True, False])
def test_synthetic_slots_match_the_built_model(include_top):
    for layout in (synthetic.TINY_VGG19, synthetic.TINY_VGG19_BN):
        built = slots_of(keras_vgg(layout, include_top=include_top))
        expected = synthetic.keras_slots(layout, include_top=include_top)
        assert [replace(s, epsilon=None) for s in built] == expected


def test_slots_of_rejects_layers_it_cannot_fill():
    import keras

    model = keras.Sequential(
        [keras.Input((4, 6)), keras.layers.LayerNormalization(name="ln"), keras.layers.Dense(2)]
    )
    with pytest.raises(ConversionError, match=r"ln \(LayerNormalization\)"):
        slots_of(model)
