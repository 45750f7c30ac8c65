"""The error tree: built-in bases, caret rendering, did-you-mean suggestions."""

from __future__ import annotations

import pickle

import pytest

from kzoo import errors
from kzoo.suggest import closest, edit_distance


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.SpecError, ValueError),
        (errors.UnknownNameError, LookupError),
        (errors.ManifestError, ValueError),
        (errors.DownloadError, OSError),
        (errors.ChecksumError, errors.DownloadError),
        (errors.OfflineError, errors.DownloadError),
        (errors.ConversionError, ValueError),
        (errors.UnsafePickleError, errors.ConversionError),
        (errors.TransferError, ValueError),
        (errors.TrainingError, RuntimeError),
    ],
)
def test_each_error_is_a_kzoo_error_and_its_natural_builtin(error, builtin) -> None:
    assert issubclass(error, errors.KzooError)
    assert issubclass(error, builtin)


def test_spec_error_draws_carets_under_its_span() -> None:
    error = errors.SpecError(
        "unknown layer token 'PM2'", "64C3-PM2-FC10", (5, 8), "did you mean 'MP2'?"
    )
    assert str(error).splitlines() == [
        "unknown layer token 'PM2'",
        "  | 64C3-PM2-FC10",
        "  |      ^^^",
        "  = help: did you mean 'MP2'?",
    ]


def test_spec_error_clamps_its_span_into_the_spec() -> None:
    error = errors.SpecError("unexpected end", "FC10-", (7, 12))
    assert error.span == (5, 5)
    assert str(error).splitlines()[-1] == "  |      ^"


def test_spec_error_survives_pickling() -> None:
    error = errors.SpecError("bad", "FC10", (0, 2), "help")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.spec, copy.span, copy.help, str(copy)) == (
        error.spec,
        error.span,
        error.help,
        str(error),
    )


def test_edit_distance_counts_a_transposition_as_one_edit() -> None:
    assert edit_distance("PM2", "MP2") == 1
    assert edit_distance("vgg19", "vgg16") == 1
    assert edit_distance("", "abc") == 3


def test_closest_prefers_the_transposed_neighbour() -> None:
    assert closest("PM2", ["MP2", "AP2", "FC2"])[0] == "MP2"


def test_closest_ignores_case_and_rejects_far_names() -> None:
    assert closest("VGG19", ["vgg19", "resnet50"]) == ["vgg19"]
    assert closest("xyz", ["vgg19"]) == []


def test_unknown_name_error_suggests_the_closest_name() -> None:
    error = errors.UnknownNameError("model", "vgg91", ["vgg19", "vgg16", "lenet"])
    assert "did you mean 'vgg19'" in str(error)
    assert error.name == "vgg91"
