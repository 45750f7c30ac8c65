"""kzoo.build turns architecture strings into Keras models; kzoo.to_string turns them back."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from test_dsl_properties import specs

import kzoo
from kzoo.dsl import list_architectures
from kzoo.errors import SpecError

VGG19 = "64C3x2-MP2-128C3x2-MP2-256C3x4-MP2-512C3x4-MP2-512C3x4-MP2-FC4096x2-FC1000"
TALK = [
    "28x28x1:20C5-MP2-50C5-MP2-FC256-FC10",
    "28x28x1:64C3-64C3-MP2-128C3-128C3-MP2-FC256-FC10",
    "28x28x1:FC64-FC10",
    "28x28x1:FC256-FC256-FC10",
]


def names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]


def signature(model: keras.Model) -> list[tuple]:
    """Per layer: name, class, output shape, weight shapes.

    Keras Applications leaves its input layer's name to Keras's global counter
    (``input_layer_4`` once other tests have made inputs), so inputs compare by
    class and shape only.
    """
    return [
        (
            "" if isinstance(layer, keras.layers.InputLayer) else layer.name,
            type(layer).__name__,
            tuple(layer.output.shape),
            [tuple(w.shape) for w in layer.weights],
        )
        for layer in model.layers
    ]


def test_vgg19_matches_keras_applications_layer_by_layer():
    ours = kzoo.build(VGG19, input_shape=(224, 224, 3))
    reference = keras.applications.VGG19(weights=None)
    assert signature(ours) == signature(reference)
    assert ours.count_params() == reference.count_params() == 143_667_240
    for mine, theirs in zip(ours.layers, reference.layers, strict=True):
        config = mine.get_config()
        for key in ("activation", "padding", "strides", "pool_size", "use_bias"):
            if key in config:
                assert config[key] == theirs.get_config()[key], (mine.name, key)


def test_lenet_parameter_counts_for_both_paddings():
    lenet = "20C5-MP2-50C5-MP2-FC256-FC10"
    assert kzoo.build(lenet, (28, 28, 1)).count_params() == 655_596
    assert kzoo.build(lenet, (28, 28, 1), dialect="ciresan").count_params() == 233_196
    assert kzoo.build(lenet, (28, 28, 1), padding="valid").count_params() == 233_196
    assert kzoo.build("20C5v-MP2-50C5v-MP2-FC256-FC10", (28, 28, 1)).count_params() == 233_196


def test_names_follow_keras_applications():
    model = kzoo.build("28x28x1:8C3x2-MP2-8C3-MP2-FC16x2-FC10")
    assert names(model) == [
        "input_layer",
        "block1_conv1",
        "block1_conv2",
        "block1_pool",
        "block2_conv1",
        "block2_pool",
        "flatten",
        "fc1",
        "fc2",
        "predictions",
    ]


def test_batchnorm_goes_between_the_conv_and_its_activation():
    model = kzoo.build("8x8x1:4C3+BN-MP2-FC6+BN+D0.5-FC3")
    assert names(model)[1:4] == ["block1_conv1", "block1_conv1_bn", "block1_conv1_relu"]
    assert names(model)[6:10] == ["fc1", "fc1_bn", "fc1_relu", "fc1_dropout"]
    conv = model.get_layer("block1_conv1")
    assert not conv.use_bias and conv.get_config()["activation"] == "linear"
    assert isinstance(model.get_layer("block1_conv1_bn"), keras.layers.BatchNormalization)
    assert model.get_layer("block1_conv1_relu").get_config()["activation"] == "relu"
    assert model.get_layer("fc1_dropout").rate == 0.5


def test_without_batchnorm_the_activation_stays_inside_the_layer():
    model = kzoo.build("8x8x1:4C3+tanh-FC3")
    conv = model.get_layer("block1_conv1")
    assert conv.use_bias and conv.get_config()["activation"] == "tanh"
    assert names(model) == ["input_layer", "block1_conv1", "flatten", "predictions"]


def test_global_options_apply_to_hidden_layers_but_never_the_head():
    model = kzoo.build("8x8x1:4C3-FC6-FC3", bn=True, dropout=0.25, activation="tanh")
    assert names(model) == [
        "input_layer",
        "block1_conv1",
        "block1_conv1_bn",
        "block1_conv1_tanh",
        "flatten",
        "fc1",
        "fc1_bn",
        "fc1_tanh",
        "fc1_dropout",
        "predictions",
    ]
    head = model.get_layer("predictions")
    assert head.use_bias and head.get_config()["activation"] == "softmax"


def test_explicit_modifier_wins_over_the_global_option():
    model = kzoo.build("784:FC6+D0.1-FC3", dropout=0.5)
    assert model.get_layer("fc1_dropout").rate == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("spec", "head", "expected"),
    [
        ("784:FC6-FC3", None, "softmax"),
        ("784:FC6-FC1+sigmoid", None, "sigmoid"),
        ("784:FC6-FC1+linear", None, "linear"),
        ("784:FC6-FC2{head=sigmoid}", None, "sigmoid"),
        ("784:FC6-FC2", "linear", "linear"),
        ("784:FC6-output4", None, "softmax"),
    ],
)
def test_head_activation(spec, head, expected):
    model = kzoo.build(spec, head=head)
    assert model.layers[-1].name == "predictions"
    assert model.layers[-1].get_config()["activation"] == expected


def test_include_top_false_drops_the_flatten_and_everything_after():
    model = kzoo.build("vgg16", input_shape=(40, 40, 3), include_top=False)
    assert names(model)[-1] == "block5_pool"
    assert tuple(model.output.shape) == (None, 1, 1, 512)


@pytest.mark.parametrize(("pooling", "name"), [("avg", "avg_pool"), ("max", "max_pool")])
def test_include_top_false_with_global_pooling(pooling, name):
    model = kzoo.build("8C3-MP2-FC10", (None, None, 3), include_top=False, pooling=pooling)
    assert names(model) == ["input_layer", "block1_conv1", "block1_pool", name]
    assert tuple(model.output.shape) == (None, 8)


def test_prefix_names_every_layer_of_a_head_on_a_feature_map():
    model = kzoo.build("GAP-FC256+D0.5-FC5", input_shape=(7, 7, 512), prefix="head_")
    assert names(model) == [
        "head_input_layer",
        "head_avg_pool",
        "head_fc1",
        "head_fc1_dropout",
        "head_predictions",
    ]


def test_preprocessing_layer_comes_right_after_the_input():
    scale = keras.layers.Rescaling(1 / 255, name="scale")
    model = kzoo.build("8x8x1:4C3-FC2", preprocessing=scale)
    assert names(model)[:3] == ["input_layer", "scale", "block1_conv1"]


def test_named_architectures_build_with_their_default_input_shape():
    model = kzoo.build("lenet")
    assert model.name == "lenet"
    assert tuple(model.input.shape) == (None, 28, 28, 1)
    assert kzoo.build("mlp64").count_params() == 784 * 64 + 64 + 650
    assert kzoo.build("convnet", name="mine").name == "mine"
    assert set(list_architectures()) >= {"lenet", "mlp64", "mlp256", "convnet", "vgg16", "vgg19"}


def test_gabor_initializer_for_convs():
    from kzoo.layers import GaborInitializer

    model = kzoo.build("16x16x1:4C7{init=gabor}-GAP-FC2")
    assert isinstance(model.get_layer("block1_conv1").kernel_initializer, GaborInitializer)


def test_unknown_initializer_is_a_spec_error_pointing_at_the_layer():
    spec = "8x8x1:4C3{init=nosuchinit}-FC2"
    with pytest.raises(SpecError, match="cannot build") as info:
        kzoo.build(spec)
    assert spec[slice(*info.value.span)] == "4C3{init=nosuchinit}"


def test_an_option_keras_refuses_when_the_layer_is_called_points_at_its_token():
    # Gabor filters are conv kernels: a dense layer fails only once it sees its input
    spec = "28x28x1:16C3-FC10{init=gabor}"
    with pytest.raises(SpecError, match="GaborInitializer fills Conv2D kernels") as info:
        kzoo.build(spec)
    assert spec[slice(*info.value.span)] == "FC10{init=gabor}"


def test_user_token_builds_and_explains():
    def build(p):
        return keras.layers.GroupNormalization(groups=p["groups"], name=p["name"])

    def shape(input_shape, p):
        return input_shape, 2 * input_shape[-1]

    with kzoo.scoped_tokens():
        kzoo.register_token("GN", build=build, shape=shape, args=("groups",))
        model = kzoo.build("8x8x1:4C3-GN2-MP2-FC3")
        explained = kzoo.explain("8x8x1:4C3-GN2-MP2-FC3")
        with pytest.raises(ValueError, match="'gn1' \\(GroupNormalization\\)"):
            kzoo.to_string(model)
    assert names(model)[2] == "gn1"
    assert model.count_params() == explained.total_params


def test_user_token_with_a_writer_round_trips_through_to_string():
    def write(layer):
        if isinstance(layer, keras.layers.GroupNormalization):
            return f"GN{layer.groups}"
        return None

    with kzoo.scoped_tokens():
        kzoo.register_token(
            "GN",
            build=lambda p: keras.layers.GroupNormalization(groups=p["groups"], name=p["name"]),
            shape=lambda s, p: (s, 2 * s[-1]),
            args=("groups",),
            write=write,
        )
        model = kzoo.build("8x8x1:4C3-GN2-GN2-MP2-FC3")
        text = kzoo.to_string(model)
        assert text == "8x8x1:4C3-GN2x2-MP2-FC3"
        assert signature(kzoo.build(text)) == signature(model)


@pytest.mark.parametrize("spec", TALK)
def test_to_string_of_the_talk_strings_rebuilds_them(spec):
    model = kzoo.build(spec)
    text = kzoo.to_string(model)
    assert kzoo.parse(text).layers() == kzoo.parse(spec).layers()
    assert signature(kzoo.build(text)) == signature(model)


def test_to_string_rerolls_repeats():
    text = kzoo.to_string(kzoo.build("28x28x1:64C3-64C3-MP2-128C3-128C3-MP2-FC256-FC256-FC10"))
    assert text == "28x28x1:64C3x2-MP2-128C3x2-MP2-FC256x2-FC10"


def test_to_string_is_canonical():
    model = kzoo.build("1x12x12-4C3v-4C3v-MP2-[4C1-relu]x2-150N-10N")
    assert kzoo.to_string(model) == "12x12x1:4C3vx2-MP2-[4C1-relu]x2-FC150-FC10"
    assert kzoo.to_string(kzoo.build("8x8x1:4C1-relu-relu")) == "8x8x1:4C1-[relu]x2"


def test_to_string_rerolls_vgg19_into_blocks():
    text = kzoo.to_string(kzoo.build("vgg19", input_shape=(32, 32, 3), include_top=False))
    assert text == "32x32x3:64C3x2-MP2-128C3x2-MP2-256C3x4-MP2-[512C3x4-MP2]x2"


def test_to_string_writes_global_options_per_layer():
    model = kzoo.build("8x8x1:4C3-FC6-FC3", bn=True, dropout=0.5, activation="tanh")
    text = kzoo.to_string(model)
    assert text == "8x8x1:4C3+BN+tanh-FC6+BN+tanh+D0.5-FC3"
    assert names(kzoo.build(text)) == names(model)


def test_to_string_names_an_unrepresentable_layer():
    inputs = keras.Input((4, 3))
    x = keras.layers.LSTM(2, name="my_lstm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    with pytest.raises(ValueError, match="'my_lstm' \\(LSTM\\)"):
        kzoo.to_string(model)


def test_to_string_can_leave_out_a_preprocessing_layer():
    model = kzoo.build("8x8x1:4C3-FC2", preprocessing=keras.layers.Rescaling(0.5, name="pre"))
    assert kzoo.to_string(model, ignore=["pre"]) == "8x8x1:4C3-FC2"


@given(specs())
@settings(max_examples=15, deadline=None)
def test_build_of_to_string_rebuilds_the_same_model(spec):
    model = kzoo.build(spec.unparse())
    again = kzoo.build(kzoo.to_string(model))
    assert signature(again) == signature(model)
    assert again.count_params() == model.count_params()


@pytest.mark.backend
def test_built_lenet_predicts_probabilities():
    model = kzoo.build("lenet", bn=True, dropout=0.5)
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.backend
def test_attached_batchnorm_is_the_numpy_formula_before_relu():
    model = kzoo.build("4x4x2:3C1+BN-GAP")
    conv = model.get_layer("block1_conv1")
    bn = model.get_layer("block1_conv1_bn")
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(1, 1, 2, 3)).astype("float32")
    gamma, beta, mean = (rng.normal(size=3).astype("float32") for _ in range(3))
    var = rng.random(3).astype("float32") + 0.5
    conv.set_weights([kernel])
    bn.set_weights([gamma, beta, mean, var])
    x = rng.normal(size=(2, 4, 4, 2)).astype("float32")
    expected = x @ kernel[0, 0]
    expected = (expected - mean) / np.sqrt(var + bn.epsilon) * gamma + beta
    expected = np.maximum(expected, 0).mean(axis=(1, 2))
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
