"""Each concept has one home: formats, tokens, architectures, preprocessing modes, moved paths."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import warnings

import keras
import pytest

import kzoo.converters
from kzoo.converters import FORMATS, format_for_suffix
from kzoo.dsl import ARCHITECTURES, get_token, keywords, register_token, scoped_tokens
from kzoo.errors import ManifestError
from kzoo.layers import MODES
from kzoo.zoo.entries import PREPROCESSING_MODES
from kzoo.zoo.manifest import builtin_manifest_path, load_manifest

# modules of kzoo.converters that are no format's reader
_NOT_READERS = {"assign", "formats", "pairing", "reading", "slots", "store"}


def test_every_format_has_a_reader_and_every_reader_a_row():
    readers = {
        info.name
        for info in pkgutil.iter_modules(kzoo.converters.__path__)
        if not info.name.startswith("_") and info.name not in _NOT_READERS
    }
    assert readers == {f.module for f in FORMATS.values()}
    for fmt in FORMATS.values():
        module = importlib.import_module(f"kzoo.converters.{fmt.module}")
        assert callable(module.open_source), fmt.name
        assert fmt.preprocessing in MODES and fmt.version >= 1 and fmt.suffixes


def test_suffixes_name_one_format_each_whatever_their_case():
    suffixes = [s for f in FORMATS.values() for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes))
    assert format_for_suffix(".CaffeModel").name == "caffe"
    assert format_for_suffix(".txt") is None


def test_the_manifest_knows_the_preprocessing_modes_the_layer_has():
    assert set(PREPROCESSING_MODES) == set(MODES)


def test_every_builtin_token_names_a_keras_layer_class_and_user_tokens_build_themselves():
    builtins = [get_token(k) for k in keywords()]
    assert {t.keyword for t in builtins} >= {"C", "FC", "N", "MP", "AP", "GAP", "BN", "D", "relu"}
    for token in builtins:
        assert token.build is None and issubclass(
            getattr(keras.layers, token.keras_class), keras.layers.Layer
        )
    with scoped_tokens():
        user = register_token("GN", build=lambda p: None, shape=lambda s, p: (s, 0))
        assert user.keras_class is None and user.build is not None


def test_manifest_models_name_their_architecture_so_each_vgg_string_exists_once():
    raw = json.loads(builtin_manifest_path().read_text())
    for name, model in raw["models"].items():
        assert model["spec"] in ARCHITECTURES, name
        assert "C3" not in model["spec"], name
    assert load_manifest().model("vgg19").spec == "vgg19"


def test_a_manifest_spec_that_is_no_architecture_is_refused_with_its_key_path():
    bad = {"models": {"tiny": {"spec": "8C3-PM2-FC10", "input_shape": [8, 8, 3], "weights": {}}}}
    with pytest.raises(
        ManifestError, match=r"models\.tiny\.spec must name an architecture.*column 5"
    ):
        load_manifest(bad)
    good = {"models": {"tiny": {"spec": "8C3-MP2-FC10", "input_shape": [8, 8, 3], "weights": {}}}}
    assert load_manifest(good).model("tiny").spec == "8C3-MP2-FC10"


def test_the_old_token_path_still_works_with_a_deprecation_warning():
    sys.modules.pop("kzoo.tokens", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("kzoo.tokens")
    assert old.register_token is register_token
    assert any("kzoo.dsl.tokens" in str(w.message) for w in caught)


def test_the_old_store_path_names_the_new_one():
    result = subprocess.run(
        [sys.executable, "-c", "import kzoo.converters.store"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "kzoo.converters.store moved to kzoo.zoo.store" in result.stderr
