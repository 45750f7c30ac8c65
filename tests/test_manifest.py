"""The weights manifest: the shipped file, validation messages, user manifests merged on top."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from kzoo.errors import ManifestError, UnknownNameError
from kzoo.zoo.manifest import builtin_manifest_path, load_manifest, merge_manifests

REPO = Path(__file__).resolve().parents[1]


def _user_model(url: str = "https://example.invalid/tiny.h5") -> dict:
    return {
        "spec": "4C3-MP2-FC10",
        "input_shape": [8, 8, 3],
        "default_weights": "mine",
        "weights": {
            "mine": {
                "format": "keras_h5",
                "preprocessing": "none",
                "files": {"top": {"urls": [url], "size": 10, "md5": None}},
            }
        },
    }


def test_shipped_manifest_validates_and_lists_the_vgg_sources():
    manifest = load_manifest()
    assert manifest.names("vgg*") == ["vgg16", "vgg19", "vgg19_bn"]
    assert set(manifest.model("vgg19").weights) == {"imagenet", "caffe", "lasagne", "tv_in1k"}
    assert manifest.model("vgg19").default_weights == "imagenet"
    assert manifest.model("vgg19").head == "flatten"


def test_shipped_manifest_pins_the_published_keras_hashes_and_sizes():
    imagenet = load_manifest().source("vgg19", "imagenet")
    top, notop = imagenet.files["top"], imagenet.files["notop"]
    assert (top.size, top.md5, top.sha256) == (574710816, "cbe5617147190e668d6c5d5026f83318", None)
    assert (notop.size, notop.md5) == (80134624, "253f8cb515780f3b799900260a226db6")
    assert top.urls[0].startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
    classes = load_manifest().class_index("imagenet1k")
    assert (classes.file.size, classes.file.md5) == (35363, "c2c37ea517e94d9795004a39431a14cb")


def test_shipped_resnet_sources_name_the_variant_each_needs_and_pin_keras_hashes():
    manifest = load_manifest()
    assert manifest.names("resnet*") == [
        "resnet101", "resnet152", "resnet18", "resnet34", "resnet50", "resnet50_v2"
    ]  # fmt: skip
    resnet50 = manifest.model("resnet50")
    assert resnet50.default_weights == "imagenet"
    assert set(resnet50.weights) == {"imagenet", "caffe", "tv_in1k", "tv2_in1k"}
    specs = {tag: resnet50.spec_for(source) for tag, source in resnet50.weights.items()}
    assert specs == {
        "imagenet": "resnet50",
        "caffe": "resnet50_caffe",
        "tv_in1k": "resnet50_torch",
        "tv2_in1k": "resnet50_torch",
    }
    modes = {tag: source.preprocessing for tag, source in resnet50.weights.items()}
    assert modes == {"imagenet": "caffe", "caffe": "caffe", "tv_in1k": "torch", "tv2_in1k": "torch"}
    imagenet = resnet50.weights["imagenet"].files
    assert imagenet["top"].md5 == "2cb95161c43110f7111970584f804107"
    assert imagenet["notop"].md5 == "4d473c1dd8becc155b73f8504c6f6626"
    assert resnet50.weights["caffe"].import_only
    assert resnet50.weights["tv_in1k"].files["top"].filename == "resnet50-0676ba61.pth"
    assert resnet50.weights["tv2_in1k"].files["top"].filename == "resnet50-11ad3fa6.pth"
    for depth in (18, 34):
        entry = manifest.model(f"resnet{depth}")
        assert set(entry.weights) == {"tv_in1k"}
        assert entry.spec_for(entry.weights["tv_in1k"]) == f"resnet{depth}"
    for name in ("resnet50_v2", "inception_v3"):
        assert manifest.source(name, "imagenet").preprocessing == "tf"
    assert manifest.model("inception_v3").input_shape == (299, 299, 3)


def test_caffe_source_has_no_pin_and_lasagne_is_import_only():
    manifest = load_manifest()
    caffe = manifest.source("vgg19", "caffe")
    assert caffe.files["top"].pinned is None
    assert caffe.files["top"].size == 574671192
    lasagne = manifest.source("vgg19", "lasagne")
    assert "requester-pays" in lasagne.import_only
    assert lasagne.classes == "embedded"
    assert manifest.source("vgg19", "tv_in1k").preprocessing == "torch"


def test_top_level_manifest_is_a_link_to_the_packaged_file():
    top = REPO / "weights_manifest.json"
    assert top.is_symlink()
    assert top.resolve() == builtin_manifest_path().resolve()


def test_entries_are_frozen():
    entry = load_manifest().model("vgg19")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.spec = "FC10"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.weights["new"] = None  # type: ignore[index]


def test_user_manifest_from_environment_adds_a_model(tmp_path, monkeypatch):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"models": {"tiny": _user_model()}}))
    monkeypatch.setenv("KZOO_MANIFEST", str(path))
    manifest = load_manifest()
    assert "tiny" in manifest.names()
    assert "vgg19" in manifest.names()
    assert manifest.origins == ("built-in", str(path))


def test_argument_manifest_is_merged_after_the_environment(tmp_path, monkeypatch):
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"models": {"tiny": _user_model("https://env.invalid/a.h5")}}))
    monkeypatch.setenv("KZOO_MANIFEST", str(env))
    override = {
        "models": {
            "tiny": {
                "weights": {"mine": {"files": {"top": {"urls": ["https://arg.invalid/a.h5"]}}}}
            }
        }
    }
    files = load_manifest(override).source("tiny", "mine").files["top"]
    assert files.urls == ("https://arg.invalid/a.h5",)
    assert files.size == 10  # untouched keys survive the override


def test_overriding_urls_keeps_the_pinned_hash():
    mirror = {
        "models": {
            "vgg19": {
                "weights": {
                    "imagenet": {"files": {"top": {"urls": ["https://mirror.invalid/vgg19.h5"]}}}
                }
            }
        }
    }
    top = load_manifest(mirror).source("vgg19", "imagenet").files["top"]
    assert top.urls == ("https://mirror.invalid/vgg19.h5",)
    assert top.md5 == "cbe5617147190e668d6c5d5026f83318"


def test_plain_paths_in_a_user_manifest_resolve_against_its_folder(tmp_path):
    (tmp_path / "weights").mkdir()
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"models": {"tiny": _user_model("weights/tiny.h5")}}))
    url = load_manifest(path).source("tiny", "mine").files["top"].urls[0]
    assert url == (tmp_path / "weights" / "tiny.h5").resolve().as_uri()


def test_file_urls_are_kept_as_given(tmp_path):
    manifest = {"models": {"tiny": _user_model("file:///srv/w/tiny.h5")}}
    assert load_manifest(manifest).source("tiny", "mine").files["top"].urls == (
        "file:///srv/w/tiny.h5",
    )


@pytest.mark.parametrize(
    ("overlay", "key"),
    [
        (
            {"models": {"vgg19": {"weights": {"imagenet": {"files": {"top": {"size": "big"}}}}}}},
            "models.vgg19.weights.imagenet.files.top.size",
        ),
        (
            {"models": {"vgg19": {"weights": {"imagenet": {"files": {"top": {"md5": "xyz"}}}}}}},
            "models.vgg19.weights.imagenet.files.top.md5",
        ),
        (
            {"models": {"vgg19": {"weights": {"caffe": {"format": "caffe2"}}}}},
            "models.vgg19.weights.caffe.format",
        ),
        ({"models": {"vgg19": {"input_shape": [224, 224]}}}, "models.vgg19.input_shape"),
        ({"models": {"vgg19": {"default_weights": "imagenet21k"}}}, "models.vgg19.default_weights"),
        (
            {"models": {"vgg19": {"weights": {"tv_in1k": {"classes": "imagenet22k"}}}}},
            "models.vgg19.weights.tv_in1k.classes",
        ),
        (
            {"models": {"vgg19": {"weights": {"caffe": {"classes": "embedded"}}}}},
            "models.vgg19.weights.caffe.classes",
        ),
        (
            {"models": {"vgg19": {"weights": {"caffe": {"files": {"top": {"urls": []}}}}}}},
            "models.vgg19.weights.caffe.files.top.urls",
        ),
        (
            {"models": {"vgg19": {"weights": {"caffe": {"files": {"middle": {}}}}}}},
            "models.vgg19.weights.caffe.files.middle",
        ),
        ({"models": {"Bad.Name": _user_model()}}, "models.Bad.Name"),
        ({"models": {"tiny": {"spec": "FC10"}}}, "models.tiny.input_shape"),
        ({"schema": 2}, "schema"),
        ({"classes": {"imagenet1k": {"size": -1}}}, "classes.imagenet1k.size"),
    ],
)
def test_validation_error_names_the_bad_key(overlay, key):
    with pytest.raises(ManifestError, match=rf"\b{re.escape(key)} "):
        load_manifest(overlay)


def test_misspelt_key_gets_a_suggestion():
    overlay = {"models": {"vgg19": {"weights": {"imagenet": {"files": {"top": {"sha265": None}}}}}}}
    with pytest.raises(ManifestError, match=r"top\.sha265 is not a known key.*'sha256'"):
        load_manifest(overlay)


def test_underscore_keys_are_comments_and_hide_nothing_after_them():
    model = _user_model()
    overlay = {"_comment": "mirror", "models": {"_first": "a note", "tiny": {"_why": "x", **model}}}
    loaded = load_manifest(overlay)
    assert "tiny" in loaded.models and "_first" not in loaded.models
    assert loaded.source("tiny", "mine").format == model["weights"]["mine"]["format"]


def test_an_import_only_source_may_list_no_url():
    model = _user_model()
    model["weights"]["mine"]["import_only"] = "licence forbids redistribution"
    model["weights"]["mine"]["files"]["top"]["urls"] = []
    source = load_manifest({"models": {"tiny": model}}).source("tiny", "mine")
    assert source.import_only == "licence forbids redistribution"


def test_broken_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"models": {\n  "tiny": ,\n}}')
    with pytest.raises(ManifestError, match=r"bad\.json is not valid JSON.*line 2"):
        load_manifest(path)


def test_missing_user_manifest_points_at_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_MANIFEST", str(tmp_path / "nope.json"))
    with pytest.raises(ManifestError, match=r"nope\.json.*KZOO_MANIFEST"):
        load_manifest()


def test_unknown_model_and_tag_suggest_the_closest():
    manifest = load_manifest()
    with pytest.raises(UnknownNameError, match="did you mean 'vgg19'"):
        manifest.model("vgg91")
    with pytest.raises(UnknownNameError, match="did you mean 'imagenet'"):
        manifest.source("vgg19", "imagnet")


@pytest.mark.parametrize(
    ("pattern", "pretrained", "expected"),
    [
        ("vgg*", False, ["vgg16", "vgg19", "vgg19_bn"]),
        ("vgg19*", False, ["vgg19", "vgg19_bn"]),
        ("vgg1?", False, ["vgg16", "vgg19"]),
        ("*bn*", True, ["vgg19_bn.tv_in1k"]),
        ("vgg*.tv_in1k", True, ["vgg16.tv_in1k", "vgg19.tv_in1k", "vgg19_bn.tv_in1k"]),
        ("*.tv2_in1k", True, ["resnet101.tv2_in1k", "resnet152.tv2_in1k", "resnet50.tv2_in1k"]),
        ("vgg19", True, ["vgg19.caffe", "vgg19.imagenet", "vgg19.lasagne", "vgg19.tv_in1k"]),
        ("resnet5*", False, ["resnet50", "resnet50_v2"]),
        ("densenet*", False, []),
    ],
)
def test_names_match_fnmatch_wildcards(pattern, pretrained, expected):
    assert load_manifest().names(pattern, pretrained) == expected


def test_merge_replaces_lists_and_merges_objects():
    base = {"a": {"urls": ["x", "y"], "size": 1}, "b": 1}
    merged = merge_manifests(base, {"a": {"urls": ["z"]}, "c": 2})
    assert merged == {"a": {"urls": ["z"], "size": 1}, "b": 1, "c": 2}
    assert base["a"]["urls"] == ["x", "y"]
