"""Transfer learning on ResNet-50 (random weights, small images): stages, BatchNorm, features."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import kzoo

SHAPE = (64, 64, 3)
QUIET = {"verbose": 0, "diagnostics": False, "batch_size": 4}


def _data(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, *SHAPE)).astype("float32"), rng.integers(0, 3, n)


def _bn_statistics(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        f"{layer.name}/{w.name}": keras.ops.convert_to_numpy(w).copy()
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in (layer.moving_mean, layer.moving_variance)
    }


def _changed(before: dict, after: dict) -> set[str]:
    return {key for key in before if not np.array_equal(before[key], after[key])}


@pytest.fixture(scope="module")
def resnet_transfer() -> kzoo.Transfer:
    keras.utils.set_random_seed(0)
    return kzoo.transfer("resnet50", weights=None, head="GAP-FC3", input_shape=SHAPE)


def test_a_resnet_base_is_cut_at_its_last_stage_and_unfreezes_by_stage(resnet_transfer):
    clf = resnet_transfer
    assert clf.base.layers[-1].name == "conv5_block3_out"
    assert tuple(clf.base.output.shape[1:]) == (2, 2, 2048)
    top = kzoo.transfer_learning.select_layers(clf.base, 1)
    assert top[0] == "conv5_block1_1_conv" and all(n.startswith("conv5_") for n in top)
    two = kzoo.transfer_learning.select_layers(clf.base, 2)
    assert two[0] == "conv4_block1_1_conv" or two[0].startswith("conv4_block1_")
    assert kzoo.transfer_learning.select_layers(clf.base, 5)[0] == "conv1_pad"  # stem = stage 1
    with pytest.raises(kzoo.TransferError, match=r"the base has 5 \(conv1, conv2, conv3"):
        kzoo.transfer_learning.select_layers(clf.base, 6)
    cut = kzoo.transfer("resnet50", weights=None, head="GAP-FC3", cut="conv4_block6_out",
                        input_shape=SHAPE)  # fmt: skip
    assert tuple(cut.base.output.shape[1:]) == (4, 4, 1024)


def test_batchnorm_statistics_stay_put_in_both_phases_by_default(resnet_transfer, caplog):
    clf = resnet_transfer
    x, y = _data()
    before = _bn_statistics(clf.base)
    kernel = clf.base.get_layer("conv5_block3_3_conv").kernel
    kernel_before = keras.ops.convert_to_numpy(kernel).copy()
    with caplog.at_level(logging.INFO, logger="kzoo"):
        clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=1, unfreeze=1, **QUIET)
    assert "caching the base's features" in caplog.text
    assert _changed(before, _bn_statistics(clf.base)) == set()
    # the unfrozen stage did train: its conv kernels moved
    assert clf.history.phase_boundary == 1
    assert not np.array_equal(kernel_before, keras.ops.convert_to_numpy(kernel))


@pytest.mark.slow
def test_bn_train_lets_the_unfrozen_statistics_move():
    keras.utils.set_random_seed(0)
    clf = kzoo.transfer("resnet50", weights=None, head="GAP-FC3", input_shape=SHAPE, bn="train")
    x, y = _data()
    before = _bn_statistics(clf.base)
    clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=1, unfreeze=1, **QUIET)
    moved = {key.split("/")[0] for key in _changed(before, _bn_statistics(clf.base))}
    assert moved and all(name.startswith("conv5_") for name in moved)


def test_block_features_of_a_resnet_are_its_stage_outputs():
    keras.utils.set_random_seed(0)
    model = kzoo.build("resnet50", input_shape=SHAPE, include_top=False)
    features = kzoo.features(model, "blocks")
    names = list(features.output_names) if hasattr(features, "output_names") else None
    outputs = features(np.zeros((1, *SHAPE), "float32"))
    shapes = [tuple(o.shape[1:]) for o in keras.tree.flatten(outputs)]
    assert shapes == [(32, 32, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024), (2, 2, 2048)]
    if names:
        assert names[-1].endswith("conv5_block3_out")


@pytest.mark.slow
def test_a_resnet50_transfer_model_exports_to_onnx_with_the_same_outputs(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("ONNX export converts from TensorFlow")
    keras.utils.set_random_seed(0)
    clf = kzoo.transfer("resnet50", weights=None, head="GAP-FC3", input_shape=SHAPE)
    result = clf.export(tmp_path / "resnet.onnx", class_names=["a", "b", "c"], samples=4)
    assert result.verification.max_relative_difference <= 1e-5
    assert result.path.stat().st_size > 90e6  # ResNet-50's 23.5 M base weights, in float32


@pytest.mark.slow
def test_the_first_layer_kernels_of_a_resnet_plot_as_7x7_tiles(tmp_path):
    pytest.importorskip("matplotlib")
    keras.utils.set_random_seed(0)
    model = kzoo.build("resnet50", input_shape=SHAPE, include_top=False)
    path = kzoo.plots.plot_kernels(model, tmp_path / "kernels.png")
    assert model.get_layer("conv1_conv").kernel.shape[:2] == (7, 7)
    assert path.stat().st_size > 1000
