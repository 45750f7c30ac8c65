"""kzoo.load end to end: synthetic weights in every source format, served over real HTTP.

Each source file comes from kzoo.synthetic at tiny widths (the real layer layout), is served by
a FaultServer on 127.0.0.1 and registered through a user manifest. The loaded Keras model,
preprocessing included, must match an independent NumPy forward pass written in the source's
own layout (tests/numpy_reference.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import keras
import numpy as np
import numpy_reference as ref
import pytest
from fault_server import FaultServer

import kzoo
from kzoo import synthetic
from kzoo.cli import hint_line
from kzoo.download import file_digest
from kzoo.errors import DownloadError, ManifestError, OfflineError, UnknownNameError

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])
TOLERANCE = 1e-5


def spec_of(layout: synthetic.VGGLayout) -> str:
    """The DSL string of a synthetic layout (keras.applications layer names)."""
    bn = "+BN" if layout.batchnorm else ""
    convs = [
        f"{w}C3{bn}x{n}-MP2" for n, w in zip(layout.convs_per_block, layout.widths, strict=True)
    ]
    return "-".join([*convs, *(f"FC{units}" for units in layout.fc)])


def source_input(x_rgb: np.ndarray, mode: str) -> np.ndarray:
    """RGB 0-255 NHWC images -> what the source network was trained on, NCHW float64."""
    x = x_rgb.astype(np.float64)
    x = x[..., ::-1] - CAFFE_MEAN_BGR if mode == "caffe" else (x / 255.0 - TORCH_MEAN) / TORCH_STD
    return x.transpose(0, 3, 1, 2)


def outputs(model, x: np.ndarray) -> np.ndarray:
    """The model's output as NumPy (a direct call: no predict() loop to trace for tiny inputs)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write_source(kind: str, folder: Path, layout=synthetic.TINY_VGG19, seed: int = 0):
    """Write one synthetic file; return (path, manifest format, preprocessing, reference)."""
    cpb = layout.convs_per_block
    if kind == "keras_h5":
        path = folder / "tiny_keras.h5"
        arrays = synthetic.write_keras_h5(path, layout, seed=seed)
        return (
            path,
            "keras_h5",
            "caffe",
            lambda x: ref.keras_forward(
                arrays, cpb, source_input(x, "caffe").transpose(0, 2, 3, 1)
            ),
        )
    if kind == "caffe":
        path = folder / "tiny.caffemodel"
        blobs = synthetic.write_caffe(path, layout, seed=seed)
        return (
            path,
            "caffe",
            "caffe",
            lambda x: ref.caffe_forward(blobs, cpb, source_input(x, "caffe")),
        )
    if kind == "lasagne":
        path = folder / "tiny.pkl"
        data = synthetic.write_lasagne(path, layout, seed=seed)
        return (
            path,
            "lasagne",
            "caffe",
            lambda x: ref.lasagne_forward(data["param values"], cpb, source_input(x, "caffe")),
        )
    keys = "timm" if kind == "timm" else "torchvision"
    path = folder / f"{kind}.safetensors"
    tensors = synthetic.write_safetensors(path, layout, keys=keys, seed=seed)
    if keys == "timm":
        return (
            path,
            "safetensors_vgg",
            "torch",
            lambda x: ref.timm_forward(tensors, cpb, source_input(x, "torch")),
        )
    return (
        path,
        "safetensors_vgg",
        "torch",
        lambda x: ref.torchvision_forward(
            tensors, cpb, source_input(x, "torch"), batchnorm=layout.batchnorm
        ),
    )


def tiny_manifest(sources: dict, layout=synthetic.TINY_VGG19, classes: dict | None = None) -> dict:
    """A user manifest with one model, "tiny", and the given weight sources."""
    model = {
        "spec": spec_of(layout),
        "input_shape": [layout.input_size, layout.input_size, 3],
        "head": "flatten",
        "default_weights": next(iter(sources)),
        "weights": sources,
    }
    return {"models": {"tiny": model}, "classes": classes or {}}


def served_source(server: FaultServer, path: Path, fmt: str, mode: str, pin: bool = True) -> dict:
    url = server.add(f"/{path.name}", path.read_bytes())
    md5 = file_digest(path, "md5").split(":")[1] if pin else None
    file = {"urls": [url], "size": path.stat().st_size, "md5": md5}
    return {"format": fmt, "preprocessing": mode, "files": {"top": file}}


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)


