"""Every malformed spec raises a SpecError that points at the right text and suggests a fix."""

from __future__ import annotations

import pickle

import pytest

import kzoo
from kzoo.cli import hint_line
from kzoo.dsl import parse
from kzoo.errors import SpecError

# spec, the text the caret must underline, words of the reason, words of the help
MALFORMED = [
    ("64C3-PM2-FC10", "PM2", "unknown layer token 'PM2'", "did you mean 'MP2'?"),
    ("64C3-MP2-CF10", "CF10", "unknown layer token", "did you mean 'FC10'?"),
    ("64c3-FC10", "64c3", "unknown layer token", "did you mean '64C3'?"),
    ("fc256-FC10", "fc256", "unknown layer token", "did you mean 'FC256'?"),
    ("20C5P-MP2-FC10", "P", "unexpected 'P'", "'v' for valid padding"),
    ("20C5z-FC10", "z", "unknown flag 'z'", "'same' by default"),
    ("FC256-D50-FC10", "D50", "dropout rate 50", "did you mean 'D0.5'?"),
    ("FC256+D50-FC10", "D50", "dropout rate 50", "did you mean 'D0.5'?"),
    ("relux2-FC10", "relux2", "unknown layer token", "'[relu]x2'"),
    ("8C3+tanhx2-FC10", "tanhx2", "unknown modifier", "'[8C3+tanh]x2'"),
    ("[64C3-MP2x2-FC10", "[", "unclosed '['", "add ']'"),
    ("FC8-(64C3-MP2x2", "(", "unclosed '('", "add ')'"),
    ("[64C3-MP2)x2", ")", "closed by ')'", "close it with ']'"),
    ("64C3-MP2]", "]", "unmatched ']'", "opening bracket"),
    ("FC10-", "-", "expected a layer after '-'", "remove the '-'"),
    ("64C3--FC10", "-", "unexpected '-'", "'64C3'"),
    ("C3-FC10", "C3", "C needs a number before it", "'64C3'"),
    ("10FC", "10", "FC takes no leading number", "did you mean 'FC10'?"),
    ("150", "150", "has no layer keyword", "'FC150'"),
    ("64C3x0", "x0", "at least 1", "remove the 'x0'"),
    ("64C3x5000", "x5000", "too large", "at most 1000"),
    ("[[8C3]x100]x100", "[[8C3]x100]x100", "expands to 10000 layers", "at most 1000"),
    ("64C3s2d2", "64C3s2d2", "both stride and dilation", "keep one"),
    ("64C3s-FC10", "s", "flag 's' of C needs a number", "'s2'"),
    ("MP2v", "v", "unknown flag 'v' for MP", "'s' (strides)"),
    ("64C3{init=gabor", "{", "unclosed '{'", "add '}'"),
    ("64C3{int=gabor}", "int", "unknown option 'int'", "did you mean 'init'?"),
    ("FC10{init}", "}", "expected '=' after 'init'", "{init=...}"),
    ("64C3+MP2", "MP2", "unknown modifier", "join it with '-'"),
    ("64C3+relu+tanh", "tanh", "'+tanh' repeats '+relu'", "once"),
    ("[64C3]+BN", "+", "cannot attach to a group", "[64C3+BN-MP2]x2"),
    ("3*(64C3)", "3*", "'[...]x3'", "'[...]x3'"),
    ("(64C3)_3", "_", "not '_3'", "'[...]x3'"),
    ("1x28x28:FC10", "1x28x28:", "looks channels-first", "'28x28x1:'"),
    ("28x28x1-FC10", "28x28x1-", "means 28 channels", "'1x28x28-'"),
    ("0x28x1:FC10", "0x28x1", "must be positive", "'28x28x1:'"),
    ("FC10-28x28x1:FC10", "28x2", "belong at the start", "'28x28x1:"),
    ("64C3.5", "64C3.5", "whole number", "'64C1,7'"),
    ("GAP2", "GAP2", "GAP takes no numbers", "write 'GAP'"),
    ("64C3-F10", "F10", "F takes no numbers", "write 'F', or 'FC10'"),
    ("vg19", "vg19", "unknown layer token", "named architecture 'vgg19'"),
    ("lenet-FC3", "lenet", "unknown layer token", "stands alone; to change it, write out its"),
    ("vgg19x", "vgg19", "unknown layer token", "'64C3x2-MP2-128C3x2"),
    ("64C3-MP2 FC10", "F", "unexpected 'F'", "join layers with '-'"),
    ("dense10", "dense10", "unknown layer token", "'FC256'"),
    ("input-FC10", "input", "unknown layer token", "header"),
    ("[]x2", "[]", "empty group", "[64C3-MP2]x2"),
    ("x2-FC10", "x2", "follows the layer it repeats", "'64C3x2'"),
    ("+BN", "+", "attaches a modifier", "'64C3+BN'"),
    ("64C1,", ",", "expected a number after ','", "'64C1,7'"),
    ("", "", "empty architecture string", "e.g."),
]


