"""kzoo.taps: the layer that feeds each pooling layer, read off the graph; shared layers."""

from __future__ import annotations

import keras
import numpy as np

import kzoo
from kzoo.taps import block_outputs, tap


def test_each_pool_is_fed_by_its_own_input_on_a_branching_graph():
    # listed order (a, b, add, pool, pool_s) puts "add" before the pool that "a" feeds
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="branch_a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="branch_b")(inputs)
    added = keras.layers.Add(name="add")([a, b])
    pooled_a = keras.layers.MaxPooling2D(name="pool")(a)
    pooled_sum = keras.layers.MaxPooling2D(name="pool_s")(added)
    model = keras.Model(inputs, [pooled_a, pooled_sum])
    assert [layer.name for layer in model.layers][3:] == ["add", "pool", "pool_s"]
    assert block_outputs(model) == ["branch_a", "add"]


def test_blocks_of_a_vgg_and_of_its_nested_copy_are_the_last_conv_of_each_block():
    spec = "16x16x3:4C3x2-MP2-8C3x2-MP2-FC3"
    vgg = kzoo.build(spec)
    assert block_outputs(vgg) == ["block1_conv2", "block2_conv2"]
    clf = kzoo.transfer(kzoo.build(spec), head="GAP-FC2")
    base = clf.base.name
    assert block_outputs(clf.model) == [f"{base}/block1_conv2", f"{base}/block2_conv2"]


def test_a_pool_fed_by_a_nested_model_is_fed_by_that_models_last_layer():
    inner = kzoo.build("8x8x3:4C3-4C3", name="inner", include_top=False)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.MaxPooling2D(name="pool")(inner(inputs))
    model = keras.Model(inputs, outputs)
    assert block_outputs(model) == ["inner/block1_conv2"]


def test_a_shared_layer_is_tapped_at_its_last_call():
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    first = shared(inputs)
    model = keras.Model(inputs, shared(keras.layers.Dense(4, name="between")(first)))
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    got = tap(model, ["shared"])(x)["shared"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), model.predict(x, verbose=0))