@pytest.mark.backend
@pytest.mark.parametrize(
    ("kind", "layout"),
    [
        ("keras_h5", synthetic.TINY_VGG19),
        ("caffe", synthetic.TINY_VGG19),
        ("lasagne", synthetic.TINY_VGG19),
        ("torchvision", synthetic.TINY_VGG19),
        ("timm", synthetic.TINY_VGG19),
        ("torchvision", synthetic.TINY_VGG19_BN),
    ],
    ids=["keras_h5", "caffe", "lasagne", "safetensors-torchvision", "safetensors-timm", "bn"],
)
def test_load_downloads_converts_caches_and_matches_the_source_network(
    kind, layout, server, images, tmp_path, kzoo_home, monkeypatch
):
    path, fmt, mode, reference = write_source(kind, tmp_path, layout)
    manifest_file = tmp_path / "user_manifest.json"
    source = served_source(server, path, fmt, mode, pin=kind != "caffe")
    manifest_file.write_text(json.dumps(tiny_manifest({"src": source}, layout)))
    monkeypatch.setenv("KZOO_MANIFEST", str(manifest_file))

    model = kzoo.load("tiny")
    assert server.count(f"/{path.name}") == 1
    assert model.get_layer("preprocessing").mode == mode
    got = outputs(model, images)
    assert ref.relative_error(got, softmax(reference(images))) < TOLERANCE
    assert len(list((kzoo_home / "converted").rglob("*.h5"))) == 1

    before = len(server.hits())
    again = kzoo.load("tiny.src")
    assert len(server.hits()) == before  # zero HTTP requests on a warm cache
    np.testing.assert_array_equal(outputs(again, images), got)


@pytest.mark.backend
def test_a_source_names_the_architecture_variant_its_weights_need(
    server, images, tmp_path, monkeypatch
):
    # One model name, two sources: the Keras file fits the model's plain spec, torchvision's
    # BN weights name their own variant ("spec" on the source); a local file of a format takes
    # the spec of the model's source in that format
    plain, bn = synthetic.TINY_VGG19, synthetic.TINY_VGG19_BN
    h5_path, _, _, h5_reference = write_source("keras_h5", tmp_path, plain)
    tv_path, _, _, tv_reference = write_source("torchvision", tmp_path, bn)
    sources = {
        "imagenet": served_source(server, h5_path, "keras_h5", "caffe"),
        "tv_in1k": {**served_source(server, tv_path, "torch", "torch"), "spec": spec_of(bn)},
    }
    manifest_file = tmp_path / "user_manifest.json"
    manifest_file.write_text(json.dumps(tiny_manifest(sources, plain)))
    monkeypatch.setenv("KZOO_MANIFEST", str(manifest_file))

    default = kzoo.load("tiny")
    assert not any(isinstance(x, keras.layers.BatchNormalization) for x in default.layers)
    got = outputs(default, images)
    assert ref.relative_error(got, softmax(h5_reference(images))) < TOLERANCE
    for model in (kzoo.load("tiny.tv_in1k"), kzoo.load("tiny", weights=tv_path)):
        assert any(isinstance(x, keras.layers.BatchNormalization) for x in model.layers)
        got = outputs(model, images)
        assert ref.relative_error(got, softmax(tv_reference(images))) < TOLERANCE


def test_notop_file_gives_a_feature_extractor_of_any_size(server, tmp_path):
    layout = synthetic.TINY_VGG19
    top, notop = tmp_path / "top.h5", tmp_path / "notop.h5"
    synthetic.write_keras_h5(top, layout)
    arrays = synthetic.write_keras_h5(notop, layout, include_top=False)
    source = served_source(server, top, "keras_h5", "caffe")
    source["files"]["notop"] = served_source(server, notop, "keras_h5", "caffe")["files"]["top"]
    manifest = tiny_manifest({"src": source})

    x = np.random.default_rng(1).uniform(0, 255, (1, 96, 64, 3)).astype(np.float32)
    model = kzoo.load("tiny", include_top=False, input_shape=(96, 64, 3), manifest=manifest)
    assert (server.count("/top.h5"), server.count("/notop.h5")) == (0, 1)
    expected = ref.keras_forward(
        arrays, layout.convs_per_block, source_input(x, "caffe").transpose(0, 2, 3, 1)
    )
    assert ref.relative_error(outputs(model, x), expected) < TOLERANCE
    pooled = kzoo.load("tiny", include_top=False, pooling="avg", manifest=manifest)
    assert pooled.output_shape == (None, layout.widths[-1])
    assert server.count("/notop.h5") == 1


