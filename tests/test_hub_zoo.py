"""kzoo.load("hf://org/name"): a timm repo's config.json and safetensors, through the Hub stand-in.

The repos hold tiny timm-layout VGG checkpoints from kzoo.synthetic (the real key layout:
``features.*``, ``pre_logits.fc1`` as a conv over pool5, ``head.fc``); the test swaps the named
architecture ``vgg19`` for the same network at those tiny widths, so the whole path (resolve,
redirect, verify, convert, preprocessing from the config) runs on a few KiB. Outputs are
checked against the NumPy forward pass in tests/numpy_reference.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import keras
import numpy as np
import numpy_reference as ref
import pytest
from hub_server import (  # noqa: F401
    TINY,
    Repo,
    git_sha1,
    hub_server_fixture,
    publish,
    spec_of,
    timm_config,
    tiny_vgg19_fixture,
)

import kzoo
from kzoo.dsl import ARCHITECTURES
from kzoo.errors import EntryNotFoundError, KzooError, UnknownNameError
from kzoo.zoo import class_names, prepare_weights
from kzoo.zoo.hub import hub_model, supported_architectures

TOLERANCE = 1e-5


def outputs(model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(tensors, x_rgb: np.ndarray, mean, std) -> np.ndarray:
    x = (x_rgb.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    logits = ref.timm_forward(tensors, TINY.convs_per_block, x.transpose(0, 3, 1, 2))
    return softmax(logits)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)


@pytest.mark.backend
def test_a_timm_vgg_repo_loads_end_to_end_and_matches_numpy(
    hub_server, tiny_vgg19, tmp_path, images, monkeypatch
):
    repo, tensors = publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    model = kzoo.load("hf://timm/vgg19.tv_in1k")
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 10)
    assert model.get_layer("preprocessing").mode == "torch"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = outputs(model, images)
    assert ref.relative_error(got, reference(tensors, images, mean, std)) < TOLERANCE
    assert len(hub_server.blob_gets()) == 1
    assert class_names("hf://timm/vgg19.tv_in1k")[:2] == [("", "class 0"), ("", "class 1")]

    before = hub_server.total()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = kzoo.load("hf://timm/vgg19.tv_in1k")
    assert hub_server.total() == before  # offline: the pinned commit, zero requests
    np.testing.assert_array_equal(outputs(again, images), got)
    pinned = kzoo.load(f"hf://timm/vgg19.tv_in1k@{repo.commit}")
    np.testing.assert_array_equal(outputs(pinned, images), got)


def _layers(explanation) -> list[tuple[str, str]]:
    """Each layer's name and kind (its token without the numbers)."""
    return [
        (row.name, "".join(c for c in row.token if not c.isdigit())) for row in explanation.rows
    ]


@pytest.mark.parametrize(
    ("architecture", "convs_per_block", "batchnorm"),
    [("vgg11_bn", (1, 1, 2, 2, 2), True), ("vgg13", (2, 2, 2, 2, 2), False),
     ("vgg16_bn", (2, 2, 3, 3, 3), True)],
)  # fmt: skip
def test_every_timm_vgg_depth_loads_and_matches_numpy(
    hub_server, tmp_path, images, monkeypatch, architecture, convs_per_block, batchnorm
):
    assert architecture in supported_architectures()
    layout = dataclasses.replace(TINY, convs_per_block=convs_per_block, batchnorm=batchnorm)
    thousand = dataclasses.replace(layout, fc=(*layout.fc[:-1], 1000))
    # the real network and the tiny one it stands in for differ in widths only
    tiny = f"64x64x3:{spec_of(thousand)}"
    assert _layers(kzoo.explain(architecture)) == _layers(kzoo.explain(tiny))
    monkeypatch.setitem(ARCHITECTURES, architecture, (spec_of(thousand), (64, 64, 3), "tiny"))
    hf_id = f"hf://timm/{architecture}.tv_in1k"
    _, tensors = publish(hub_server, tmp_path, hf_id[5:], layout, architecture=architecture)
    model = kzoo.load(hf_id)
    x = (images.astype(np.float64) / 255.0 - np.asarray((0.485, 0.456, 0.406))) / np.asarray(
        (0.229, 0.224, 0.225)
    )
    logits = ref.timm_forward(tensors, convs_per_block, x.transpose(0, 3, 1, 2), batchnorm)
    assert ref.relative_error(outputs(model, images), softmax(logits)) < TOLERANCE


