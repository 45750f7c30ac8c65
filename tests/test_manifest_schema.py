"""The manifest schema, key by key: every parsed field read back, every rejection's message.

The manifests here are complete on their own (``parse_manifest``, no built-in merged in), so
each assertion depends on the schema code and not on what the shipped manifest happens to hold.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kzoo.converters import FORMATS
from kzoo.dsl import parse as parse_spec
from kzoo.errors import ManifestError, SpecError
from kzoo.zoo.entries import (
    PREPROCESSING_MODES,
    ClassIndexEntry,
    FileEntry,
    Manifest,
    ModelEntry,
    WeightSource,
)
from kzoo.zoo.manifest import load_manifest, parse_manifest
from kzoo.zoo.schema import short

URL = "https://example.invalid/"
MD5 = "0123456789abcdef" * 2
SHA = "fedcba9876543210" * 4
SHA2 = "0f" * 32
DELETE = object()  # _with: remove the key instead of setting it

M = "models.tiny"
S = "models.tiny.weights.birds-h5"
F = "models.tiny.weights.birds-h5.files.top"
C = "classes.birds"


def _manifest() -> dict[str, Any]:
    """Every key of the schema set once, an ``_comment`` first at every level."""
    return {
        "_comment": "comments come first at every level: what follows must still be read",
        "schema": 1,
        "classes": {
            "_comment": "class lists",
            "birds": {
                "_note": "a comment inside an entry",
                "format": "keras_class_index",
                "urls": [URL + "birds.json", URL + "mirror/birds.json"],
                "size": 120,
                "md5": MD5.upper(),
                "sha256": SHA,
                "description": "three birds",
            },
            "fish": {"format": "keras_class_index", "urls": [URL + "fish.json"]},
        },
        "models": {
            "_comment": "models",
            "tiny": {
                "_why": "a comment inside a model",
                "spec": "4C3-MP2-FC10",
                "input_shape": [28, 28, 1],
                "head": "fc10",
                "default_weights": "birds-h5",
                "description": "a tiny net",
                "weights": {
                    "_comment": "weight sources",
                    "birds-h5": {
                        "format": "keras_h5",
                        "preprocessing": "torch",
                        "classes": "birds",
                        "license": "MIT",
                        "description": "trained on birds",
                        "files": {
                            "_comment": "file variants",
                            "top": {
                                "urls": [URL + "tiny.h5", URL + "mirror/tiny.h5"],
                                "size": 0,
                                "md5": MD5,
                                "sha256": SHA.upper(),
                            },
                            "notop": {"urls": [URL + "tiny_notop.h5"], "size": 5, "sha256": SHA2},
                        },
                    },
                    "pickled": {
                        "format": "lasagne",
                        "preprocessing": "none",
                        "classes": "embedded",
                        "import_only": "the licence forbids redistribution",
                        "files": {"top": {"urls": []}},
                    },
                },
            },
            "vgg": {
                "spec": "vgg19",
                "input_shape": [224, 224, 3],
                "weights": {
                    "caffe": {
                        "format": "caffe",
                        "preprocessing": "caffe",
                        "files": {"top": {"urls": [URL + "vgg19.caffemodel"], "md5": MD5}},
                    }
                },
            },
        },
    }


def _expected() -> Manifest:
    birds = ClassIndexEntry(
        "birds",
        "keras_class_index",
        FileEntry((URL + "birds.json", URL + "mirror/birds.json"), 120, MD5, SHA),
        "three birds",
    )
    fish = ClassIndexEntry(
        "fish", "keras_class_index", FileEntry((URL + "fish.json",), None, None, None), ""
    )
    tiny_sources = {
        "birds-h5": WeightSource(
            model="tiny",
            tag="birds-h5",
            format="keras_h5",
            preprocessing="torch",
            files={
                "top": FileEntry((URL + "tiny.h5", URL + "mirror/tiny.h5"), 0, MD5, SHA),
                "notop": FileEntry((URL + "tiny_notop.h5",), 5, None, SHA2),
            },
            classes="birds",
            license="MIT",
            description="trained on birds",
            import_only=None,
        ),
        "pickled": WeightSource(
            model="tiny",
            tag="pickled",
            format="lasagne",
            preprocessing="none",
            files={"top": FileEntry((), None, None, None)},
            classes="embedded",
            license=None,
            description="",
            import_only="the licence forbids redistribution",
        ),
    }
    vgg_sources = {
        "caffe": WeightSource(
            model="vgg",
            tag="caffe",
            format="caffe",
            preprocessing="caffe",
            files={"top": FileEntry((URL + "vgg19.caffemodel",), None, MD5, None)},
            classes=None,
            license=None,
            description="",
            import_only=None,
        )
    }
    return Manifest(
        models={
            "tiny": ModelEntry(
                "tiny", "4C3-MP2-FC10", (28, 28, 1), "fc10", "birds-h5", tiny_sources, "a tiny net"
            ),
            "vgg": ModelEntry("vgg", "vgg19", (224, 224, 3), "flatten", None, vgg_sources, ""),
        },
        classes={"birds": birds, "fish": fish},
        origins=("here", "there"),
    )


def _with(path: str, value: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the manifest with the dotted ``path`` set to ``value`` (or deleted)."""
    data = copy.deepcopy(_manifest() if data is None else data)
    *parents, last = path.split(".")  # model and tag names have no dots
    node = data
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def _message(data: Any) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    prefix = "invalid weights manifest: "
    assert str(caught.value).startswith(prefix)
    return str(caught.value)[len(prefix) :]