@pytest.mark.parametrize(("spec", "marked", "reason", "help"), MALFORMED)
def test_malformed_spec_points_at_the_offending_text(spec, marked, reason, help):
    with pytest.raises(SpecError) as info:
        parse(spec)
    error = info.value
    start, end = error.span
    assert spec[start:end] == marked
    assert reason in error.reason
    assert error.help is not None and help in error.help
    assert error.spec == spec


def test_malformed_list_is_long_enough():
    assert len(MALFORMED) >= 20


def test_message_draws_the_caret_under_the_token():
    with pytest.raises(SpecError) as info:
        parse("64C3-PM2-FC10")
    assert str(info.value).splitlines() == [
        "unknown layer token 'PM2'",
        "  | 64C3-PM2-FC10",
        "  |      ^^^",
        "  = help: did you mean 'MP2'?",
    ]


def test_spec_error_is_a_value_error_and_survives_pickling():
    with pytest.raises(ValueError) as info:
        parse("64C3-PM2")
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.reason, again.span, again.help) == (
        info.value.reason,
        info.value.span,
        info.value.help,
    )


def test_pool_that_shrinks_the_image_to_nothing_names_its_column():
    spec = "8x8x1:8C3-MP2-MP2-MP2-MP3-FC10"
    with pytest.raises(SpecError) as info:
        kzoo.explain(spec)
    assert info.value.reason == "MP3 at column 23 reduces 1x1 to 0x0"
    assert spec[slice(*info.value.span)] == "MP3"


def test_valid_convolution_too_large_for_its_input():
    spec = "4x4x1:8C5v-FC10"
    with pytest.raises(SpecError) as info:
        kzoo.explain(spec)
    assert info.value.reason == "8C5v at column 7 reduces 4x4 to 0x0"
    assert "same" in info.value.help


def test_talk_vgg19_with_valid_padding_fails_in_the_last_block():
    with pytest.raises(SpecError) as info:
        kzoo.explain("vgg19", padding="valid")
    # the design notes' figure: the last conv of block 5 would reach -1 px
    assert info.value.reason == "512C3 at column 48 reduces 1x1 to -1x-1"


def test_softmax_over_one_unit_suggests_sigmoid_or_linear():
    with pytest.raises(SpecError) as info:
        kzoo.explain("FC8-FC1", input_shape=(4,))
    assert "softmax over one unit" in info.value.reason
    assert "FC1+sigmoid" in info.value.help and "FC1+linear" in info.value.help
    assert info.value.spec[slice(*info.value.span)] == "FC1"


def test_one_unit_head_with_sigmoid_is_fine():
    assert kzoo.explain("FC8-FC1+sigmoid", input_shape=(4,)).total_params == 4 * 8 + 8 + 9


def test_header_and_different_input_shape_argument_conflict():
    with pytest.raises(SpecError) as info:
        kzoo.explain("28x28x1:FC10", input_shape=(32, 32, 3))
    assert info.value.span == (0, 8)
    assert "drop the header or the input_shape" in info.value.help


def test_header_and_equal_input_shape_argument_agree():
    assert kzoo.explain("28x28x1:FC10", input_shape=(28, 28, 1)).total_params == 7850


def test_missing_input_shape_asks_for_one():
    with pytest.raises(SpecError, match="no input shape") as info:
        kzoo.explain("FC64-FC10")
    assert "28x28x1:" in info.value.help
    (hint,) = info.value.hints
    assert "input_shape=(28, 28, 1)" in hint.text and "input_shape=(28, 28, 1)" in str(info.value)
    assert hint_line(hint) == "add --input-shape 28x28x1"


def test_conv_after_dense_needs_an_image():
    with pytest.raises(SpecError, match="needs an image input") as info:
        kzoo.explain("28x28x1:FC64-8C3-FC10")
    assert info.value.spec[slice(*info.value.span)] == "8C3"


def test_output_must_be_the_last_dense_layer():
    with pytest.raises(SpecError, match="'output' must be the last dense layer"):
        kzoo.explain("784:output10-FC10")


def test_head_option_on_a_hidden_layer():
    with pytest.raises(SpecError, match="only applies to the last dense layer"):
        kzoo.explain("784:FC10{head=sigmoid}-FC10")


def test_flatten_of_unknown_size_before_dense():
    with pytest.raises(SpecError, match="needs a known input size"):
        kzoo.explain("8C3-FC10", input_shape=(None, None, 3))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("padding", "full"),
        ("dialect", "graham"),
        ("pooling", "mean"),
        ("activation", "relu6x"),
        ("head", "soft"),
        ("dropout", 1.5),
    ],
)
def test_bad_build_option_says_what_was_received(option, value):
    with pytest.raises(ValueError, match=f"Received: {option}="):
        kzoo.explain("FC10", input_shape=(4,), **{option: value})


@pytest.mark.parametrize("shape", [(0, 28, 1), (28, 28, 1, 1), "28x28", (2.5,)])
def test_bad_input_shape_argument(shape):
    with pytest.raises(ValueError, match="Received: input_shape="):
        kzoo.explain("FC10", input_shape=shape)


def test_non_string_spec_is_a_type_error():
    with pytest.raises(TypeError, match="is a string"):
        parse(42)  # type: ignore[arg-type]