@pytest.mark.backend
def test_the_config_decides_classes_preprocessing_and_names(
    hub_server, tiny_vgg19, tmp_path, images
):
    layout = dataclasses.replace(TINY, fc=(*TINY.fc[:-1], 100))
    _, tensors = publish(
        hub_server, tmp_path, "someone/vgg19.custom", layout, mean=[0.5] * 3, std=[0.5] * 3
    )
    model = kzoo.load("hf://someone/vgg19.custom")
    assert model.output_shape == (None, 100)
    preprocessing = model.get_layer("preprocessing")
    x = np.full((1, 2, 2, 3), 255.0, np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(preprocessing(x)), 1.0, atol=1e-6)
    got = outputs(model, images)
    assert ref.relative_error(got, reference(tensors, images, 0.5, 0.5)) < TOLERANCE
    names = class_names("hf://someone/vgg19.custom")
    assert len(names) == 100 and names[99] == ("", "class 99")


def test_label_names_in_the_config_are_the_class_names(hub_server, tiny_vgg19, tmp_path):
    labels = [f"bird {i}" for i in range(TINY.fc[-1])]
    publish(hub_server, tmp_path, "someone/birds", label_names=labels)
    config = json.loads(hub_server.repos["someone/birds"].files["config.json"])
    config["label_names"] = config["pretrained_cfg"].pop("label_names")
    hub_server.repos["someone/birds"].files["config.json"] = json.dumps(config).encode()
    assert [n for _, n in class_names("hf://someone/birds")] == labels


def test_an_architecture_kzoo_cannot_build_lists_those_it_can(hub_server):
    files = {"config.json": timm_config("efficientnet_b0"), "model.safetensors": b"x"}
    hub_server.add(Repo("timm/efficientnet_b0.ra_in1k", files, lfs={"model.safetensors"}))
    with pytest.raises(UnknownNameError, match=r"kzoo builds these timm architectures: .*vgg19"):
        kzoo.load("hf://timm/efficientnet_b0.ra_in1k")
    assert hub_server.blob_gets() == []


def test_a_repo_without_safetensors_says_why_it_is_needed(hub_server, tiny_vgg19):
    hub_server.add(Repo("timm/vgg19.old", {"config.json": timm_config("vgg19", 10)}))
    with pytest.raises(EntryNotFoundError, match="no code runs on load"):
        kzoo.load("hf://timm/vgg19.old")


def test_a_hub_id_with_another_weights_argument_is_refused(hub_server):
    with pytest.raises(KzooError, match="carries its weights"):
        kzoo.load("hf://timm/vgg19.tv_in1k", weights="imagenet")
    assert hub_server.total() == 0


def test_the_weights_source_is_pinned_to_the_commit_and_the_hubs_sha256(
    hub_server, tiny_vgg19, tmp_path
):
    repo, _ = publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    found = hub_model("hf://timm/vgg19.tv_in1k")
    blob = repo.files["model.safetensors"]
    file = found.source.files["top"]
    assert file.urls == (f"hf://timm/vgg19.tv_in1k@{repo.commit}/model.safetensors",)
    assert (file.sha256, file.size) == (hashlib.sha256(blob).hexdigest(), len(blob))
    assert found.commit == repo.commit and found.source.classes is None