def _spec_reason(spec: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    return caught.value.reason


# --- what is read -------------------------------------------------------------------------


def test_every_field_of_every_entry_is_read_back():
    manifest = parse_manifest(_manifest(), origins=("here", "there"))
    assert manifest == _expected()
    assert list(manifest.models) == ["tiny", "vgg"]
    assert list(manifest.model("tiny").weights) == ["birds-h5", "pickled"]
    assert list(manifest.source("tiny", "birds-h5").files) == ["top", "notop"]


def test_a_comment_before_the_entries_of_each_level_hides_none_of_them():
    data = _manifest()
    levels = [
        data["models"],
        data["models"]["tiny"]["weights"],
        data["models"]["tiny"]["weights"]["birds-h5"]["files"],
        data["classes"],
    ]
    assert all(next(iter(level)) == "_comment" and len(level) > 2 for level in levels)
    manifest = parse_manifest(data)
    assert sorted(manifest.models) == ["tiny", "vgg"]
    assert sorted(manifest.model("tiny").weights) == ["birds-h5", "pickled"]
    assert sorted(manifest.source("tiny", "birds-h5").files) == ["notop", "top"]
    assert sorted(manifest.classes) == ["birds", "fish"]


def test_a_user_manifest_file_with_a_leading_comment_adds_every_entry(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(_manifest()))
    manifest = load_manifest(path)
    assert {"tiny", "vgg", "vgg19"} <= set(manifest.models)
    assert {"birds", "fish", "imagenet1k"} <= set(manifest.classes)


def test_null_default_weights_and_classes_mean_none():
    data = _with("models.tiny.default_weights", None)
    data["classes"] = None
    data = _with("models.tiny.weights.birds-h5.classes", None, data)
    manifest = parse_manifest(data)
    assert manifest.model("tiny").default_weights is None
    assert manifest.source("tiny", "birds-h5").classes is None
    assert dict(manifest.classes) == {}


def test_a_manifest_without_classes_has_none():
    data = _with("classes", DELETE)
    data = _with("models.tiny.weights.birds-h5.classes", DELETE, data)
    assert dict(parse_manifest(data).classes) == {}


@pytest.mark.parametrize("shape", [[1, 1, 1], [28, 28, 1], [299, 299, 3], [32, 32, 4]])
def test_input_shapes_of_positive_integers_are_kept(shape):
    entry = parse_manifest(_with("models.tiny.input_shape", shape)).model("tiny")
    assert entry.input_shape == tuple(shape)


@pytest.mark.parametrize(
    "shape",
    [
        [28, 28, 0],
        [0, 28, 1],
        [28, -3, 1],
        [28.5, 28, 1],
        [28, 28, 1.0],
        [True, 28, 1],
        [28, 28, False],
        ["28", 28, 1],
        [None, 28, 1],
        [28, 28],
        [28, 28, 1, 1],
        [],
        "28x28x1",
        None,
        {"height": 28},
    ],
)
def test_input_shapes_other_than_three_positive_integers_are_refused(shape):
    assert _message(_with("models.tiny.input_shape", shape)) == (
        f"{M}.input_shape must be [height, width, channels] of positive integers. "
        f"Received: {short(shape)}"
    )


@pytest.mark.parametrize("size", [0, 1, 574710816, None])
def test_any_non_negative_integer_size_is_kept(size):
    top = parse_manifest(_with(f"{F}.size", size)).source("tiny", "birds-h5").files["top"]
    assert top.size == size


def test_a_hash_in_capitals_is_kept_in_lower_case():
    data = _with(f"{F}.md5", MD5.upper())
    top = parse_manifest(data).source("tiny", "birds-h5").files["top"]
    assert (top.md5, top.sha256) == (MD5, SHA)


@pytest.mark.parametrize(
    ("kept", "dropped", "digest"), [("md5", "sha256", MD5), ("sha256", "md5", SHA)]
)
def test_either_hash_alone_is_kept_and_pins_the_file(kept, dropped, digest):
    top = parse_manifest(_with(f"{F}.{dropped}", DELETE)).source("tiny", "birds-h5").files["top"]
    assert top.hashes == {kept: digest, dropped: None}
    assert top.pinned == (kept, digest)


def test_embedded_classes_are_accepted_from_a_format_that_carries_them():
    data = _with(f"{S}.classes", "embedded")
    data = _with(f"{S}.format", "lasagne", data)
    assert parse_manifest(data).source("tiny", "birds-h5").classes == "embedded"


# --- what is refused, and the message that says so --------------------------------------

FORMAT_NAMES = list(FORMATS)
WITH_CLASSES = ", ".join(f.name for f in FORMATS.values() if f.embedded_classes)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # the manifest itself
        ("schema", DELETE, "schema is required"),
        ("models", DELETE, "models is required"),
        ("schema", 2, "schema must be 1. Received: 2"),
        ("schema", "1", "schema must be 1. Received: '1'"),
        ("XML", 1, "XML is not a known key (allowed: schema, models, classes)"),
        (
            "modles",
            {},
            "modles is not a known key (allowed: schema, models, classes); did you mean 'models'?",
        ),
        ("models", [], "models must be a JSON object. Received: []"),
        ("classes", ["birds"], 'classes must be a JSON object. Received: ["birds"]'),
        ("classes", [], "classes must be a JSON object. Received: []"),
        ("classes", "", "classes must be a JSON object. Received: ''"),
        (
            "classes.Birds",
            {},
            "classes.Birds names use lowercase letters, digits, '_' and '-' (no dots). "
            "Received: 'Birds'",
        ),
        (
            "models.tiny\n",
            {},
            "models.tiny\n names use lowercase letters, digits, '_' and '-' (no dots). "
            "Received: 'tiny\\n'",
        ),
        # a model
        (M, "4C3", f"{M} must be a JSON object. Received: '4C3'"),
        (f"{M}.spec", DELETE, f"{M}.spec is required"),
        (f"{M}.weights", DELETE, f"{M}.weights is required"),
        (f"{M}.spec", 5, f"{M}.spec must be a non-empty string. Received: 5"),
        (f"{M}.spec", "", f"{M}.spec must be a non-empty string. Received: ''"),
        (
            f"{M}.spec",
            "4C3-PM2-FC10",
            f"{M}.spec must name an architecture (kzoo.list_architectures()) or be an "
            f"architecture string; {_spec_reason('4C3-PM2-FC10')} at column 5. "
            "Received: '4C3-PM2-FC10'",
        ),
        (f"{M}.head", "  ", f"{M}.head must be a non-empty string. Received: '  '"),
        (f"{M}.head", 3, f"{M}.head must be a non-empty string. Received: 3"),
        (f"{M}.description", 3, f"{M}.description must be a string. Received: 3"),
        (f"{M}.weights", [], f"{M}.weights must be a JSON object. Received: []"),
        (
            f"{M}.weights.Mine",
            {},
            f"{M}.weights.Mine names use lowercase letters, digits, '_' and '-' (no dots). "
            "Received: 'Mine'",
        ),
        (
            f"{M}.default_weights",
            "bird-h5",
            f"{M}.default_weights must be one of ['birds-h5', 'pickled'] or null. "
            "Received: 'bird-h5'",
        ),
        (
            f"{M}.default_weights",
            ["birds-h5"],
            f"{M}.default_weights must be one of ['birds-h5', 'pickled'] or null. "
            'Received: ["birds-h5"]',
        ),
        (
            f"{M}.heads",
            "fc10",
            f"{M}.heads is not a known key (allowed: spec, input_shape, weights, head, "
            "default_weights, description); did you mean 'head'?",
        ),
        # a weight source
        (S, None, f"{S} must be a JSON object. Received: null"),
        (f"{S}.format", DELETE, f"{S}.format is required"),
        (f"{S}.preprocessing", DELETE, f"{S}.preprocessing is required"),
        (f"{S}.files", DELETE, f"{S}.files is required"),
        (
            f"{S}.format",
            "keras_h6",
            f"{S}.format must be one of {FORMAT_NAMES}; did you mean 'keras_h5'?. "
            "Received: 'keras_h6'",
        ),
        (f"{S}.format", 5, f"{S}.format must be one of {FORMAT_NAMES}. Received: 5"),
        (
            f"{S}.preprocessing",
            "troch",
            f"{S}.preprocessing must be one of {list(PREPROCESSING_MODES)}; did you mean "
            "'torch'?. Received: 'troch'",
        ),
        (f"{S}.import_only", "", f"{S}.import_only must be a non-empty string. Received: ''"),
        (f"{S}.files", [], f"{S}.files must be a JSON object. Received: []"),
        (f"{S}.files.top", DELETE, f"{S}.files.top is required"),
        (f"{S}.files.middle", {}, f"{S}.files.middle is not a known key (allowed: top, notop)"),
        (f"{S}.classes", 5, f"{S}.classes must be a non-empty string. Received: 5"),
        (
            f"{S}.classes",
            "bird",
            f"{S}.classes must name an entry of 'classes' (['birds', 'embedded', 'fish']); "
            "did you mean 'birds'?. Received: 'bird'",
        ),
        (
            f"{S}.classes",
            "embedded",
            f"{S}.classes 'embedded' needs a format that carries class names ({WITH_CLASSES}). "
            "Received: 'embedded'",
        ),
        (f"{S}.license", "", f"{S}.license must be a non-empty string. Received: ''"),
        (f"{S}.license", 3, f"{S}.license must be a non-empty string. Received: 3"),
        (f"{S}.description", 3, f"{S}.description must be a string. Received: 3"),
        (
            f"{S}.licence",
            "MIT",
            f"{S}.licence is not a known key (allowed: format, preprocessing, files, classes, "
            "license, description, import_only, spec); did you mean 'license'?",
        ),
        # a file
        (F, URL + "tiny.h5", f"{F} must be a JSON object. Received: '{URL}tiny.h5'"),
        (f"{F}.urls", DELETE, f"{F}.urls is required"),
        (
            f"{F}.urls",
            URL + "tiny.h5",
            f"{F}.urls must be a list of URL strings (mirrors, tried in order). "
            f"Received: '{URL}tiny.h5'",
        ),
        (
            f"{F}.urls",
            [URL + "tiny.h5", 5],
            f"{F}.urls must be a list of URL strings (mirrors, tried in order). "
            f'Received: ["{URL}tiny.h5", 5]',
        ),
        (
            f"{F}.urls",
            [""],
            f'{F}.urls must be a list of URL strings (mirrors, tried in order). Received: [""]',
        ),
        (
            f"{F}.urls",
            [],
            f"{F}.urls must list at least one URL (or mark the source import_only). Received: []",
        ),
        (f"{F}.size", -1, f"{F}.size must be a non-negative integer (bytes) or null. Received: -1"),
        (
            f"{F}.size",
            True,
            f"{F}.size must be a non-negative integer (bytes) or null. Received: true",
        ),
        (
            f"{F}.size",
            1.5,
            f"{F}.size must be a non-negative integer (bytes) or null. Received: 1.5",
        ),
        (f"{F}.md5", "xyz", f"{F}.md5 must be the md5 hex digest or null. Received: 'xyz'"),
        (f"{F}.md5", 5, f"{F}.md5 must be the md5 hex digest or null. Received: 5"),
        (f"{F}.md5", "", f"{F}.md5 must be the md5 hex digest or null. Received: ''"),
        (
            f"{F}.sha256",
            MD5,
            f"{F}.sha256 must be the sha256 hex digest or null. Received: '{MD5}'",
        ),
        (
            f"{F}.sha256",
            SHA + "\n",
            f"{F}.sha256 must be the sha256 hex digest or null. Received: {SHA + chr(10)!r}",
        ),
        (
            f"{F}.sha265",
            None,
            f"{F}.sha265 is not a known key (allowed: urls, size, md5, sha256); "
            "did you mean 'sha256'?",
        ),
        # a class list
        (C, "x", f"{C} must be a JSON object. Received: 'x'"),
        (f"{C}.urls", DELETE, f"{C}.urls is required"),
        (f"{C}.format", DELETE, f"{C}.format is required"),
        (
            f"{C}.format",
            "keras_class_idx",
            f"{C}.format must be one of ['keras_class_index']; did you mean "
            "'keras_class_index'?. Received: 'keras_class_idx'",
        ),
        (
            f"{C}.urls",
            [],
            f"{C}.urls must list at least one URL (or mark the source import_only). Received: []",
        ),
        (
            f"{C}.urls",
            URL + "birds.json",
            f"{C}.urls must be a list of URL strings (mirrors, tried in order). "
            f"Received: '{URL}birds.json'",
        ),
        (f"{C}.size", -5, f"{C}.size must be a non-negative integer (bytes) or null. Received: -5"),
        (f"{C}.md5", "xyz", f"{C}.md5 must be the md5 hex digest or null. Received: 'xyz'"),
        (
            f"{C}.sha256",
            "xyz",
            f"{C}.sha256 must be the sha256 hex digest or null. Received: 'xyz'",
        ),
        (f"{C}.description", 3, f"{C}.description must be a string. Received: 3"),
        (
            f"{C}.mirror",
            [],
            f"{C}.mirror is not a known key (allowed: format, urls, size, md5, sha256, "
            "description)",
        ),
    ],
)
def test_each_bad_value_is_refused_with_its_key_path_and_what_it_must_be(path, value, message):
    assert _message(_with(path, value)) == message


