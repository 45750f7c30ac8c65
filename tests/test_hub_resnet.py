"""timm ResNets by Hub id: ``resnet18`` .. ``resnet152`` with any tag map to kzoo's torchvision-
layout ResNets; full-size synthetic timm checkpoints load through the Hub stand-in and match the
NumPy forward pass of tests/numpy_reference.py."""

from __future__ import annotations

import keras
import numpy as np
import numpy_reference as ref
import pytest
from hub_server import Repo, hub_server_fixture, timm_config  # noqa: F401

import kzoo
from kzoo import synthetic
from kzoo.dsl import get_architecture
from kzoo.zoo.hub import hub_model, supported_architectures

TOLERANCE = 1e-5
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize(
    ("repo", "architecture", "kzoo_name"),
    [
        ("timm/resnet18.a1_in1k", "resnet18", "resnet18"),
        ("timm/resnet34.tv_in1k", "resnet34", "resnet34"),
        ("timm/resnet50.a1_in1k", "resnet50", "resnet50_torch"),
        ("timm/resnet101.tv2_in1k", "resnet101", "resnet101_torch"),
        ("timm/resnet152.a1h_in1k", "resnet152", "resnet152_torch"),
    ],
)
def test_timm_resnets_map_to_the_torchvision_layout(hub_server, repo, architecture, kzoo_name):
    files = {"config.json": timm_config(architecture), "model.safetensors": b"weights"}
    hub_server.add(Repo(repo, files, lfs={"model.safetensors"}))
    found = hub_model(f"hf://{repo}")
    assert found.entry.spec == get_architecture(kzoo_name)[0]
    assert found.source.format == "torch" and found.entry.name == kzoo_name
    assert architecture in supported_architectures()


def load_and_compare(hub_server, tmp_path, layout, architecture: str) -> None:
    path = tmp_path / "model.safetensors"
    tensors = synthetic.write_torch_resnet(path, layout)
    files = {"config.json": timm_config(architecture), "model.safetensors": path.read_bytes()}
    name = f"timm/{architecture}.a1_in1k"
    hub_server.add(Repo(name, files, lfs={"model.safetensors"}))

    model = kzoo.load(f"hf://{name}")
    x = np.random.default_rng(5).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    features = keras.Model(model.input, model.layers[-1].input)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.layers[-1].weights)
    logits = keras.ops.convert_to_numpy(features(x, training=False)) @ kernel + bias
    source_x = ((x.astype(np.float64) / 255.0 - TORCH_MEAN) / TORCH_STD).transpose(0, 3, 1, 2)
    expected = ref.torch_resnet_forward(tensors, layout.blocks, layout.bottleneck, source_x)
    assert ref.relative_error(logits, expected) < TOLERANCE
    probabilities = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert len(hub_server.blob_gets()) == 1


@pytest.mark.slow
@pytest.mark.backend
def test_a_full_size_timm_resnet18_loads_by_hub_id_and_matches_numpy(hub_server, tmp_path):
    load_and_compare(hub_server, tmp_path, synthetic.RESNET18, "resnet18")


@pytest.mark.slow
@pytest.mark.backend
def test_a_full_size_timm_resnet50_loads_by_hub_id_and_matches_numpy(hub_server, tmp_path):
    load_and_compare(hub_server, tmp_path, synthetic.RESNET50, "resnet50")
