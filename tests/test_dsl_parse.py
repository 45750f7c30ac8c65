"""Parsing the architecture notation into an AST with spans, and printing it back."""

from __future__ import annotations

import pytest

import kzoo
from kzoo.dsl import Group, Layer, Modifier, parse

LENET = "20C5-MP2-50C5-MP2-FC256-FC10"
CONVNET = "64C3-64C3-MP2-128C3-128C3-MP2-FC256-FC10"
VGG19 = "64C3x2-MP2-128C3x2-MP2-256C3x4-MP2-512C3x4-MP2-512C3x4-MP2-FC4096x2-FC1000"
VGG19_LONG = "-".join(
    ["64C3"] * 2
    + ["MP2"]
    + ["128C3"] * 2
    + ["MP2"]
    + ["256C3"] * 4
    + ["MP2"]
    + ["512C3"] * 4
    + ["MP2"]
    + ["512C3"] * 4
    + ["MP2", "FC4096", "FC4096", "FC1000"]
)


@pytest.mark.parametrize("spec", [LENET, CONVNET, "FC64-FC10", "FC256-FC256-FC10", VGG19])
def test_talk_strings_print_back_unchanged(spec):
    assert parse(spec).unparse() == spec


def test_lenet_parses_to_convs_pools_and_dense_layers():
    layers = parse(LENET).layers()
    assert [(x.keyword, x.count, x.args) for x in layers] == [
        ("C", 20, (5,)),
        ("MP", None, (2,)),
        ("C", 50, (5,)),
        ("MP", None, (2,)),
        ("FC", None, (256,)),
        ("FC", None, (10,)),
    ]


def test_vgg19_repetition_expands_like_the_written_out_form():
    short, long = parse(VGG19), parse(VGG19_LONG)
    assert short.layers() == long.layers()
    assert len(short.layers()) == 24
    assert len(short.items) == 12  # repetition stays rolled up in the AST


def test_every_layer_keeps_the_span_of_its_source_text():
    spec = "28x28x1:64C3+BN-MP2-FC10"
    parsed = parse(spec)
    assert [spec[slice(*x.span)] for x in parsed.layers()] == ["64C3+BN", "MP2", "FC10"]
    assert parsed.header_span == (0, 8)
    modifier = parsed.layers()[0].modifiers[0]
    assert spec[slice(*modifier.span)] == "BN"


def test_repeated_layers_share_the_span_of_the_repeated_item():
    spec = "FC8-64C3x3"
    parsed = parse(spec)
    assert {spec[slice(*x.span)] for x in parsed.layers()[1:]} == {"64C3x3"}


def test_bracket_group_repeats_its_body():
    parsed = parse("[64C3-MP2]x3-FC10")
    assert isinstance(parsed.items[0], Group)
    assert parsed.items[0].times == 3
    assert [x.keyword for x in parsed.layers()] == ["C", "MP"] * 3 + ["FC"]


def test_nested_groups_multiply():
    assert len(parse("[[8C3]x2-MP2]x3").layers()) == 9


def test_parentheses_group_like_brackets():
    assert parse("(8C3-MP2)x2").layers() == parse("[8C3-MP2]x2").layers()


def test_keras_header_is_height_width_channels():
    assert parse("28x28x1:FC10").input_shape == (28, 28, 1)


def test_literature_header_is_channels_height_width():
    assert parse("1x29x29-20C4-MP2-150N-10N").input_shape == (29, 29, 1)


def test_flat_header():
    assert parse("784:FC64-FC10").input_shape == (784,)


def test_n_is_the_literature_alias_of_fc():
    parsed = parse("150N-10N")
    assert parsed.layers() == parse("FC150-FC10").layers()
    assert parsed.unparse() == "FC150-FC10"


def test_conv_flags_stride_dilation_and_valid_padding():
    layer = parse("64C3s2").layers()[0]
    assert layer.flags == (("s", 2),)
    layer = parse("64C3d2v").layers()[0]
    assert layer.flags == (("d", 2), ("v", True))


def test_flags_are_printed_in_declared_order():
    assert parse("64C3vd2").unparse() == "64C3d2v"


def test_rectangular_kernel():
    assert parse("64C1,7").layers()[0].args == (1, 7)


def test_pool_with_stride():
    assert parse("MP3s2").layers()[0] == Layer("MP", None, (3,), (("s", 2),))


def test_modifiers_attach_in_written_order():
    layer = parse("FC256+BN+D0.5+tanh").layers()[0]
    assert layer.modifiers == (Modifier("BN"), Modifier("D", (0.5,)), Modifier("tanh"))


def test_standalone_tokens():
    keywords = [x.keyword for x in parse("8C3-BN-relu-D0.25-GAP-F-FC10").layers()]
    assert keywords == ["C", "BN", "relu", "D", "GAP", "F", "FC"]


def test_global_pooling_and_average_pooling():
    assert [x.keyword for x in parse("8C3-AP2-GMP").layers()] == ["C", "AP", "GMP"]


def test_options_in_braces():
    layer = parse("64C7{init=gabor}").layers()[0]
    assert layer.kwargs == (("init", "gabor"),)
    assert parse("FC1{head=sigmoid}").layers()[0].kwargs == (("head", "sigmoid"),)


def test_output_keyword():
    assert parse("FC64-output10").layers()[-1].keyword == "output"


def test_upper_case_keyword_then_repeat_and_modifier_then_repeat():
    assert len(parse("FC4096x2").layers()) == 2
    assert len(parse("64C3+BNx2").layers()) == 2
    assert len(parse("[relu]x2").layers()) == 2


def test_spaces_around_separators_are_ignored():
    assert parse(" 28x28x1: 64C3 - MP2 - FC10 ").layers() == parse("28x28x1:64C3-MP2-FC10").layers()


def test_activation_repeat_is_printed_with_brackets():
    text = parse("8C3-[relu]x2").unparse()
    assert text == "8C3-[relu]x2"
    layer = Layer("relu", times=3)
    from kzoo.dsl.ast import unparse_item

    assert unparse_item(layer) == "[relu]x3"
    assert parse(unparse_item(layer)).layers() == [Layer("relu")] * 3


def test_header_is_printed_in_keras_order():
    assert parse("1x28x28-20C5-FC10").unparse() == "28x28x1:20C5-FC10"


def test_ast_equality_ignores_spans():
    assert parse("FC10").items == parse("  FC10").items


def test_public_parse_is_the_dsl_parse():
    assert kzoo.parse is parse
