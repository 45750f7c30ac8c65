"""Property tests of graph specs: generated residual and branching ASTs print, reparse, plan
as Keras builds them; random strings over the graph alphabet raise only SpecError."""

from __future__ import annotations

import keras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kzoo
from kzoo.dsl import Block, Layer, Modifier, Spec, parse
from kzoo.errors import SpecError

GRAPH_ALPHABET = "0123456789CFMPANDGBRSxsdvp+-[]|{}=,.:_ catdlrueps"


@st.composite
def convs(draw, filters: int | None = None, stride: int = 1, size: int = 8):
    """One to three convolutions; the last has ``filters`` channels when given."""
    n = draw(st.integers(1, 3))
    out: list[Layer] = []
    for i in range(n):
        k = draw(st.sampled_from([1, 3] if size >= 3 else [1]))
        count = filters if (filters is not None and i == n - 1) else draw(st.integers(1, 4))
        flags = (("s", stride),) if (i == 0 and stride > 1) else ()
        mods = (Modifier("BN"),) if draw(st.booleans()) else ()
        out.append(Layer("C", count, (k,), flags, mods))
    return out


@st.composite
def graph_specs(draw) -> Spec:
    size = draw(st.integers(4, 9))
    options = tuple(
        sorted(
            draw(
                st.dictionaries(
                    st.sampled_from(["bias", "eps", "scale"]),
                    st.just(True),
                    max_size=2,
                )
            ).items()
        )
    )
    options = tuple((k, 1e-5 if k == "eps" else draw(st.booleans())) for k, _ in options)
    items: list = [Layer("C", draw(st.integers(2, 4)), (3,), (), (Modifier("BN"),))]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["R", "R", "PR", "cat", "add"]))
        if kind in ("R", "PR"):
            stride = draw(st.sampled_from([1, 2])) if size >= 2 else 1
            body = draw(convs(stride=stride, size=size))
            branches = (tuple(body),)
            if kind == "R" and draw(st.integers(0, 3)) == 0:
                shortcut = Layer("C", body[-1].count, (1,), (("s", stride),) if stride > 1 else ())
                branches += ((shortcut,),)
            items.append(Block(kind, branches, times=draw(st.sampled_from([1, 1, 2]))))
            size = -(-size // stride)
        elif kind == "cat":
            branches = tuple(tuple(draw(convs(size=size))) for _ in range(draw(st.integers(2, 3))))
            if draw(st.booleans()):
                branches += ((Layer("AP", None, (3,), (("s", 1), ("p", True))),),)
            items.append(Block("cat", branches))
        else:
            filters = draw(st.integers(1, 4))
            branches = tuple(tuple(draw(convs(filters=filters, size=size))) for _ in range(2))
            items.append(Block("add", branches))
    items += [Layer("GAP"), Layer("FC", None, (draw(st.integers(2, 5)),))]
    return Spec(tuple(items), (size * 1, size * 1, draw(st.integers(1, 3))), options=options)


@given(graph_specs())
@settings(max_examples=150, deadline=None)
def test_generated_graph_prints_and_reparses_to_the_same_ast(spec):
    text = spec.unparse()
    again = parse(text)
    assert again == spec
    assert again.unparse() == text


def keras_rows(model: keras.Model) -> dict:
    return {
        layer.name: (tuple(layer.output.shape)[1:], layer.count_params()) for layer in model.layers
    }


def _agrees(spec: Spec) -> None:
    text = spec.unparse()
    model = kzoo.build(text)
    result = kzoo.explain(text)
    assert {r.name: (r.output_shape, r.params) for r in result.rows} == keras_rows(model)
    assert result.total_params == model.count_params()


@given(graph_specs())
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_explain_agrees_with_keras_on_generated_graphs(spec):
    _agrees(spec)


@pytest.mark.slow
@given(graph_specs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_explain_agrees_with_keras_on_many_generated_graphs(spec):
    _agrees(spec)


@given(st.text(alphabet=GRAPH_ALPHABET, max_size=40))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_graph_strings_raise_only_spec_errors_with_in_range_spans(text):
    try:
        parsed = parse(text)
    except SpecError as error:
        start, end = error.span
        assert 0 <= start <= end <= len(text)
        return
    try:
        kzoo.explain(parsed, input_shape=None if parsed.input_shape else (8, 8, 3))
    except SpecError as error:
        assert 0 <= error.span[0] <= error.span[1] <= len(text)


@given(st.text(alphabet=GRAPH_ALPHABET, min_size=1, max_size=16).map(lambda s: "R[" + s))
@settings(max_examples=300, deadline=None)
def test_random_group_bodies_raise_only_spec_errors(text):
    try:
        kzoo.explain(text, input_shape=(8, 8, 3))
    except SpecError as error:
        assert 0 <= error.span[0] <= error.span[1] <= len(text)