@pytest.mark.parametrize("data", [[], "manifest", None, 1])
def test_a_manifest_that_is_not_an_object_is_refused(data):
    assert _message(data) == f"the manifest must be a JSON object. Received: {short(data)}"


def test_two_close_names_are_both_suggested():
    data = _with("classes.bards", _manifest()["classes"]["fish"])
    message = _message(_with(f"{S}.classes", "brds", data))
    assert message.endswith("; did you mean 'bards' or 'birds'?. Received: 'brds'")


def test_a_value_json_cannot_write_is_shown_by_its_repr():
    weights = Path("weights") / "tiny.h5"
    assert _message(_with(f"{F}.urls", [weights])) == (
        f"{F}.urls must be a list of URL strings (mirrors, tried in order). Received: [{weights!r}]"
    )


def test_a_long_received_value_is_cut_to_80_characters():
    urls = [f"{URL}{i}.h5" for i in range(8)] + [5]
    message = _message(_with(f"{F}.urls", urls))
    received = message.split(". Received: ", 1)[1]
    assert received == json.dumps(urls)[:77] + "..."
    assert len(received) == 80


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x" * 78, "'" + "x" * 78 + "'"),  # 80 characters: kept whole
        ("x" * 79, "'" + "x" * 76 + "..."),  # 81: cut to 80
        ([1] * 26, "[" + "1, " * 25 + "1]"),  # 78
        (None, "null"),
        (True, "true"),
        ({"a": [1.5]}, '{"a": [1.5]}'),
        ("it's", '"it\'s"'),
    ],
)
def test_short_shows_json_and_quoted_strings_up_to_80_characters(value, shown):
    assert short(value) == shown


def test_a_source_may_name_its_own_architecture_variant():
    data = _with(f"{S}.spec", "4C3+BN-MP2-FC10")
    manifest = parse_manifest(data)
    assert manifest.models["tiny"].weights["birds-h5"].spec == "4C3+BN-MP2-FC10"
    assert manifest.models["tiny"].weights["pickled"].spec is None
    entry = manifest.models["tiny"]
    assert entry.spec_for(entry.weights["birds-h5"]) == "4C3+BN-MP2-FC10"
    assert entry.spec_for(entry.weights["pickled"]) == entry.spec == "4C3-MP2-FC10"
    assert entry.spec_for(None) == entry.spec


def test_a_source_spec_that_does_not_parse_names_its_path():
    message = _message(_with(f"{S}.spec", "4C3-MP2-FC10-"))
    assert message.startswith(f"{S}.spec must name an architecture")


def test_the_former_name_of_the_torch_format_still_reads():
    manifest = parse_manifest(_with(f"{S}.format", "safetensors_vgg"))
    assert manifest.models["tiny"].weights["birds-h5"].format == "torch"