@pytest.mark.backend
def test_a_prefilled_hf_cache_loads_offline_with_no_request_and_no_copy(
    hub_server, tiny_vgg19, tmp_path, images, monkeypatch, kzoo_home
):
    repo, tensors = publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    folder = tmp_path / "hf_home" / "hub" / "models--timm--vgg19.tv_in1k"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    snapshot = folder / "snapshots" / repo.commit
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for name, data in repo.files.items():  # as huggingface_hub lays them out
        blob = hashlib.sha256(data).hexdigest() if name in repo.lfs else git_sha1(data)
        (folder / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(f"../../blobs/{blob}")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(repo.commit)
    before = sorted(folder.rglob("*"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    model = kzoo.load("hf://timm/vgg19.tv_in1k")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert ref.relative_error(outputs(model, images), reference(tensors, images, mean, std)) < (
        TOLERANCE
    )
    assert hub_server.total() == 0
    assert sorted(folder.rglob("*")) == before  # nothing written into the HF cache
    assert not list(kzoo_home.rglob("model.safetensors"))  # converted from where it is


@pytest.mark.backend
def test_a_manifest_source_names_a_hub_file_with_the_publishers_url_as_a_mirror(
    hub_server, tmp_path, images
):
    repo, tensors = publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    blob = repo.files["model.safetensors"]
    mirror = hub_server.blobs.add("/publisher/vgg19.safetensors", blob)
    file = {
        "urls": [f"hf://timm/vgg19.tv_in1k@{repo.commit}/model.safetensors", mirror],
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    source = {"format": "torch", "preprocessing": "torch", "files": {"top": file}}
    model = {"spec": spec_of(TINY), "input_shape": [64, 64, 3], "head": "flatten",
             "default_weights": "tv", "weights": {"tv": source}}  # fmt: skip
    manifest = {"models": {"tiny": model}, "classes": {}}
    repo.gated, repo.token = True, "only-for-members"  # the Hub refuses: the mirror serves

    loaded = kzoo.load("tiny", manifest=manifest)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert ref.relative_error(outputs(loaded, images), reference(tensors, images, mean, std)) < (
        TOLERANCE
    )
    assert (
        hub_server.count("HEAD") == 1
        and hub_server.blobs.count("/publisher/vgg19.safetensors") == 1
    )


@pytest.mark.backend
def test_a_hub_id_as_a_transfer_base_without_its_classifier(hub_server, tiny_vgg19, tmp_path):
    _, tensors = publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    prepare_weights("hf://timm/vgg19.tv_in1k", include_top=False)  # what the CLI runs first
    gets = len(hub_server.blob_gets())
    base = kzoo.load("hf://timm/vgg19.tv_in1k", include_top=False, input_shape=(96, 64, 3))
    assert len(hub_server.blob_gets()) == gets == 1
    x = np.random.default_rng(4).uniform(0, 255, (1, 96, 64, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    source_x = ((x / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    expected = ref.torch_features(tensors, TINY.convs_per_block, source_x, batchnorm=False)
    got = keras.ops.convert_to_numpy(base(x, training=False)).transpose(0, 3, 1, 2)
    assert ref.relative_error(got, expected) < TOLERANCE


def test_a_1000_class_repo_without_label_names_has_imagenets_class_names(hub_server, tmp_path):
    index = {str(i): [f"n{i:08d}", f"thing {i}"] for i in range(1000)}
    index_file = tmp_path / "imagenet_class_index.json"
    index_file.write_text(json.dumps(index))
    file = {"urls": [str(index_file)], "size": None, "md5": None}
    classes = {"imagenet1k": {"format": "keras_class_index", **file}}
    files = {"config.json": timm_config("vgg19", 1000), "model.safetensors": b"weights"}
    hub_server.add(Repo("timm/vgg19.tv_in1k", files, lfs={"model.safetensors"}))
    names = class_names("hf://timm/vgg19.tv_in1k", manifest={"classes": classes})
    assert len(names) == 1000 and names[999] == ("n00000999", "thing 999")
