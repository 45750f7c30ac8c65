"""The named ResNets and Inception-v3 are keras.applications' networks, layer for layer.

Each comparison builds both models once per module (``scope="module"``): same layer names
(InceptionV3: Keras generates its names, so order, kinds and shapes), the same weight shapes
and parameter count, the same wiring (an Add reads ``[shortcut, body]`` in Keras's order), and
the same outputs on random images once the weights of one are copied into the other by name.
The torchvision and Caffe layouts have no Keras twin: their names, strides, biases and
epsilons are checked against the Keras ResNet's plan and the sources' conventions.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kzoo
from kzoo.dsl import parse, plan

# keras.applications leaves these layers to Keras's global name counter, so a name can only
# match in a fresh session; they are compared by position, kind and shape instead
GENERATED = ("input_layer", "max_pooling2d", "concatenate", "mixed9_1")


def signature(model: keras.Model, *, names: bool = True) -> list[tuple]:
    return [
        (
            layer.name if names and not layer.name.startswith(GENERATED) else "",
            type(layer).__name__,
            tuple(layer.output.shape),
            [tuple(w.shape) for w in layer.weights],
        )
        for layer in model.layers
    ]


def inbound(model: keras.Model) -> dict[str, list[str]]:
    """Each merge layer's input layers, in call order."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Add | keras.layers.Concatenate):
            tensors = layer._inbound_nodes[0].input_tensors
            names = [t._keras_history[0].name for t in tensors]
            found[layer.name] = ["" if n.startswith(GENERATED) else n for n in names]
    return found


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    for mine, theirs in zip(source.layers, target.layers, strict=True):
        theirs.set_weights(mine.get_weights())