def test_a_cached_top_file_serves_a_notop_load_without_a_second_download(server, images, tmp_path):
    layout = synthetic.TINY_VGG19
    top, notop = tmp_path / "top.h5", tmp_path / "notop.h5"
    synthetic.write_keras_h5(top, layout)
    synthetic.write_keras_h5(notop, layout, include_top=False, seed=1)  # would show if used
    source = served_source(server, top, "keras_h5", "caffe")
    source["files"]["notop"] = served_source(server, notop, "keras_h5", "caffe")["files"]["top"]
    manifest = tiny_manifest({"src": source})

    full = kzoo.load("tiny", manifest=manifest)
    base = kzoo.load("tiny", include_top=False, manifest=manifest)
    again = kzoo.load("tiny", include_top=False, manifest=manifest)  # now a converted hit
    assert (server.count("/top.h5"), server.count("/notop.h5")) == (1, 0)
    cut = keras.Model(full.input, full.get_layer("block5_pool").output)
    np.testing.assert_allclose(outputs(base, images), outputs(cut, images), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs(again, images), outputs(base, images))


def test_a_failed_download_names_the_weights_of_the_model_that_are_installed(
    server, tmp_path, monkeypatch
):
    first, fmt, mode, _ = write_source("caffe", tmp_path)
    (tmp_path / "other").mkdir()
    second, *_ = write_source("lasagne", tmp_path / "other")
    manifest = tiny_manifest(
        {
            "caffe": served_source(server, first, fmt, mode, pin=False),
            "lasagne": served_source(server, second, "lasagne", "caffe", pin=False),
        }
    )
    kzoo.zoo.import_weights("tiny.lasagne", second, manifest=manifest)
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as error:
        kzoo.load("tiny", manifest=manifest)  # the default, caffe, is not installed
    installed, *rest = error.value.hints
    assert (installed.action, installed.params) == ("use_installed", {"name": "tiny.lasagne"})
    assert "kzoo.load('tiny.lasagne')" in str(error.value)
    assert hint_line(installed) == (
        "tiny.lasagne weights are installed: name the model tiny.lasagne to use them"
    )
    assert [h.action for h in rest] == ["import_weights"]
    assert kzoo.load("tiny.lasagne", manifest=manifest).name == "tiny"
    assert server.hits() == []


def test_notop_from_a_top_only_source_uses_its_conv_layers(server, images, tmp_path):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode, pin=False)})
    full = kzoo.load("tiny", manifest=manifest)
    base = kzoo.load("tiny", include_top=False, manifest=manifest)
    assert "fc1" not in [layer.name for layer in base.layers]
    cut = keras.Model(full.input, full.get_layer("block5_pool").output)
    np.testing.assert_allclose(outputs(base, images), outputs(cut, images), rtol=1e-5, atol=1e-6)
    assert server.count(f"/{path.name}") == 1


def test_prepare_weights_fetches_what_a_load_then_reads_from_the_cache(
    server, tmp_path, monkeypatch
):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode, pin=False)})
    assert kzoo.zoo.prepare_weights("tiny", include_top=False, manifest=manifest) is None
    assert server.count(f"/{path.name}") == 1
    monkeypatch.setenv("KZOO_OFFLINE", "1")  # the load may make no request at all
    base = kzoo.load("tiny", include_top=False, manifest=manifest)
    assert base.get_layer("block1_conv1").get_weights()[0].any()
    assert server.count(f"/{path.name}") == 1


def test_offline_makes_no_request_and_names_the_path_and_import_command(
    server, tmp_path, kzoo_home, monkeypatch
):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"caffe": served_source(server, path, fmt, mode, pin=False)})
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as error:
        kzoo.load("tiny", manifest=manifest)
    expected = kzoo_home / "raw" / "tiny" / "caffe" / "top-unpinned" / path.name
    assert str(expected) in str(error.value)
    assert "kzoo.zoo.import_weights('tiny.caffe', FILE)" in str(error.value)
    assert hint_line(error.value.hints[0]).endswith("kzoo weights import tiny caffe FILE")
    assert server.hits() == []

    monkeypatch.delenv("KZOO_OFFLINE")
    kzoo.load("tiny", manifest=manifest)
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    before = len(server.hits())
    kzoo.load("tiny", manifest=manifest)  # the cache answers; still no traffic
    assert len(server.hits()) == before == 1


def test_lasagne_weights_explain_how_to_import_them():
    with pytest.raises(DownloadError, match="requester-pays") as error:
        kzoo.load("vgg19", weights="lasagne")
    assert "kzoo.zoo.import_weights('vgg19.lasagne', FILE)" in str(error.value)
    assert hint_line(error.value.hints[0]).endswith("kzoo weights import vgg19 lasagne FILE")


