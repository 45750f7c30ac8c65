"""The public API: one curated, sorted __all__ whose every name resolves, and a fast import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import kzoo


def test_all_is_sorted_and_unique() -> None:
    assert kzoo.__all__ == sorted(set(kzoo.__all__))


def test_every_public_name_resolves() -> None:
    for name in kzoo.__all__:
        assert getattr(kzoo, name) is not None, name


def test_dir_lists_exactly_the_public_names() -> None:
    assert dir(kzoo) == kzoo.__all__


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        kzoo.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout.strip()


def test_import_kzoo_does_not_import_keras() -> None:
    assert _run("import sys, kzoo; print('keras' in sys.modules)") == "False"


def test_the_zoo_that_error_hints_name_is_reachable_from_import_kzoo() -> None:
    # hints say "kzoo.zoo.import_weights(...)"; a fresh script has only `import kzoo`
    out = _run("import sys, kzoo; print(callable(kzoo.zoo.import_weights), 'keras' in sys.modules)")
    assert out == "True False"


def test_kzoo_layers_register_when_keras_is_imported_later() -> None:
    out = _run(
        """
        import kzoo, keras
        print(keras.saving.get_registered_object("kzoo>ImagePreprocessing") is not None)
        """
    )
    assert out == "True"


@pytest.mark.slow
def test_kzoo_layers_register_when_keras_was_imported_first() -> None:
    out = _run(
        """
        import keras, kzoo
        print(keras.saving.get_registered_object("kzoo>ImagePreprocessing") is not None)
        """
    )
    assert out == "True"


def test_all_names_exactly_the_lazy_exports_errors_and_submodules() -> None:
    from kzoo import errors

    expected = {*kzoo._LAZY, *kzoo._SUBMODULES, *errors.__all__, "__version__"}
    assert set(kzoo.__all__) == expected
