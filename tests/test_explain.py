"""kzoo.explain: pure-Python shapes and parameter counts that agree with Keras; user tokens."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from test_dsl_properties import specs

import kzoo
from kzoo.dsl import tokens
from kzoo.dsl.tokens import ShapeProblem
from kzoo.errors import SpecError


def test_lenet_rows():
    result = kzoo.explain("28x28x1:20C5-MP2-50C5-MP2-FC256-FC10")
    assert [(r.name, r.token, r.output_shape, r.params) for r in result.rows] == [
        ("input_layer", "(input)", (28, 28, 1), 0),
        ("block1_conv1", "20C5", (28, 28, 20), 5 * 5 * 1 * 20 + 20),
        ("block1_pool", "MP2", (14, 14, 20), 0),
        ("block2_conv1", "50C5", (14, 14, 50), 5 * 5 * 20 * 50 + 50),
        ("block2_pool", "MP2", (7, 7, 50), 0),
        ("flatten", "(flatten)", (7 * 7 * 50,), 0),
        ("fc1", "FC256", (256,), 7 * 7 * 50 * 256 + 256),
        ("predictions", "FC10", (10,), 256 * 10 + 10),
    ]
    assert result.total_params == sum(r.params for r in result.rows) == 655_596


def test_table_lists_every_layer_and_the_total():
    text = str(kzoo.explain("lenet", dialect="ciresan"))
    assert "block2_conv1" in text and "(8, 8, 50)" in text
    assert text.splitlines()[-1] == "Total params: 233,196"


def test_named_architectures_have_the_published_counts():
    assert kzoo.explain("vgg19").total_params == 143_667_240
    assert kzoo.explain("vgg16").total_params == 138_357_544
    # torchvision's counts; with BN Keras also counts the moving mean and variance, and the
    # conv before a BN has no bias: one more number per BN channel
    bn_channels = {11: 2752, 13: 2944, 16: 4224, 19: 5504}
    for name, torchvision in [("vgg11", 132_863_336), ("vgg13", 133_047_848)]:
        assert kzoo.explain(name).total_params == torchvision
    for depth, torchvision in [(11, 132_868_840), (13, 133_053_736), (16, 138_365_992),
                               (19, 143_678_248)]:  # fmt: skip
        assert kzoo.explain(f"vgg{depth}_bn").total_params == torchvision + bn_channels[depth]
    assert kzoo.explain("mlp256").total_params == 784 * 256 + 256 + 256 * 256 + 256 + 2570


def test_batchnorm_counts_four_numbers_per_channel():
    plain = kzoo.explain("8x8x3:16C3-GAP-FC2").total_params
    with_bn = kzoo.explain("8x8x3:16C3+BN-GAP-FC2").total_params
    assert with_bn - plain == 4 * 16 - 16  # BN adds 4 per channel; the conv drops its bias


def test_options_change_the_rows_like_build_does():
    result = kzoo.explain("8x8x1:4C3-FC6-FC3", bn=True, dropout=0.5)
    assert [r.name for r in result.rows][1:5] == [
        "block1_conv1",
        "block1_conv1_bn",
        "block1_conv1_relu",
        "flatten",
    ]
    top = kzoo.explain("vgg19", input_shape=(64, 64, 3), include_top=False, pooling="max")
    assert top.rows[-1].name == "max_pool" and top.rows[-1].output_shape == (512,)


def test_unknown_spatial_size_is_carried_as_none():
    result = kzoo.explain("8C3s2-MP2-GAP-FC4", input_shape=(None, None, 3))
    assert [r.output_shape for r in result.rows[1:3]] == [(None, None, 8), (None, None, 8)]
    assert result.rows[-1].output_shape == (4,)


def test_explain_never_imports_keras():
    code = (
        "import sys, kzoo\n"
        "kzoo.explain('vgg19'); kzoo.explain('8x8x1:4C3+BN-FC2', bn=True)\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def keras_rows(model) -> list[tuple]:
    return [
        (layer.name, tuple(layer.output.shape)[1:], layer.count_params()) for layer in model.layers
    ]


@given(specs(heads=False))
@settings(max_examples=40, deadline=None)
def test_explain_agrees_with_keras_on_generated_specs(spec):
    text = spec.unparse()
    model = kzoo.build(text)
    ours = [(r.name, r.output_shape, r.params) for r in kzoo.explain(text).rows]
    assert ours == keras_rows(model)
    assert kzoo.explain(text).total_params == model.count_params()


@pytest.mark.slow
@given(specs())
@settings(max_examples=400, deadline=None)
def test_explain_agrees_with_keras_on_many_generated_specs(spec):
    text = spec.unparse()
    model = kzoo.build(text, bn=True, dropout=0.5, activation="tanh")
    result = kzoo.explain(text, bn=True, dropout=0.5, activation="tanh")
    assert [(r.name, r.output_shape, r.params) for r in result.rows] == keras_rows(model)


# -- user tokens ---------------------------------------------------------------------------------
def _gn_shape(input_shape, p):
    if input_shape[-1] % p["groups"]:
        raise ShapeProblem(f"cannot split {input_shape[-1]} channels into {p['groups']} groups")
    return input_shape, 2 * input_shape[-1]


def _register_gn(**extra):
    return kzoo.register_token(
        "GN",
        build=lambda p: None,
        shape=_gn_shape,
        args=("groups",),
        flags={"c": ("center", bool)},
        kwargs=("eps",),
        modifier=False,
        **extra,
    )


def test_registered_token_parses_prints_and_explains():
    with kzoo.scoped_tokens():
        _register_gn()
        parsed = kzoo.parse("8C3-GN4c{eps=0.1}-FC10")
        assert parsed.unparse() == "8C3-GN4c{eps=0.1}-FC10"
        result = kzoo.explain(parsed, input_shape=(6, 6, 1))
        assert [r.name for r in result.rows][2] == "gn1"
        assert result.rows[2].params == 16


def test_registered_token_gets_suggestions_and_flag_errors():
    with kzoo.scoped_tokens():
        _register_gn()
        with pytest.raises(SpecError) as info:
            kzoo.parse("8C3-NG4-FC10")
        assert info.value.help == "did you mean 'GN4'?"
        with pytest.raises(SpecError, match="unknown flag 'q' for GN") as info:
            kzoo.parse("8C3-GN4q-FC10")
        assert "'c' (center)" in info.value.help
        with pytest.raises(SpecError, match="GN needs a number after it"):
            kzoo.parse("8C3-GN-FC10")


def test_shape_problem_of_a_registered_token_names_its_column():
    with kzoo.scoped_tokens():
        _register_gn()
        with pytest.raises(SpecError) as info:
            kzoo.explain("6x6x1:6C3-GN4-FC10")
        assert info.value.reason == "GN4 at column 11 cannot split 6 channels into 4 groups"


def test_scoped_tokens_forget_registrations():
    with kzoo.scoped_tokens():
        _register_gn()
        assert tokens.get_token("GN") is not None
    assert tokens.get_token("GN") is None
    with pytest.raises(SpecError, match="unknown layer token 'GN4'"):
        kzoo.parse("GN4")


def test_collisions_raise():
    with kzoo.scoped_tokens():
        _register_gn()
        with pytest.raises(ValueError, match="already registered"):
            _register_gn()
    with pytest.raises(ValueError, match="already registered"):
        kzoo.register_token("MP", build=lambda p: None, shape=lambda s, p: (s, 0))


@pytest.mark.parametrize(
    ("keyword", "flags"),
    [("G N", None), ("9G", None), ("GN", {"x": ("times", int)}), ("GN", {"S": ("s", int)})],
)
def test_malformed_token_declarations_raise(keyword, flags):
    with kzoo.scoped_tokens(), pytest.raises(ValueError, match="Received"):
        kzoo.register_token(keyword, build=lambda p: None, shape=lambda s, p: (s, 0), flags=flags)


def test_built_in_tokens_cannot_be_removed():
    with pytest.raises(ValueError, match="built in"):
        tokens.unregister_token("FC")


def test_user_token_as_modifier():
    with kzoo.scoped_tokens():
        kzoo.register_token(
            "L", build=lambda p: None, shape=lambda s, p: (s, 0), modifier=True, doc="identity"
        )
        result = kzoo.explain("4x4x1:2C3+L-FC2")
        assert [r.name for r in result.rows][1:3] == ["block1_conv1", "l1"]


def test_ciresan_literature_string_in_both_dialects():
    spec = "1x29x29-20C4-MP2-40C5-MP3-150N-10N"
    literature = kzoo.explain(spec, dialect="ciresan")
    assert [r.output_shape for r in literature.rows][1:5] == [
        (26, 26, 20),
        (13, 13, 20),
        (9, 9, 40),
        (3, 3, 40),
    ]
    assert literature.total_params == 340 + 20_040 + (360 * 150 + 150) + 1_510
    assert kzoo.explain(spec).total_params == 340 + 20_040 + (640 * 150 + 150) + 1_510