def test_read_only_cache_layer_serves_a_hit_without_writing(
    server, images, tmp_path, kzoo_home, monkeypatch
):
    path, fmt, mode, _ = write_source("keras_h5", tmp_path)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode)})
    expected = outputs(kzoo.load("tiny", manifest=manifest), images)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")  # nothing can be created below a file, even by root
    monkeypatch.setenv("KZOO_HOME", str(blocker / "cache"))
    monkeypatch.setenv("KZOO_READONLY_CACHES", str(kzoo_home))
    before = len(server.hits())
    got = outputs(kzoo.load("tiny", manifest=manifest), images)
    assert len(server.hits()) == before
    np.testing.assert_array_equal(got, expected)


def test_read_only_layer_with_only_the_raw_file_converts_in_memory(
    server, tmp_path, kzoo_home, monkeypatch, caplog
):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode, pin=False)})
    kzoo.load("tiny", include_top=False, manifest=manifest)
    for converted in (kzoo_home / "converted").rglob("*.h5"):
        converted.unlink()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("KZOO_HOME", str(blocker / "cache"))
    monkeypatch.setenv("KZOO_READONLY_CACHES", str(kzoo_home))
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        kzoo.load("tiny", include_top=False, manifest=manifest)
    assert "not cached" in caplog.text
    assert server.count(f"/{path.name}") == 1


def test_unpinned_source_without_its_raw_file_still_hits_its_conversion(
    server, images, tmp_path, kzoo_home
):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode, pin=False)})
    expected = outputs(kzoo.load("tiny", manifest=manifest), images)
    for raw in (kzoo_home / "raw").rglob("*.caffemodel*"):
        raw.unlink()  # e.g. a pre-filled cache that ships conversions only
    got = outputs(kzoo.load("tiny", manifest=manifest), images)
    assert server.count(f"/{path.name}") == 1
    np.testing.assert_array_equal(got, expected)


def test_new_upstream_file_or_converter_fix_never_reuses_a_conversion(
    server, images, tmp_path, kzoo_home, monkeypatch
):
    from kzoo import converters

    first, fmt, mode, _ = write_source("keras_h5", tmp_path)
    old = kzoo.load(
        "tiny", manifest=tiny_manifest({"src": served_source(server, first, fmt, mode)})
    )
    newer_dir = tmp_path / "v2"
    newer_dir.mkdir()
    second, _, _, reference = write_source("keras_h5", newer_dir, seed=1)
    manifest = tiny_manifest({"src": served_source(server, second, fmt, mode)})
    new = kzoo.load("tiny", manifest=manifest)
    got = outputs(new, images)
    assert ref.relative_error(got, softmax(reference(images))) < TOLERANCE
    assert not np.allclose(got, outputs(old, images))
    fixed = dataclasses.replace(converters.FORMATS["keras_h5"], version=99)
    monkeypatch.setitem(converters.FORMATS, "keras_h5", fixed)
    kzoo.load("tiny", manifest=manifest)
    names = sorted(p.name for p in (kzoo_home / "converted").rglob("*.h5"))
    assert len(names) == 3
    assert any("keras_h5-v99" in name for name in names)
    # one GET per upstream version (same URL): the converter fix reused the raw file
    assert server.count(f"/{second.name}") == 2


def test_preprocessing_false_plus_preprocess_input_matches_the_in_model_layer(
    server, images, tmp_path
):
    path, fmt, mode, _ = write_source("torchvision", tmp_path)
    manifest = tiny_manifest({"tv": served_source(server, path, fmt, mode)})
    inside = outputs(kzoo.load("tiny", manifest=manifest), images)
    bare = kzoo.load("tiny", manifest=manifest, preprocessing=False)
    assert "preprocessing" not in [layer.name for layer in bare.layers]
    outside = outputs(bare, kzoo.preprocess_input(images, "tiny.tv", manifest=manifest))
    np.testing.assert_allclose(outside, inside, rtol=1e-5, atol=1e-7)


def test_local_file_and_random_weights(images, tmp_path):
    path, _, _, reference = write_source("lasagne", tmp_path)
    manifest = tiny_manifest(
        {
            "l": {
                "format": "lasagne",
                "preprocessing": "caffe",
                "import_only": "synthetic",
                "files": {"top": {"urls": []}},
            }
        }
    )
    model = kzoo.load("tiny", weights=path, manifest=manifest)
    got = outputs(model, images)
    assert ref.relative_error(got, softmax(reference(images))) < TOLERANCE
    random = kzoo.load("tiny", weights=None, manifest=manifest)
    assert random.get_layer("preprocessing").mode == "caffe"
    assert not np.allclose(outputs(random, images), got)


