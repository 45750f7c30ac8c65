"""Residual groups and branches in the notation: grammar, errors, plan, Keras graph, numerics."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from numpy_reference import conv_nhwc, relu

import kzoo
from kzoo.dsl import Block, Layer, Modifier, parse, plan
from kzoo.errors import SpecError


# -- grammar ------------------------------------------------------------------------------------
def test_residual_group_parses_with_its_body_and_repetition():
    spec = parse("R[64C1+BN-64C3+BN-256C1+BN]x3")
    (block,) = spec.items
    assert isinstance(block, Block) and block.kind == "R" and block.times == 3
    (body,) = block.branches
    assert [layer.count for layer in body] == [64, 64, 256]
    assert len(spec.layers()) == 9


def test_branches_and_explicit_shortcut_parse():
    block = parse("cat[64C1|48C1-64C5|AP3s1p-32C1]").items[0]
    assert block.kind == "cat" and [len(b) for b in block.branches] == [1, 2, 2]
    assert block.branches[2][0] == Layer("AP", None, (3,), (("s", 1), ("p", True)))
    residual = parse("R[64C3+BN-64C3+BN|64C1s2+BN]").items[0]
    assert residual.branches[1] == (Layer("C", 64, (1,), (("s", 2),), (Modifier("BN"),)),)


@pytest.mark.parametrize(
    "text",
    [
        "R[64C1+BN-64C3+BN-256C1+BN]x3",
        "PR[64C1-P1-64C3v-256C1]",
        "cat[64C1|48C1-cat[8C1,3|8C3,1]|AP3s1p-32C1]x2",
        "add[8C3|8C5]-R[8C3|8C1]",
        "{bias=true,eps=1.001e-05}224x224x3:P3-64C7s2v+BN-P0,1-MP3s2",
        "[PR[8C1]x2-PR[8C1s2]]",
    ],
)
def test_graph_specs_print_back_to_themselves(text):
    assert parse(text).unparse() == text
    assert parse(parse(text).unparse()) == parse(text)


def test_spec_options_may_follow_the_header_and_print_first():
    assert parse("8x8x3:{eps=1e-5}8C3+BN").unparse() == "{eps=1e-05}8x8x3:8C3+BN"


# -- errors -------------------------------------------------------------------------------------
GRAPH_ERRORS = [
    # spec, the text the caret must underline, words of the reason, words of the help
    ("R[64C3+BN-64C3+BN", "R[", "unclosed 'R['", "add ']'"),
    ("8C3-cat[8C1|8C3", "cat[", "unclosed 'cat['", "add ']'"),
    ("64C3|FC10", "|", "'|' outside a graph group", "'cat[64C1|48C1-64C5]'"),
    ("[64C3|8C3]", "|", "'|' in the plain group opened at column 1", "'cat['"),
    ("cat[64C3]", "cat[64C3]", "two or more branches", "cat[64C1|48C1-64C5]"),
    ("R[8C3|8C1|8C1]", "R[8C3|8C1|8C1]", "one body and at most one shortcut", "R[body|"),
    ("cat[8C3||8C3]", "|", "empty branch", "every branch"),
    ("R[]", "]", "empty group", "every branch"),
    ("Cat[8C3|8C3]", "Cat[", "unknown group 'Cat['", "did you mean 'cat['?"),
    ("R[8C3-|8C1]", "-", "expected a layer after '-'", "remove the '-'"),
    ("R[8C3]+BN", "+", "cannot attach to a group", "each layer inside"),
    ("32C3-MP2-F C10", "F C10", "a space splits the layer token", "did you mean 'FC10'?"),
    ("cat[8C3|8C3)", ")", "closed by ')'", "close it with ']'"),
    ("{bais=true}8C3", "bais", "unknown option 'bais' for the spec", "did you mean 'bias'?"),
    ("{eps=0}8C3", "{eps=0}", "eps must be a number > 0", "1e-5"),
    ("P-8C3", "P", "P needs a number", "'P3'"),
    ("P1.5-8C3", "P1.5", "whole number >= 0", "'P0,1'"),
    ("8C3+BN{bias=yes}", "8C3+BN{bias=yes}", "bias must be true or false", "bias=true"),
]


@pytest.mark.parametrize(("spec", "marked", "reason", "help"), GRAPH_ERRORS)
def test_malformed_graph_spec_points_at_the_offending_text(spec, marked, reason, help):
    with pytest.raises(SpecError) as info:
        parse(spec)
    start, end = info.value.span
    assert spec[start:end] == marked
    assert reason in info.value.reason
    assert info.value.help is not None and help in info.value.help


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            "8x8x3:8C3-cat[8C3|8C3s2]",
            "cat[ at column 11 cannot concatenate 8x8x8 (branch 1) and 4x4x8 (branch 2)",
        ),
        (
            "8x8x3:8C3-add[8C3|4C3]",
            "add[ at column 11 cannot add 8x8x8 (branch 1) and 8x8x4 (branch 2)",
        ),
        (
            "8x8x3:8C3-R[8C3s2+BN|8C1]",
            "R[ at column 11 cannot add its shortcut (8x8x8) to its body (4x4x8)",
        ),
    ],
)
def test_branches_that_cannot_merge_say_which_shapes_where(spec, reason):
    with pytest.raises(SpecError) as info:
        kzoo.explain(spec)
    assert info.value.reason == reason
    assert spec[slice(*info.value.span)].startswith(reason.split(" at")[0])


# -- the plan -----------------------------------------------------------------------------------
def rows(spec: str, **options) -> dict:
    return {row.name: row for row in kzoo.explain(spec, **options).rows}


def test_identity_shortcut_when_shapes_match_and_projection_otherwise():
    result = rows("8x8x4:R[4C3+BN-4C3+BN]-R[8C3s2+BN-8C3+BN]")
    assert "conv2_block1_0_conv" not in result
    assert result["conv2_block1_add"].inputs == ("input_layer", "conv2_block1_2_bn")
    projection = result["conv3_block1_0_conv"]
    assert projection.output_shape == (4, 4, 8) and projection.params == 4 * 8  # no bias (BN)
    assert result["conv3_block1_0_bn"].params == 4 * 8
    assert result["conv3_block1_add"].inputs == ("conv3_block1_0_bn", "conv3_block1_2_bn")


def test_the_last_activation_moves_after_the_add():
    result = rows("8x8x4:R[4C3+BN-4C3+BN]")
    names = list(result)
    assert names[-3:] == ["conv2_block1_2_bn", "conv2_block1_add", "conv2_block1_out"]
    assert "conv2_block1_2_relu" not in result
    linear = rows("8x8x4:R[4C3+BN-4C3+BN+linear]")
    assert list(linear)[-1] == "conv2_block1_out" and linear["conv2_block1_out"].token == "R[...]"


def test_only_the_first_copy_of_a_repeated_residual_group_strides():
    steps = {s.name: s for s in plan("16x16x4:R[8C1s2+BN-8C3+BN-16C1+BN]x3").steps}
    assert steps["conv2_block1_1_conv"].params["strides"] == (2, 2)
    assert steps["conv2_block2_1_conv"].params["strides"] == (1, 1)
    assert steps["conv2_block3_out"].output_shape == (8, 8, 16)
    assert "conv2_block2_0_conv" not in steps


def test_pre_activation_group_adds_bn_relu_before_each_conv():
    result = rows("8x8x16:PR[4C1-P1-4C3v-16C1]-PR[4C1-P1-4C3s2v-16C1]")
    names = list(result)
    block1 = [n for n in names if n.startswith("conv2_block1")]
    assert block1 == [
        "conv2_block1_preact_bn", "conv2_block1_preact_relu", "conv2_block1_1_conv",
        "conv2_block1_1_bn", "conv2_block1_1_relu", "conv2_block1_2_pad", "conv2_block1_2_conv",
        "conv2_block1_2_bn", "conv2_block1_2_relu", "conv2_block1_3_conv", "conv2_block1_out",
    ]  # fmt: skip
    assert result["conv2_block1_3_conv"].params == 4 * 16 + 16  # the last conv keeps its bias
    assert result["conv2_block1_out"].inputs == ("input_layer", "conv2_block1_3_conv")
    # the same channels at stride 2: Keras's 1x1 max-pool shortcut of the raw input
    pool = [n for n in names if n.startswith("max_pooling2d")]
    assert result[pool[0]].inputs == ("conv2_block1_out",)
    assert result[pool[0]].output_shape == (4, 4, 16)


def test_explicit_shortcut_is_named_0_and_read_first():
    result = rows("8x8x4:R[8C3s2+BN-8C3+BN|8C1s2+BN]")
    assert result["conv2_block1_0_conv"].output_shape == (4, 4, 8)
    assert result["conv2_block1_add"].inputs == ("conv2_block1_0_bn", "conv2_block1_2_bn")


def test_concatenation_sums_channels_and_nests():
    result = rows("8x8x3:cat[4C1|2C1-cat[3C1,3|3C3,1]|AP3s1p-5C1]")
    assert result["mixed0_0"].output_shape == (8, 8, 6)
    assert result["mixed0"].output_shape == (8, 8, 4 + 6 + 5)
    assert result["mixed0"].inputs == ("conv2d", "mixed0_0", "conv2d_4")


def test_bias_and_batchnorm_options():
    assert rows("8x8x3:8C3+BN")["block1_conv1"].params == 27 * 8
    assert rows("8x8x3:8C3+BN{bias=true}")["block1_conv1"].params == 27 * 8 + 8
    assert rows("8x8x3:{bias=true}8C3+BN")["block1_conv1"].params == 27 * 8 + 8
    assert rows("8x8x3:8C3{bias=false}")["block1_conv1"].params == 27 * 8
    assert rows("8x8x3:{scale=false}8C3+BN")["block1_conv1_bn"].params == 3 * 8
    steps = plan("8x8x3:{eps=1e-5}8C3+BN-BN{eps=0.01}").steps
    assert [s.params.get("epsilon") for s in steps if s.token.role == "batchnorm"] == [1e-5, 0.01]


def test_padding_token_and_same_padded_pools():
    result = rows("7x7x2:P3-P0,1-MP3s2-MP3s1p")
    shapes = [r.output_shape for r in result.values()][1:]
    assert shapes == [(13, 13, 2), (14, 14, 2), (6, 6, 2), (6, 6, 2)]


# -- Keras agrees -------------------------------------------------------------------------------
GRAPHS = [
    "16x16x3:{bias=true,eps=1.001e-5}P3-8C7s2v+BN-P1-MP3s2-R[4C1+BN-4C3+BN-16C1+BN]x2-"
    "R[8C1s2+BN-8C3+BN-32C1+BN]-GAP-FC10",
    "16x16x3:{eps=1e-5}8C3+BN-R[P1-8C3v+BN-P1-8C3v+BN]-R[P1-16C3s2v+BN-P1-16C3v+BN]-GAP-FC5",
    "16x16x3:8C3+linear-[PR[4C1-P1-4C3v-8C1]-PR[4C1-P1-4C3s2v-8C1]]-PR[8C1-16C3-16C1]-BN-relu-GAP"
    "-FC4",
    "17x17x3:{scale=false}8C3s2v+BN-cat[4C1+BN|2C1+BN-cat[2C1,3+BN|2C3,1+BN]|AP3s1p-2C1+BN]x2-"
    "cat[8C3s2v+BN|MP3s2]-GAP-FC3",
    "12x12x2:add[4C3|4C5-tanh]-R[4C3|4C1]-F-FC6+D0.5-FC2+sigmoid",
]


def keras_rows(model: keras.Model) -> dict:
    return {
        layer.name: (tuple(layer.output.shape)[1:], layer.count_params()) for layer in model.layers
    }


@pytest.mark.parametrize("spec", GRAPHS)
def test_explain_agrees_with_keras_on_graphs(spec):
    model = kzoo.build(spec)
    ours = {r.name: (r.output_shape, r.params) for r in kzoo.explain(spec).rows}
    assert ours == keras_rows(model)
    assert kzoo.explain(spec).total_params == model.count_params()


def test_builder_wires_each_merge_to_its_planned_inputs():
    model = kzoo.build(GRAPHS[0])
    for step in plan(GRAPHS[0]).steps:
        layer = model.get_layer(step.name)
        tensors = layer._inbound_nodes[0].input_tensors
        assert tuple(t._keras_history[0].name for t in tensors) == step.inputs


def _bn(x, gamma, beta, mean, var, eps):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def test_residual_block_computes_what_numpy_computes():
    spec = "6x6x2:{eps=1e-5}R[3C3+BN-3C3+BN]"
    model = kzoo.build(spec)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    x = rng.normal(size=(2, 6, 6, 2))
    got = keras.ops.convert_to_numpy(model(x.astype("float32")))

    def conv_bn(h, prefix):
        (kernel,) = model.get_layer(f"{prefix}_conv").get_weights()
        h = conv_nhwc(h, kernel, np.zeros(kernel.shape[-1]), pad=kernel.shape[0] // 2)
        return _bn(h, *model.get_layer(f"{prefix}_bn").get_weights(), 1e-5)

    body = conv_bn(relu(conv_bn(x, "conv2_block1_1")), "conv2_block1_2")
    (shortcut_kernel,) = model.get_layer("conv2_block1_0_conv").get_weights()
    shortcut = _bn(
        conv_nhwc(x, shortcut_kernel, np.zeros(3), pad=0),
        *model.get_layer("conv2_block1_0_bn").get_weights(),
        1e-5,
    )
    np.testing.assert_allclose(got, relu(shortcut + body), rtol=1e-4, atol=1e-5)


def test_concatenation_computes_what_numpy_computes():
    model = kzoo.build("5x5x2:cat[3C1+linear|2C3+linear]")
    x = np.random.default_rng(1).normal(size=(1, 5, 5, 2))
    got = keras.ops.convert_to_numpy(model(x.astype("float32")))
    branches = [
        conv_nhwc(x, *model.get_layer(name).get_weights(), pad=pad)
        for name, pad in (("conv2d", 0), ("conv2d_1", 1))
    ]
    np.testing.assert_allclose(got, np.concatenate(branches, axis=-1), rtol=1e-4, atol=1e-5)


# -- to_string ----------------------------------------------------------------------------------
def graph_signature(model: keras.Model) -> list[tuple]:
    merges = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Add | keras.layers.Concatenate):
            tensors = layer._inbound_nodes[0].input_tensors
            merges[layer.name] = [t._keras_history[0].name for t in tensors]
    layers = [
        (layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params())
        for layer in model.layers
    ]
    return [layers, merges]


@pytest.mark.parametrize(
    "spec",
    [
        *GRAPHS[:4],
        "8x8x3:R[8C3s2+BN-8C3+BN|8C3s2+BN]-add[4C3|4C1-tanh]-GAP-FC2",
        "16x16x3:{eps=1e-5}P3-8C7s2v+BN{bias=true}-P0,1-MP3s2-R[4C1+BN-4C3+BN-16C1+BN]x3-GAP-FC4",
    ],
)
def test_to_string_rebuilds_the_same_graph(spec):
    model = kzoo.build(spec)
    text = kzoo.to_string(model)
    assert graph_signature(kzoo.build(text)) == graph_signature(model)
    assert kzoo.to_string(kzoo.build(text)) == text


def test_to_string_writes_a_resnet_stage_as_its_first_block_repeated():
    text = kzoo.to_string(kzoo.build(GRAPHS[0]))
    assert text == (
        "{bias=true,eps=1.001e-05}16x16x3:P3-8C7s2v+BN-P1-MP3s2-R[4C1+BN-4C3+BN-16C1+BN]x2-"
        "R[8C1s2+BN-8C3+BN-32C1+BN]-GAP-FC10"
    )


def test_to_string_writes_pre_activation_blocks_back():
    model = kzoo.build(GRAPHS[2])
    text = kzoo.to_string(model)
    assert text == GRAPHS[2]
    assert graph_signature(kzoo.build(text)) == graph_signature(model)


@pytest.mark.parametrize("name", ["resnet50", "resnet50_v2", "resnet18"])
def test_any_size_input_plans_the_same_shortcuts(name):
    fixed = kzoo.explain(name, include_top=False, pooling="avg")
    any_size = kzoo.explain(name, input_shape=(None, None, 3), include_top=False, pooling="avg")
    assert [r.name for r in any_size.rows] == [r.name for r in fixed.rows]
    assert any_size.total_params == fixed.total_params


def test_explaining_a_graph_never_imports_keras():
    import subprocess
    import sys

    code = (
        "import sys, kzoo\n"
        "kzoo.explain('resnet152'); kzoo.explain('inception_v3'); kzoo.explain('resnet50_v2')\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