def random_weights(model: keras.Model, seed: int) -> None:
    """Moving statistics as well as kernels random, so BN's epsilon and wiring both matter."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in weights]
        layer.set_weights(weights)


def same_outputs(ours: keras.Model, theirs: keras.Model, size: int) -> None:
    random_weights(ours, seed=0)
    copy_weights(ours, theirs)
    images = np.random.default_rng(1).uniform(0, 1, (1, size, size, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(ours(images, training=False))
    expected = keras.ops.convert_to_numpy(theirs(images, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert got.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()


def check_twin(ours: keras.Model, theirs: keras.Model, *, names: bool = True) -> None:
    assert signature(ours, names=names) == signature(theirs, names=names)
    assert ours.count_params() == theirs.count_params()
    for mine, other in zip(ours.layers, theirs.layers, strict=True):
        if isinstance(mine, keras.layers.BatchNormalization | keras.layers.Conv2D):
            a, b = mine.get_config(), other.get_config()
            for key in ("epsilon", "scale", "center", "use_bias", "strides", "padding"):
                if key == "padding" and tuple(a.get("kernel_size", ())) == (1, 1):
                    continue  # 'same' and 'valid' pad a 1x1 kernel alike (by nothing)
                assert a.get(key) == b.get(key), (mine.name, key)


@pytest.fixture(scope="module")
def resnet50():
    return kzoo.build("resnet50"), keras.applications.ResNet50(weights=None)


@pytest.fixture(scope="module")
def resnet50_v2():
    return kzoo.build("resnet50_v2"), keras.applications.ResNet50V2(weights=None)


def test_resnet50_is_keras_resnet50_layer_by_layer(resnet50):
    ours, theirs = resnet50
    check_twin(ours, theirs)
    assert ours.count_params() == 25_636_712
    names = [layer.name for layer in ours.layers]
    assert names[:8] == [
        "input_layer", "conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad",
        "pool1_pool", "conv2_block1_1_conv",
    ]  # fmt: skip
    assert {"conv4_block6_out", "conv5_block3_out", "avg_pool", "predictions"} <= set(names)


def test_resnet50_adds_take_the_shortcut_first(resnet50):
    ours, theirs = resnet50
    assert inbound(ours) == inbound(theirs)
    assert inbound(ours)["conv2_block1_add"] == ["conv2_block1_0_bn", "conv2_block1_3_bn"]
    assert inbound(ours)["conv2_block2_add"] == ["conv2_block1_out", "conv2_block2_3_bn"]


@pytest.mark.parametrize("name", ["resnet50", "resnet50_v2"])
def test_to_string_of_the_keras_twin_is_the_architecture_string(name, resnet50, resnet50_v2):
    ours, theirs = resnet50 if name == "resnet50" else resnet50_v2
    text = kzoo.to_string(theirs)
    assert text == kzoo.to_string(ours)
    assert parse(text) == parse("224x224x3:" + kzoo.list_architectures()[name])


def test_resnet50_computes_what_keras_resnet50_computes(resnet50):
    same_outputs(*resnet50, size=224)


def test_resnet50_v2_is_keras_resnet50v2(resnet50_v2):
    ours, theirs = resnet50_v2
    check_twin(ours, theirs)
    assert inbound(ours) == inbound(theirs)
    names = [layer.name for layer in ours.layers]
    assert {"conv2_block1_preact_bn", "conv2_block3_2_pad", "post_bn", "post_relu"} <= set(names)


def test_resnet50_v2_computes_what_keras_computes(resnet50_v2):
    same_outputs(*resnet50_v2, size=224)


def test_a_cut_at_a_stage_output_is_named_like_keras():
    top = kzoo.explain("resnet50", include_top=False)
    assert top.rows[-1].name == "conv5_block3_out" and top.rows[-1].output_shape == (7, 7, 2048)
    pooled = kzoo.explain("resnet50", input_shape=(160, 160, 3), include_top=False, pooling="avg")
    assert pooled.rows[-1].name == "avg_pool" and pooled.rows[-1].output_shape == (2048,)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("resnet101", "ResNet101"),
        ("resnet152", "ResNet152"),
        ("resnet101_v2", "ResNet101V2"),
        ("resnet152_v2", "ResNet152V2"),
    ],
)
def test_deeper_resnets_are_their_keras_twins(name, reference):
    ours = kzoo.build(name)
    theirs = getattr(keras.applications, reference)(weights=None)
    check_twin(ours, theirs)
    assert inbound(ours) == inbound(theirs)


@pytest.mark.slow
def test_inception_v3_is_keras_inception_v3_in_order_kind_and_shape():
    ours = kzoo.build("inception_v3")
    theirs = keras.applications.InceptionV3(weights=None)
    check_twin(ours, theirs, names=False)
    assert ours.count_params() == theirs.count_params() == 23_851_784
    named = {f"mixed{i}" for i in range(11)} | {"avg_pool", "predictions"}
    assert named <= {layer.name for layer in ours.layers}
    for mine, other in zip(ours.layers, theirs.layers, strict=True):
        if mine.name in named:
            assert mine.name == other.name
    text = kzoo.to_string(theirs)
    assert parse(text) == parse("299x299x3:" + kzoo.list_architectures()["inception_v3"])
    same_outputs(ours, theirs, size=299)


def test_inception_v3_explains_its_keras_count_and_input():
    result = kzoo.explain("inception_v3")
    assert result.input_shape == (299, 299, 3)
    assert result.total_params == 23_851_784  # keras.applications.InceptionV3's count
    by_name = {row.name: row for row in result.rows}
    assert by_name["mixed10"].output_shape == (8, 8, 2048)
    assert by_name["batch_normalization"].params == 3 * 32  # scale=False: no gamma


# -- the layouts without a Keras twin ------------------------------------------------------------
def steps(name: str) -> dict:
    return {step.name: step for step in plan(name).steps}


def weight_layers(name: str) -> dict[str, tuple]:
    """Layer name -> kernel shape without bias, from the plan (what a converter pairs with)."""
    found = {}
    for step in plan(name).steps:
        if step.token.role == "conv":
            kh, kw = step.params["kernel_size"]
            found[step.name] = (kh, kw, step.params["filters"])
        elif step.token.role in ("batchnorm", "dense"):
            found[step.name] = step.output_shape[-1:]
    return found


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_torch_and_caffe_layouts_hold_the_keras_weight_layer_names(depth):
    keras_layout = weight_layers(f"resnet{depth}")
    assert weight_layers(f"resnet{depth}_caffe") == keras_layout
    assert weight_layers(f"resnet{depth}_torch") == keras_layout


def test_torch_layout_strides_the_3x3_with_symmetric_padding_and_no_biases():
    torch = steps("resnet50_torch")
    assert torch["conv3_block1_1_conv"].params["strides"] == (1, 1)
    assert torch["conv3_block1_2_conv"].params["strides"] == (2, 2)
    assert torch["conv3_block1_2_conv"].params["padding"] == "valid"
    assert torch["conv3_block1_2_pad"].params["padding"] == ((1, 1), (1, 1))
    assert torch["conv1_pad"].params["padding"] == ((3, 3), (3, 3))
    assert torch["pool1_pad"].params["padding"] == ((1, 1), (1, 1))
    assert torch["conv3_block1_0_conv"].params["strides"] == (2, 2)
    convs = [s for s in torch.values() if s.token.role == "conv"]
    assert not any(s.params["use_bias"] for s in convs)
    bns = [s for s in torch.values() if s.token.role == "batchnorm"]
    assert {s.params["epsilon"] for s in bns} == {1e-5}
    assert torch["pool1_pool"].output_shape == (56, 56, 64)


def test_caffe_layout_strides_the_1x1_pools_in_ceil_mode_and_biases_conv1_only():
    caffe = steps("resnet50_caffe")
    assert caffe["conv3_block1_1_conv"].params["strides"] == (2, 2)
    assert caffe["conv3_block1_2_conv"].params["strides"] == (1, 1)
    assert caffe["pool1_pad"].params["padding"] == ((0, 1), (0, 1))
    # Caffe: ceil((112 - 3) / 2) + 1 = 56
    assert caffe["pool1_pool"].output_shape == (56, 56, 64)
    biased = [s.name for s in caffe.values() if s.token.role == "conv" and s.params["use_bias"]]
    assert biased == ["conv1_conv"]


@pytest.mark.parametrize(("depth", "blocks"), [(18, (2, 2, 2, 2)), (34, (3, 4, 6, 3))])
def test_basic_block_resnets_have_torchvision_counts(depth, blocks):
    layout = steps(f"resnet{depth}")
    for stage, n in zip(range(2, 6), blocks, strict=True):
        assert f"conv{stage}_block{n}_2_conv" in layout
        assert f"conv{stage}_block{n + 1}_1_conv" not in layout
    assert "conv2_block1_0_conv" not in layout  # 64 -> 64: identity, as torchvision
    assert layout["conv3_block1_0_conv"].params["strides"] == (2, 2)
    trainable = sum(
        s.n_params // 2 if s.token.role == "batchnorm" else s.n_params for s in layout.values()
    )
    # torchvision's resnet18 / resnet34 parameter counts (moving statistics excluded)
    assert trainable == {18: 11_689_512, 34: 21_797_672}[depth]
