"""The converted-weights store (atomic, by name) and all-or-nothing assignment by layer name."""

from __future__ import annotations

import numpy as np
import pytest

from kzoo.converters import slots_of
from kzoo.converters.assign import assign
from kzoo.errors import ConversionError
from kzoo.zoo.store import load_weights, read_meta, save_weights


def _arrays(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "conv": [
            rng.standard_normal((3, 3, 2, 4), dtype=np.float32),
            np.arange(4, dtype=np.float32),
        ],
        "bn": [rng.standard_normal(4, dtype=np.float32) for _ in range(4)],
        "dense": [rng.standard_normal((16, 3), dtype=np.float32), np.zeros(3, np.float32)],
    }


def _model():
    import keras

    return keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(3, name="dense"),
        ]
    )


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


def test_saved_weights_load_back_in_order_with_meta(tmp_path):
    path = tmp_path / "vgg.h5"
    arrays = dict(reversed(_arrays().items()))  # the model order is kept, whatever it is
    save_weights(path, arrays, {"source_sha256": "abc", "converter_version": "1"})
    loaded = load_weights(path)
    assert list(loaded) == list(arrays)
    for name, weights in arrays.items():
        assert len(loaded[name]) == len(weights)
        for got, expected in zip(loaded[name], weights, strict=True):
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
    assert read_meta(path) == {"source_sha256": "abc", "converter_version": "1"}


def test_save_leaves_no_temp_file_and_replaces_atomically(tmp_path):
    path = tmp_path / "vgg.h5"
    save_weights(path, _arrays(0), {})
    save_weights(path, _arrays(1), {})
    assert [p.name for p in tmp_path.iterdir()] == ["vgg.h5"]
    np.testing.assert_array_equal(load_weights(path)["conv"][0], _arrays(1)["conv"][0])


def test_a_failed_save_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "vgg.h5"
    save_weights(path, _arrays(0), {})
    unstorable = {"conv": [np.array([object()], dtype=object)]}
    with pytest.raises(TypeError):
        save_weights(path, unstorable, {})
    assert [p.name for p in tmp_path.iterdir()] == ["vgg.h5"]
    np.testing.assert_array_equal(load_weights(path)["conv"][0], _arrays(0)["conv"][0])


def test_layer_names_with_slashes_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="free of '/'"):
        save_weights(tmp_path / "w.h5", {"block1/conv": [np.zeros(1)]}, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_damaged_store_files_raise_conversion_error(damage, tmp_path):
    import h5py

    path = tmp_path / "vgg.h5"
    save_weights(path, _arrays(), {})
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "garbage":
        path.write_bytes(b"not hdf5 at all" * 50)
    else:
        with h5py.File(path, "w") as h5:
            h5["x"] = np.zeros(2)
    with pytest.raises(ConversionError, match=r"vgg\.h5"):
        load_weights(path)


@pytest.mark.backend
def test_assign_by_name_ignores_order_and_sets_every_weight():
    model = _model()
    arrays = dict(reversed(_arrays().items()))
    arrays["bn"][3] = np.abs(arrays["bn"][3]) + 0.5  # a valid variance
    assign(model, arrays)
    got = _weights(model)
    for name, weights in arrays.items():
        for g, expected in zip(got[name], weights, strict=True):
            np.testing.assert_array_equal(g, expected)


@pytest.mark.backend
def test_assign_lists_every_mismatch_and_assigns_nothing():
    model = _model()
    before = _weights(model)
    arrays = _arrays()
    del arrays["bn"]
    arrays["dense"][0] = np.zeros((15, 3), np.float32)
    arrays["fc9"] = [np.zeros(1)]
    arrays["conv"][1] = np.full(4, 7.0, np.float32)  # fits: must still not be assigned
    with pytest.raises(ConversionError) as caught:
        assign(model, arrays)
    message = str(caught.value)
    assert "model layer 'bn' has no arrays" in message
    assert "layer 'dense': expected shapes [(16, 3), (3,)], got [(15, 3), (3,)]" in message
    assert "layers the model does not have: ['fc9']" in message
    assert "3 problem(s)" in message
    after = _weights(model)
    for name, weights in before.items():
        for b, a in zip(weights, after[name], strict=True):
            np.testing.assert_array_equal(b, a)


@pytest.mark.backend
def test_skip_missing_leaves_named_layers_untouched():
    model = _model()
    head_before = _weights(model)["dense"]
    arrays = _arrays()
    del arrays["dense"]
    assign(model, arrays, skip_missing=["dense"])
    np.testing.assert_array_equal(_weights(model)["conv"][0], arrays["conv"][0])
    np.testing.assert_array_equal(_weights(model)["dense"][0], head_before[0])


@pytest.mark.backend
def test_assign_reaches_layers_inside_a_nested_model():
    import keras

    base = _model()
    outer = keras.Sequential([keras.Input((4, 4, 2)), base, keras.layers.Dense(2, name="head")])
    assert [s.name for s in slots_of(outer)] == ["conv", "bn", "dense", "head"]
    assign(outer, _arrays(), skip_missing=["head"])
    np.testing.assert_array_equal(base.get_layer("conv").get_weights()[0], _arrays()["conv"][0])


@pytest.mark.backend
def test_store_round_trip_gives_the_same_predictions(tmp_path):
    import keras

    model = _model()
    arrays = _arrays()
    arrays["bn"][3] = np.abs(arrays["bn"][3]) + 0.5
    save_weights(tmp_path / "w.h5", arrays, {})
    assign(model, load_weights(tmp_path / "w.h5"))
    x = np.random.default_rng(3).standard_normal((2, 4, 4, 2)).astype(np.float32)
    other = _model()
    assign(other, arrays)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(other(x))
    )