def test_decode_predictions_uses_the_served_class_index(server, tmp_path):
    index = {str(i): [f"n{i:08d}", f"synthetic class {i}"] for i in range(10)}
    payload = json.dumps(index).encode()
    url = server.add("/class_index.json", payload)
    md5 = __import__("hashlib").md5(payload).hexdigest()
    classes = {
        "ten": {"format": "keras_class_index", "urls": [url], "size": len(payload), "md5": md5}
    }
    source = {
        "format": "keras_h5",
        "preprocessing": "caffe",
        "classes": "ten",
        "files": {"top": {"urls": ["https://example.invalid/never.h5"]}},
    }
    manifest = tiny_manifest({"k": source}, classes=classes)
    preds = np.zeros((2, 10))
    preds[0, [3, 7]] = [0.9, 0.1]
    preds[1, 5] = 1.0
    decoded = kzoo.decode_predictions(preds, top=2, weights="tiny.k", manifest=manifest)
    assert decoded[0] == [
        ("n00000003", "synthetic class 3", 0.9),
        ("n00000007", "synthetic class 7", 0.1),
    ]
    assert decoded[1][0] == ("n00000005", "synthetic class 5", 1.0)
    kzoo.decode_predictions(preds, weights="tiny", manifest=manifest)
    assert server.count("/class_index.json") == 1
    with pytest.raises(ValueError, match=r"shape=\(2, 9\)"):
        kzoo.decode_predictions(preds[:, :9], weights="tiny.k", manifest=manifest)


def test_decode_predictions_reads_lasagne_synset_words(server, tmp_path):
    path, fmt, mode, _ = write_source("lasagne", tmp_path)
    source = served_source(server, path, fmt, mode)
    source["classes"] = "embedded"
    manifest = tiny_manifest({"l": source})
    preds = np.eye(10)[[4]]
    ((top,),) = kzoo.decode_predictions(preds, top=1, weights="tiny.l", manifest=manifest)
    assert top == ("n00000004", "class 4, synthetic", 1.0)


def test_list_models_matches_wildcards_over_the_merged_manifest():
    manifest = tiny_manifest(
        {
            "a": {
                "format": "caffe",
                "preprocessing": "caffe",
                "files": {"top": {"urls": ["https://example.invalid/a"]}},
            }
        }
    )
    assert kzoo.list_models("[tv]*", manifest=manifest) == ["tiny", "vgg16", "vgg19", "vgg19_bn"]
    assert kzoo.list_models("vgg19*") == ["vgg19", "vgg19_bn"]
    assert kzoo.list_models("t*", pretrained=True, manifest=manifest) == ["tiny.a"]
    assert kzoo.list_models("vgg*.tv_in1k", pretrained=True) == [
        "vgg16.tv_in1k",
        "vgg19.tv_in1k",
        "vgg19_bn.tv_in1k",
    ]


def test_unknown_names_suggest_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'vgg19'"):
        kzoo.load("vgg91")
    with pytest.raises(UnknownNameError, match="did you mean 'tv_in1k'"):
        kzoo.load("vgg19.tv_in1l")
    with pytest.raises(UnknownNameError, match="did you mean 'caffe'"):
        kzoo.load("vgg19", weights="cafe")
    for path in ("flowers.keras", "/tmp/nowhere/model.keras", "weights.h5"):
        with pytest.raises(kzoo.KzooError, match=r"looks like a file.*keras\.saving\.load_model"):
            kzoo.load(path)
    with pytest.raises(UnknownNameError) as error:  # nothing close: the tags, listed once
        kzoo.load("vgg19.nosuchtag")
    assert str(error.value) == (
        "unknown weights tag for vgg19 'nosuchtag'; known: caffe, imagenet, lasagne, tv_in1k"
    )


def test_include_top_with_another_input_size_is_refused():
    with pytest.raises(ValueError, match="include_top=False"):
        kzoo.load("vgg19", input_shape=(160, 160, 3))
    with pytest.raises(kzoo.KzooError, match="already selects"):
        kzoo.load("vgg19.caffe", weights="tv_in1k")


def test_a_bad_user_manifest_fails_before_anything_else(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"models": {"vgg19": {"weights": {"caffe": {"files": {"top": {"size": -5}}}}}}})
    )
    monkeypatch.setenv("KZOO_MANIFEST", str(bad))
    with pytest.raises(ManifestError, match=r"models\.vgg19\.weights\.caffe\.files\.top\.size"):
        kzoo.load("vgg19")
