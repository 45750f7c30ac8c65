"""All-or-nothing assignment: the exact report of what does not fit, and what counts as a fit."""

from __future__ import annotations

import numpy as np
import pytest

from kzoo.converters.assign import assign
from kzoo.errors import ConversionError


def _model():
    import keras

    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="hidden"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(2, name="out"),
        ]
    )


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


@pytest.mark.backend
def test_the_report_lists_one_problem_a_line_under_a_count():
    model = _model()
    arrays = {
        "hidden": [np.zeros((4, 3)), np.zeros(2)],
        "drop": [np.zeros(1)],  # a layer without weights takes no arrays
        "head": [np.zeros(1)],
    }
    with pytest.raises(ConversionError) as caught:
        assign(model, arrays)
    assert str(caught.value).splitlines() == [
        "the weights do not fit the model; nothing was assigned (3 problem(s)):",
        "  - layer 'hidden': expected shapes [(4, 3), (3,)], got [(4, 3), (2,)]",
        "  - model layer 'out' has no arrays",
        "  - arrays for layers the model does not have: ['drop', 'head']",
    ]


@pytest.mark.backend
def test_a_missing_array_is_a_mismatch_not_a_partial_assignment():
    model = _model()
    before = _weights(model)
    arrays = {"hidden": [np.ones((4, 3))], "out": [np.ones((3, 2)), np.ones(2)]}
    with pytest.raises(
        ConversionError, match=r"expected shapes \[\(4, 3\), \(3,\)\], got \[\(4, 3\)\]"
    ):
        assign(model, arrays)
    for name, weights in _weights(model).items():
        for got, old in zip(weights, before[name], strict=True):
            np.testing.assert_array_equal(got, old)


@pytest.mark.backend
def test_nested_lists_are_accepted_as_arrays():
    model = _model()
    hidden = np.arange(12, dtype=np.float32).reshape(4, 3)
    arrays = {"hidden": [hidden.tolist(), [1.0, 2.0, 3.0]], "out": [np.ones((3, 2)), [0.5, 0.5]]}
    assign(model, arrays)
    got = _weights(model)
    np.testing.assert_array_equal(got["hidden"][0], hidden)
    np.testing.assert_array_equal(got["hidden"][1], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(got["out"][1], [0.5, 0.5])


@pytest.mark.backend
def test_a_skipped_layer_that_is_given_arrays_still_gets_them():
    model = _model()
    arrays = {"hidden": [np.ones((4, 3)), np.ones(3)], "out": [np.full((3, 2), 2.0), np.ones(2)]}
    assign(model, arrays, skip_missing=["out"])
    np.testing.assert_array_equal(_weights(model)["out"][0], np.full((3, 2), 2.0))
