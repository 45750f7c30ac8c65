"""kzoo.transfer: freezing, the two phases, learning rates, feature caching, saving."""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings

import keras
import numpy as np
import pytest

import kzoo
from kzoo.errors import TransferError
from kzoo.transfer_learning import select_layers
from kzoo.transfer_learning.rates import group_optimizer

BASE_SPEC = "8C3+BN-MP2-8C3-MP2-FC10"
SHAPE = (16, 16, 3)
CLASSES = 3


def _base(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return kzoo.build(BASE_SPEC, input_shape=SHAPE, name="tiny")


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] whose mean colour gives the class, so a small head can learn it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.uniform(0, 120, size=(n, *SHAPE))
    x[np.arange(n), :, :, y] += 120
    return (x / 255).astype("float32"), y.astype("int32")


def _transfer(head: str = "GAP-FC3", seed: int = 0, **kwargs) -> kzoo.Transfer:
    clf = kzoo.transfer(_base(seed), head=head, **kwargs)
    keras.utils.set_random_seed(seed)
    return clf


def _snapshot(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight (moving statistics included) of every layer, by layer name."""
    return {
        f"{layer.name}/{w.name}": keras.ops.convert_to_numpy(w).copy()
        for layer in model.layers
        for w in layer.weights
    }


def _changed(before: dict, after: dict) -> set[str]:
    return {k.split("/")[0] for k in before if not np.array_equal(before[k], after[k])}


QUIET = {"verbose": 0, "diagnostics": False, "batch_size": 16}


def test_model_is_base_called_in_inference_mode_then_a_prefixed_dsl_head():
    clf = _transfer()
    assert clf.base.output.shape[1:] == (4, 4, 8)  # cut before the base's flatten
    assert [la.name for la in clf.head.layers[1:]][-1].startswith("head_")
    assert all(la.name.startswith("head_") for la in clf.head.layers[1:])
    assert clf.model.layers[1] is clf.base and clf.model.layers[2] is clf.head
    assert not clf.base.trainable and clf.head.trainable
    config = clf.model.get_config()
    call = next(la for la in config["layers"] if la["name"] == clf.base.name)
    assert call["inbound_nodes"][0]["kwargs"]["training"] is False


@pytest.mark.parametrize("cache", [True, False])
def test_frozen_phase_keeps_every_base_weight_and_bn_statistic_and_trains_the_head(cache):
    clf = _transfer()
    x, y = _data()
    base_before, head_before = _snapshot(clf.base), _snapshot(clf.head)
    assert any("moving" in k for k in base_before)
    clf.fit_frozen(x, y, epochs=2, cache_features=cache, **QUIET)
    base_after = _snapshot(clf.base)
    assert all(np.array_equal(base_before[k], base_after[k]) for k in base_before)
    assert _changed(head_before, _snapshot(clf.head)) == {
        la.name for la in clf.head.layers if la.weights
    }


def test_fine_tune_changes_exactly_the_selected_top_block_and_keeps_bn_statistics():
    clf = _transfer()
    x, y = _data()
    before = _snapshot(clf.base)
    clf.fine_tune(x, y, epochs=1, unfreeze=1, **QUIET)
    changed = _changed(before, _snapshot(clf.base))
    assert changed == {
        la.name for la in clf.base.layers if la.name.startswith("block2") and la.weights
    }
    assert not any(k for k in before if "moving" in k and k.split("/")[0] in changed)


def test_fine_tune_from_a_layer_name_trains_the_layers_after_it_but_not_batchnorm():
    clf = _transfer()
    x, y = _data()
    bn_layer = next(la.name for la in clf.base.layers if "bn" in la.name)
    before = _snapshot(clf.base)
    clf.fine_tune(x, y, epochs=1, unfreeze=bn_layer, **QUIET)
    after = _snapshot(clf.base)
    assert _changed(before, after) == {"block2_conv1"}  # bn="frozen": BatchNorm stays put
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith(bn_layer))


def test_bn_train_policy_updates_moving_statistics_once_unfrozen():
    clf = _transfer(bn="train")
    x, y = _data()
    before = _snapshot(clf.base)
    clf.fit_frozen(x, y, epochs=1, **QUIET)
    assert _changed(before, _snapshot(clf.base)) == set()
    clf.fine_tune(x, y, epochs=1, **QUIET)
    after = _snapshot(clf.base)
    moving = [k for k in before if "moving" in k]
    assert moving and all(not np.array_equal(before[k], after[k]) for k in moving)


def test_no_trainable_warning_across_phases(caplog):
    clf = _transfer()
    x, y = _data()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=1, **QUIET)
        clf.fine_tune(x, y, epochs=1, unfreeze=1, **QUIET)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "trainable" in m.lower()]


@pytest.mark.backend
def test_learning_rates_default_to_a_tenth_then_a_hundredth_for_pretrained_layers():
    clf = _transfer()
    x, y = _data()
    clf.fit_frozen(x, y, epochs=1, **QUIET)
    rates = clf.learning_rates()
    assert rates and all(rate == pytest.approx(1e-3) for rate in rates.values())
    assert all(path.startswith("head_") for path in rates)
    clf.fine_tune(x, y, epochs=1, **QUIET)
    optimizer = clf.model.optimizer
    assert isinstance(optimizer, keras.optimizers.MultiOptimizer)  # Keras's own, not a hook
    sub_rates = sorted(
        float(keras.ops.convert_to_numpy(o.learning_rate)) for o in optimizer.optimizers
    )
    assert sub_rates == [pytest.approx(1e-5), pytest.approx(1e-4)]
    rates = clf.learning_rates()
    head = {v.path for v in clf.head.trainable_variables}
    for path, rate in rates.items():
        assert rate == pytest.approx(1e-4 if path in head else 1e-5), path


@pytest.mark.backend
def test_per_group_optimizer_state_saves_and_restores_with_the_model(tmp_path):
    clf = _transfer()
    x, y = _data()
    clf.fine_tune(x, y, epochs=2, **QUIET)
    clf.model.save(tmp_path / "tuned.keras")
    again = keras.saving.load_model(tmp_path / "tuned.keras")
    saved, loaded = clf.model.optimizer, again.optimizer
    assert isinstance(loaded, keras.optimizers.MultiOptimizer)
    assert int(keras.ops.convert_to_numpy(loaded.iterations)) == int(
        keras.ops.convert_to_numpy(saved.iterations)
    )
    for before, after in zip(saved.variables, loaded.variables, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(after), keras.ops.convert_to_numpy(before)
        )
    rates = sorted(float(keras.ops.convert_to_numpy(o.learning_rate)) for o in loaded.optimizers)
    assert rates == [pytest.approx(1e-5), pytest.approx(1e-4)]


def _one_sgd_step(multiplier: float) -> tuple[dict, dict]:
    clf = _transfer(optimizer="sgd", learning_rate=10.0, pretrained_lr_multiplier=multiplier)
    x, y = _data(n=16)
    before = {**_snapshot(clf.base), **_snapshot(clf.head)}
    clf.fine_tune(x, y, epochs=1, shuffle=False, **QUIET)
    after = {**_snapshot(clf.base), **_snapshot(clf.head)}
    return {k: after[k] - before[k] for k in before if "moving" not in k}, before


def test_a_wrapping_optimizer_is_refused_with_what_to_pass_instead():
    wrapped = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    with pytest.raises(TransferError, match="pass the optimizer it wraps"):
        _transfer(optimizer=wrapped)
    with pytest.raises(TransferError, match="a name or a keras optimizer"):
        _transfer(optimizer=42)


@pytest.mark.backend
def test_global_clipnorm_clips_the_two_groups_as_one():
    if keras.backend.backend() == "torch":
        pytest.skip("torch's fused optimizer step has no per-variable rate hook")
    pretrained, new = keras.Variable([0.0], name="pretrained"), keras.Variable([0.0], name="new")
    template = keras.optimizers.SGD(1.0, global_clipnorm=1.0)
    optimizer = group_optimizer(template, 1.0, [pretrained], [new], 0.5)
    optimizer.apply([np.array([3.0], "float32"), np.array([4.0], "float32")], [pretrained, new])
    # one norm over both gradients: (3, 4) / 5; then half the rate for the pretrained group
    np.testing.assert_allclose(keras.ops.convert_to_numpy(pretrained), [-0.3], rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(new), [-0.8], rtol=1e-6)


@pytest.mark.backend
def test_pretrained_layers_move_by_exactly_the_multiplier_under_sgd():
    scaled, _ = _one_sgd_step(0.1)
    plain, _ = _one_sgd_step(1.0)
    for key in plain:
        factor = 1.0 if key.startswith("head_") else 0.1
        np.testing.assert_allclose(scaled[key], factor * plain[key], rtol=1e-3, atol=1e-6)
    assert any(np.abs(plain[k]).max() > 0 for k in plain if not k.startswith("head_"))


@pytest.mark.backend
@pytest.mark.backend
def test_cached_and_uncached_frozen_training_give_the_same_head():
    x, y = _data()
    heads = []
    for cache in (True, False):
        clf = _transfer(head="GAP-FC8-FC3")
        clf.fit_frozen(x, y, epochs=3, cache_features=cache, shuffle=False, **QUIET)
        heads.append(_snapshot(clf.head))
        history = clf.history.history["loss"]
        assert len(history) == 3
    for key in heads[0]:
        np.testing.assert_allclose(heads[0][key], heads[1][key], rtol=1e-4, atol=1e-5)


def test_augmentation_layers_are_refused_with_cache_true_and_not_cached_with_auto(caplog):
    clf = _transfer(augmentation=[keras.layers.RandomFlip("horizontal", name="flip")])
    x, y = _data(n=16)
    with pytest.raises(TransferError, match=r"random layers \(flip\).*Received: cache_features"):
        clf.fit_frozen(x, y, epochs=1, cache_features=True, **QUIET)
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        clf.fit_frozen(x, y, epochs=1, **QUIET)
    assert "cannot cache" in caplog.text and "flip" in caplog.text


def test_generators_are_not_cached_with_auto(caplog):
    clf = _transfer()
    x, y = _data(n=16)

    def batches():
        while True:
            yield x, y

    with caplog.at_level(logging.WARNING, logger="kzoo"):
        clf.fit_frozen(batches(), epochs=1, steps_per_epoch=1, **QUIET)
    assert "cannot cache" in caplog.text and "generator" in caplog.text
    with pytest.raises(TransferError, match="cannot be proven"):
        clf.fit_frozen(batches(), epochs=1, steps_per_epoch=1, cache_features=True, **QUIET)


@pytest.mark.backend
def test_tf_datasets_are_cached_only_without_random_ops(caplog):
    tf = pytest.importorskip("tensorflow")
    clf = _transfer()
    x, y = _data(n=32)
    plain = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(32).batch(16)
    with caplog.at_level(logging.INFO, logger="kzoo"):
        clf.fit_frozen(plain, epochs=1, **QUIET)
    assert "caching the base's features" in caplog.text
    caplog.clear()
    augmented = plain.map(lambda a, b: (tf.image.random_flip_left_right(a), b))
    with caplog.at_level(logging.INFO, logger="kzoo"):
        clf.fit_frozen(augmented, epochs=1, **QUIET)
    assert "cannot cache" in caplog.text and "Random" in caplog.text
    assert "caching the base's features" not in caplog.text


def test_one_history_spans_both_phases_and_marks_the_boundary():
    clf = _transfer()
    x, y = _data()
    history = clf.fit(
        x, y, frozen_epochs=2, fine_tune_epochs=3, validation_data=(x, y), cache_features=True,
        learning_rate=2e-4, **QUIET,
    )  # fmt: skip
    assert history is clf.history
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.phase_boundary == 2
    assert history.phases == ["frozen"] * 2 + ["fine_tune"] * 3
    assert len(history.history["val_loss"]) == 5
    head_rate = clf.learning_rates()[clf.head.trainable_variables[0].path]
    assert head_rate == pytest.approx(2e-4)


def test_callbacks_see_the_full_model_while_the_head_trains_on_cached_features(tmp_path):
    clf = _transfer()
    x, y = _data()
    path = tmp_path / "best.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(path, monitor="loss", save_best_only=False)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    clf.fit(x, y, frozen_epochs=4, fine_tune_epochs=2, callbacks=[checkpoint, stop], **QUIET)
    assert len(clf.history.epoch) == 2  # min_delta stops after the second frozen epoch
    assert clf.history.phase_boundary is None
    saved = keras.saving.load_model(path)
    assert saved.input_shape == clf.model.input_shape
    np.testing.assert_allclose(saved.predict(x, verbose=0), clf.model.predict(x, verbose=0))


def test_diagnostics_are_attached_by_default():
    from kzoo.transfer_learning.training import _with_diagnostics

    callbacks, watch = _with_diagnostics([], True)
    assert [type(c).__name__ for c in callbacks] == ["TrainingDiagnostics"]
    assert callbacks == [watch]
    assert _with_diagnostics([], False) == ([], None)


def test_bad_cut_names_every_valid_cut_point():
    with pytest.raises(TransferError, match=r"valid cut points.*block1_conv1.*block2_pool"):
        kzoo.transfer(_base(), head="GAP-FC3", cut="block9_pool")


def test_cut_at_a_named_layer_and_default_head_boundary():
    clf = kzoo.transfer(_base(), head="GAP-FC3", cut="block1_pool")
    assert clf.base.output.shape[1:] == (8, 8, 8)
    assert clf.base.layers[-1].name == "block1_pool"


def test_a_cut_base_takes_one_tensor_as_its_input_was_given():
    # a base cut from a one-input model is called with a tensor, not a list: no Keras warning
    base = kzoo.transfer(_base(), head="GAP-FC3", cut="block1_pool").base
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = base(np.zeros((1, *base.input.shape[1:]), "float32"))
    assert tuple(out.shape) == (1, 8, 8, 8)


def test_bad_unfreeze_requests_are_clear_errors():
    base = _transfer().base
    with pytest.raises(TransferError, match="valid names"):
        select_layers(base, "block7_conv1")
    with pytest.raises(TransferError, match="has 2"):
        select_layers(base, 3)
    assert select_layers(base, 2) == select_layers(base, "all")


def test_input_shape_that_the_base_cannot_take_is_refused():
    with pytest.raises(TransferError, match=r"Received: input_shape=\(32, 32, 3\)"):
        kzoo.transfer(_base(), head="GAP-FC3", input_shape=(32, 32, 3))


def test_bad_policies_are_refused():
    with pytest.raises(TransferError, match="bn must be one of"):
        kzoo.transfer(_base(), head="GAP-FC3", bn="update")
    with pytest.raises(TransferError, match="cache_features must be one of"):
        kzoo.transfer(_base(), head="GAP-FC3", cache_features="yes")


def test_zoo_base_keeps_its_preprocessing_and_mixed_precision_head_is_float32():
    clf = kzoo.transfer(
        "vgg19", head="GAP-FC4", weights=None, input_shape=(32, 32, 3), precision="mixed_bfloat16"
    )
    names = [la.name for la in clf.base.layers]
    assert "preprocessing" in names and names[-1] == "block5_pool"
    assert clf.base.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert all(la.compute_dtype == "float32" for la in clf.head.layers)
    assert clf.model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_a_zoo_name_with_a_tag_selects_those_weights(tmp_path, capsys):
    pytest.importorskip("tensorflow", reason="kzoo transfer reads folders with tf.data")
    from fault_server import FaultServer
    from test_zoo import served_source, tiny_manifest, write_source

    from kzoo.cli import main

    with FaultServer() as server:
        path, fmt, mode, _ = write_source("lasagne", tmp_path)
        manifest = tmp_path / "manifest.json"
        tiny = tiny_manifest({"lasagne": served_source(server, path, fmt, mode, pin=False)})
        manifest.write_text(json.dumps(tiny))
        clf = kzoo.transfer("tiny.lasagne", head="GAP-FC2", manifest=str(manifest))
        loaded = kzoo.load("tiny.lasagne", include_top=False, manifest=str(manifest))
        np.testing.assert_array_equal(
            clf.base.get_layer("block1_conv1").get_weights()[0],
            loaded.get_layer("block1_conv1").get_weights()[0],
        )
        data = _image_folder(tmp_path / "data", per_class=2)
        argv = ["transfer", "--base", "tiny.lasagne", "--manifest", str(manifest), "--data"]
        argv += [str(data), "--head", "GAP-FC{classes}", "--input-shape", "32x32x3", "--out"]
        argv += [str(tmp_path / "m.keras"), "--frozen-epochs", "1", "--fine-tune-epochs", "0"]
        argv += ["--validation-split", "0", "--quiet"]
        assert main(argv) == 0, capsys.readouterr().err
        assert server.count(f"/{path.name}") == 1


@pytest.mark.backend
def test_saved_model_reloads_with_identical_predictions(tmp_path):
    clf = _transfer(head="GAP-FC8+D0.5-FC3")
    x, y = _data()
    clf.fit(x, y, frozen_epochs=1, fine_tune_epochs=1, **QUIET)
    path = tmp_path / "model.keras"
    clf.model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), clf.model.predict(x, verbose=0))


def _image_folder(root, classes=("cat", "dog"), per_class=6, size=20):
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 100, size=(size, size, 3)).astype(np.uint8)
            pixels[..., index] += 150  # one dominant colour per class
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.backend
def test_cli_trains_saves_a_model_that_classify_accepts(tmp_path, capsys):
    pytest.importorskip("tensorflow", reason="kzoo transfer reads folders with tf.data")
    from kzoo.cli import main

    data = _image_folder(tmp_path / "data")
    base_path = tmp_path / "base.keras"
    _base().save(base_path)
    out = tmp_path / "out" / "pets.keras"
    argv = ["transfer", "--base", str(base_path), "--data", str(data), "--head", "GAP-FC{classes}"]
    argv += ["--input-shape", "16x16x3", "--frozen-epochs", "2", "--fine-tune-epochs", "1"]
    argv += ["--batch-size", "4", "--validation-split", "0.25", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 classes: cat, dog" in printed and "val_accuracy" in printed
    labels = out.with_suffix(".labels.txt")
    assert labels.read_text().split() == ["cat", "dog"]
    model = keras.saving.load_model(out)
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 2)
    image = next((data / "dog").iterdir())
    assert main(["classify", str(image), "--model", str(out), "--labels", str(labels)]) == 0
    assert "dog" in capsys.readouterr().out


def test_cli_reports_bad_requests_without_a_traceback(tmp_path, capsys):
    from kzoo.cli import main

    data = _image_folder(tmp_path / "data", per_class=2)
    out = str(tmp_path / "m.keras")
    assert main(["transfer", "--data", str(data), "--out", out, "--input-shape", "16x16"]) == 1
    assert "error: --input-shape must look like 160x160x3" in capsys.readouterr().err
    assert main(["transfer", "--data", str(tmp_path / "none"), "--out", out]) == 1
    assert "error: --data must be a folder" in capsys.readouterr().err
    if importlib.util.find_spec("tensorflow") is None:
        assert main(["transfer", "--data", str(data), "--out", out]) == 1
        assert "needs TensorFlow" in capsys.readouterr().err
        return
    base_path = tmp_path / "base.keras"
    _base().save(base_path)
    argv = ["transfer", "--base", str(base_path), "--data", str(data), "--head", "GAP-FC5"]
    argv += ["--input-shape", "16x16x3", "--validation-split", "0", "--out", out, "--quiet"]
    assert main(argv) == 1
    assert "the head has 5 outputs but" in capsys.readouterr().err


class _NamedBatches(keras.utils.PyDataset):
    """Two batches, with the class names a directory dataset carries."""

    def __init__(self, class_names):
        super().__init__()
        self.x, self.y = _data(16)
        self.class_names = class_names

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return self.x[8 * index : 8 * index + 8], self.y[8 * index : 8 * index + 8]


def test_the_class_names_of_the_training_data_go_into_an_export(monkeypatch):
    from kzoo.transfer_learning import training

    clf = _transfer()
    clf.fit_frozen(_NamedBatches(["daisy", "rose"]), epochs=1, verbose=0, diagnostics=False)
    assert clf.class_names is None  # two names for three outputs: not these data's classes
    clf.fit_frozen(_NamedBatches(["a", "b", "c"]), epochs=1, verbose=0, diagnostics=False)
    assert clf.class_names == ["a", "b", "c"]
    exported = {}
    monkeypatch.setattr(training, "export", lambda *a, **k: exported.update(k))
    clf.export("m.onnx")
    assert exported["class_names"] == ["a", "b", "c"]
    clf.export("m.onnx", class_names=["x", "y", "z"])  # the caller's names win
    assert exported["class_names"] == ["x", "y", "z"]
