"""Property tests of the notation: generated ASTs print and reparse; no input crashes the parser.

The strategies here (``specs``) are also used by test_builder.py and test_explain.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kzoo
from kzoo.dsl import Group, Layer, Modifier, Spec, parse
from kzoo.errors import SpecError

ALPHABET = "0123456789CFMPNDGABSxsdv+-[](){}=,.:_* relutanhsigmoidoutpzKk"
ACTS = ("relu", "tanh", "linear", "sigmoid")


def _conv_out(n: int, k: int, s: int, d: int, valid: bool) -> int:
    return (n - d * (k - 1) - 1) // s + 1 if valid else -(-n // s)


@st.composite
def conv_part(draw, size: int):
    """Convolution-side layers that keep the image at least 1 px, and the final size."""
    items: list[Layer | Group] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "bn", "act", "drop", "group"]))
        if kind in ("conv", "group"):
            k = draw(st.integers(1, 3))
            kw = draw(st.sampled_from([k, k, 1]))
            s = draw(st.sampled_from([1, 1, 2]))
            d = 1 if s > 1 or max(k, kw) == 1 else draw(st.sampled_from([1, 2]))
            valid = draw(st.booleans())
            times = 2 if kind == "group" else draw(st.sampled_from([1, 1, 2]))
            out = size
            for _ in range(times):
                out = min(_conv_out(out, k, s, d, valid), _conv_out(out, kw, s, d, valid))
            if out < 1:
                continue
            size = out
            flags = tuple(
                f for f in (("s", s), ("d", d), ("v", True)) if f[1] not in (1, False) and
                (f[0] != "v" or valid)
            )  # fmt: skip
            mods = draw(
                st.lists(
                    st.sampled_from([Modifier("BN"), Modifier("D", (0.25,)), Modifier("tanh")]),
                    unique_by=lambda m: m.keyword,
                    max_size=2,
                )
            )
            kwargs = (("init", "gabor"),) if draw(st.integers(0, 9)) == 0 else ()
            layer = Layer("C", draw(st.integers(1, 4)), (k,) if kw == k else (k, kw), flags,
                          tuple(mods), kwargs)  # fmt: skip
            if kind == "group":
                items.append(Group((layer, Layer("relu")), times=2))
            else:
                items.append(Layer("C", layer.count, layer.args, flags, layer.modifiers,
                                   layer.kwargs, times))  # fmt: skip
        elif kind == "pool":
            p = draw(st.integers(1, 3))
            s = draw(st.sampled_from([p, p, 1]))
            out = (size - p) // s + 1
            if out < 1:
                continue
            size = out
            flags = (("s", s),) if s != p else ()
            items.append(Layer(draw(st.sampled_from(["MP", "AP"])), None, (p,), flags))
        elif kind == "bn":
            items.append(Layer("BN"))
        elif kind == "act":
            items.append(Layer(draw(st.sampled_from(ACTS))))
        else:
            items.append(Layer("D", None, (0.5,)))
    return items, size


@st.composite
def specs(draw, heads: bool = True) -> Spec:
    """Small valid architectures, generated as ASTs (input header included)."""
    size = draw(st.integers(4, 9))
    channels = draw(st.integers(1, 3))
    convs, _ = draw(conv_part(size))
    items = list(convs)
    transition = draw(st.sampled_from(["implicit", "F", "GAP", "GMP", "end"]))
    if transition == "end":
        return Spec(tuple(items or [Layer("BN")]), (size, size, channels))
    if transition != "implicit":
        items.append(Layer(transition))
    for _ in range(draw(st.integers(0, 2))):
        mods = draw(
            st.lists(
                st.sampled_from([Modifier("BN"), Modifier("D", (0.5,)), Modifier("linear")]),
                unique_by=lambda m: m.keyword,
                max_size=2,
            )
        )
        items.append(Layer("FC", None, (draw(st.integers(2, 6)),), (), tuple(mods),
                           times=draw(st.sampled_from([1, 1, 2]))))  # fmt: skip
    if heads or transition == "implicit":
        units = draw(st.integers(1, 5))
        act = draw(st.sampled_from([None, "sigmoid", "linear"] if units > 1 else ["sigmoid"]))
        items.append(Layer("FC", None, (units,), (), (Modifier(act),) if act else ()))
    return Spec(tuple(items), (size, size, channels))


@given(specs())
@settings(max_examples=300, deadline=None)
def test_generated_ast_prints_and_reparses_to_the_same_layers(spec):
    text = spec.unparse()
    again = parse(text)
    assert again.layers() == spec.layers()
    assert again.input_shape == spec.input_shape
    assert again.unparse() == text


@given(specs())
@settings(max_examples=100, deadline=None)
def test_spans_of_reparsed_layers_cover_their_own_text(spec):
    text = spec.unparse()
    for layer in parse(text).layers():
        start, end = layer.span
        assert 0 <= start < end <= len(text)
        assert text[start:end].startswith(f"{layer.count or ''}{layer.keyword}")


@given(st.text(alphabet=ALPHABET, max_size=40))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_strings_raise_only_spec_errors_with_in_range_spans(text):
    try:
        parsed = parse(text)
    except SpecError as error:
        start, end = error.span
        assert 0 <= start <= end <= len(text)
        assert error.reason and error.spec == text
        return
    assert parsed.layers()  # a successful parse has at least one layer
    try:
        kzoo.explain(parsed, input_shape=None if parsed.input_shape else (8, 8, 3))
    except SpecError as error:
        assert 0 <= error.span[0] <= error.span[1] <= len(text)


@given(st.text(alphabet=ALPHABET, min_size=1, max_size=12).map(lambda s: "28x28x1:" + s))
@settings(max_examples=300, deadline=None)
def test_random_bodies_after_a_header_never_crash_the_planner(text):
    try:
        kzoo.explain(text)
    except SpecError as error:
        assert 0 <= error.span[0] <= error.span[1] <= len(text)


TYPO_TARGETS = ["MP2", "FC256", "AP2", "GAP", "GMP", "BN", "relu", "tanh", "sigmoid"]


@given(st.sampled_from(TYPO_TARGETS), st.data())
@settings(max_examples=150, deadline=None)
def test_swapped_letters_get_the_intended_token_suggested(token, data):
    word = token.rstrip("0123456789")
    positions = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
    i = data.draw(st.sampled_from(positions))
    typo = word[:i] + word[i + 1] + word[i] + word[i + 2 :] + token[len(word) :]
    spec = f"8C3-{typo}-FC10"
    with pytest.raises(SpecError) as info:
        parse(spec)
    assert info.value.help == f"did you mean '{token}'?"
    assert spec[slice(*info.value.span)] == typo


@given(st.sampled_from(["MP2", "FC256", "AP2", "GAP", "BN"]))
def test_lower_case_keywords_get_the_upper_case_spelling(token):
    with pytest.raises(SpecError) as info:
        parse(f"8C3-{token.lower()}-FC10")
    assert info.value.help == f"keywords are case-sensitive: did you mean '{token}'?"
