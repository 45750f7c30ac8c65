"""The frozen phase's feature cache: its depth, its memory budget, and features kept on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import kzoo
from kzoo.cli import main
from kzoo.errors import TransferError
from kzoo.transfer_learning import feature_cache, list_feature_caches, prune_feature_caches
from kzoo.transfer_learning.feature_cache import split_head
from kzoo.transfer_learning.feature_store import ArrayWriter, FeatureSink, read_entry

SHAPE = (16, 16, 3)
QUIET = {"verbose": 0, "diagnostics": False, "batch_size": 16}


def _base(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return kzoo.build("8C3+BN-MP2-8C3-MP2-FC10", input_shape=SHAPE, name="tiny")


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.uniform(0, 120, size=(n, *SHAPE))
    x[np.arange(n), :, :, y] += 120
    return (x / 255).astype("float32"), y.astype("int32")


def _trained_head(base: keras.Model, x, y, head: str = "GAP-FC8-FC3", **options) -> list:
    clf = kzoo.transfer(base, head=head)
    keras.utils.set_random_seed(1)
    fit = {k: options.pop(k) for k in ("cache_features", "validation_data") if k in options}
    clf.feature_memory = options.pop("feature_memory", None)
    clf.fit_frozen(x, y, epochs=2, **fit, **QUIET, **options)
    return [keras.ops.convert_to_numpy(w) for w in clf.head.weights]


class _CountExtractions:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        real = feature_cache.extract

        def counting(model, x, *args, **kwargs):
            cached = real(model, x, *args, **kwargs)
            self.rows.append(len(cached))
            return cached

        monkeypatch.setattr(feature_cache, "extract", counting)


# -- depth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "prefix", "trained"),
    [
        ("GAP-FC8-FC3", ["GlobalAveragePooling2D"], ["head_fc1", "head_predictions"]),
        ("MP2-GMP-FC3", ["MaxPooling2D", "GlobalMaxPooling2D"], ["head_predictions"]),
        ("FC3", ["Flatten"], ["head_predictions"]),
        ("8C1-GAP-FC3", [], None),  # a conv first: nothing to run ahead
        ("D0.5-GAP-FC3", [], None),  # dropout draws random numbers
    ],
)
def test_the_cache_goes_through_the_heads_leading_layers_without_weights(head, prefix, trained):
    clf = kzoo.transfer(_base(), head=head)
    layers, rest = split_head(clf.head)
    assert [type(layer).__name__ for layer in layers] == prefix
    if trained is None:
        assert rest is clf.head
        return
    assert [la.name for la in rest.layers[1:]] == trained
    assert all(
        a is b for a, b in zip(rest.layers[1:], clf.head.layers[-len(trained) :], strict=True)
    )


def test_a_gap_head_caches_channels_per_image_and_trains_as_without_cache():
    x, y = _data()
    cached = _trained_head(_base(), x, y, cache_features="disk", shuffle=False)
    entry = list_feature_caches()[0]
    assert entry.rows == len(x)
    assert read_entry(entry.key).features.shape == (len(x), 8)  # 8 channels, not 4x4x8
    plain = _trained_head(_base(), x, y, cache_features=False, shuffle=False)
    for a, b in zip(cached, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- memory budget ----------------------------------------------------------------------------


@pytest.mark.backend
def test_features_past_the_budget_spill_to_disk_and_train_the_same_head(tmp_path, monkeypatch):
    x, y = _data(n=64)
    spill = tmp_path / "spill"
    monkeypatch.setattr(feature_cache, "features_root", lambda: spill)
    in_memory = _trained_head(_base(), x, y, validation_data=(x[:16], y[:16]))
    sinks: list[FeatureSink] = []
    real_writer = FeatureSink.writer

    def recording(self, *args, **kwargs):
        sinks.append(self)
        return real_writer(self, *args, **kwargs)

    monkeypatch.setattr(FeatureSink, "writer", recording)
    spilled = _trained_head(
        _base(), x, y, validation_data=(x[:16], y[:16]), feature_memory=0
    )  # fmt: skip
    assert sinks and all(s.budget == 0 for s in sinks)
    for a, b in zip(in_memory, spilled, strict=True):
        np.testing.assert_array_equal(a, b)  # the same updates, bit for bit
    assert not any(spill.rglob("*.bin"))  # spill files are gone once mapped


def test_a_spill_folder_that_cannot_be_written_says_what_to_do(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    sink = FeatureSink(budget=0, spill_folder=blocked / "spill")
    with pytest.raises(TransferError, match="KZOO_HOME to a writable folder, or raise feature"):
        sink.writer("features", (8,), "float32", 100)


def test_array_writer_keeps_rows_in_ram_or_a_file_and_drops_an_unused_tail(tmp_path):
    rows = np.arange(30, dtype="float32").reshape(10, 3)
    in_ram = ArrayWriter((3,), "float32", 12)
    on_disk = ArrayWriter((3,), "float32", 12, tmp_path / "f.bin")
    growing = ArrayWriter((3,), "float32", None, tmp_path / "g.bin")
    for writer in (in_ram, on_disk, growing):
        writer.append(rows[:4])
        writer.append(rows[4:])
    np.testing.assert_array_equal(in_ram.finish(), rows)
    for writer, name in ((on_disk, "f.bin"), (growing, "g.bin")):
        result = writer.finish()
        assert isinstance(result, np.memmap)
        np.testing.assert_array_equal(result, rows)
        assert (tmp_path / name).stat().st_size == rows.nbytes
    too_many = ArrayWriter((3,), "float32", 2)
    with pytest.raises(TransferError, match="more than the 2 rows"):
        too_many.append(rows[:3])
    with pytest.raises(TransferError, match=r"rows of shape \(2,\)"):
        in_ram.append(np.zeros((1, 2)))


# -- kept on disk -----------------------------------------------------------------------------


def test_a_second_disk_cached_run_skips_the_base_and_trains_the_same_head(monkeypatch):
    x, y = _data()
    counter = _CountExtractions(monkeypatch)
    first = _trained_head(_base(), x, y, cache_features="disk", validation_data=(x, y))
    assert counter.rows == [48, 48]  # train and validation
    second = _trained_head(_base(), x, y, cache_features="disk", validation_data=(x, y))
    assert counter.rows == [48, 48]  # nothing computed again
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(list_feature_caches()) == 2


def test_a_changed_image_weight_or_cut_is_a_miss(monkeypatch):
    x, y = _data()
    counter = _CountExtractions(monkeypatch)
    _trained_head(_base(), x, y, cache_features="disk")
    changed = x.copy()
    changed[7, 3, 3, 0] += 0.01
    _trained_head(_base(), changed, y, cache_features="disk")
    _trained_head(_base(seed=5), x, y, cache_features="disk")  # other weights
    clf = kzoo.transfer(_base(), head="GAP-FC3", cut="block1_pool")
    clf.fit_frozen(x, y, epochs=1, cache_features="disk", **QUIET)
    assert len(counter.rows) == 4
    assert len(list_feature_caches()) == 4
    _trained_head(_base(), x, y, cache_features="disk")
    assert len(counter.rows) == 4  # the first one still hits


@pytest.mark.backend
def test_a_folder_dataset_is_keyed_by_its_files_and_a_changed_file_is_a_miss(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    from PIL import Image

    x, y = _data(n=24)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = tmp_path / "data" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype("uint8")).save(folder / f"{i}.png")

    def dataset():
        return keras.utils.image_dataset_from_directory(
            tmp_path / "data", image_size=SHAPE[:2], batch_size=8, shuffle=False, verbose=False
        )

    counter = _CountExtractions(monkeypatch)
    for _ in range(2):
        clf = kzoo.transfer(_base(), head="GAP-FC3")
        clf.fit_frozen(dataset(), epochs=1, cache_features="disk", verbose=0, diagnostics=False)
    assert counter.rows == [24]
    victim = next((tmp_path / "data").rglob("*.png"))
    Image.fromarray(np.zeros((16, 16, 3), "uint8")).save(victim)
    clf.fit_frozen(dataset(), epochs=1, cache_features="disk", verbose=0, diagnostics=False)
    assert counter.rows == [24, 24]


def test_disk_caching_refuses_augmented_inputs():
    clf = kzoo.transfer(_base(), head="GAP-FC3", augmentation=[keras.layers.RandomFlip()])
    x, y = _data(n=16)
    with pytest.raises(TransferError, match="Received: cache_features='disk'"):
        clf.fit_frozen(x, y, epochs=1, cache_features="disk", **QUIET)
    assert list_feature_caches() == []


def test_a_damaged_entry_is_computed_again(monkeypatch):
    x, y = _data()
    counter = _CountExtractions(monkeypatch)
    _trained_head(_base(), x, y, cache_features="disk")
    entry = list_feature_caches()[0]
    with open(entry.path / "features.bin", "rb+") as fh:
        fh.truncate(100)
    _trained_head(_base(), x, y, cache_features="disk")
    assert len(counter.rows) == 2


def test_kzoo_cache_lists_and_prunes_kept_features(kzoo_home, capsys):
    x, y = _data()
    _trained_head(_base(), x, y, cache_features="disk")
    abandoned = kzoo_home / "features" / ".tmp-0123-999999999-abcd1234"
    abandoned.mkdir()
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "48" in out and "1 entries" in out and "train" in out
    assert main(["cache", "prune"]) == 0  # a dry run
    assert "would remove" in capsys.readouterr().out
    assert len(list_feature_caches()) == 1 and abandoned.exists()
    assert main(["cache", "prune", "--older-than", "1", "--yes"]) == 0
    assert "removed 0 entries" in capsys.readouterr().out and not abandoned.exists()
    assert main(["cache", "prune", "--yes"]) == 0
    assert list_feature_caches() == [] and prune_feature_caches() == []


def test_kzoo_cache_list_does_not_import_keras(kzoo_home):
    code = (
        "import sys; from kzoo.cli import main; main(['cache', 'list']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'jax')))"
    )
    env = {**os.environ, "KZOO_HOME": str(kzoo_home)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip().endswith("[]")


# -- peak memory ------------------------------------------------------------------------------

_MEMORY_SCRIPT = """
import json, re, sys, tracemalloc
import numpy as np, keras, kzoo

def status(key):  # kB in /proc/self/status
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))

n = int(sys.argv[1])
keras.utils.set_random_seed(0)
base = kzoo.build("512C1-FC3", input_shape=(7, 7, 3), name="wide")  # 7x7x512 features
clf = kzoo.transfer(base, head="GAP-FC3")
rng = np.random.default_rng(0)
x, y = rng.uniform(0, 1, (n, 7, 7, 3)).astype("float32"), rng.integers(0, 3, n)
with open("/proc/self/clear_refs", "w") as f:  # the peak so far (imports, build) is forgotten
    f.write("5")
before = status("VmRSS")
tracemalloc.start()  # numpy's arrays, the cache's own included, are traced
clf.fit_frozen(x, y, epochs=2, batch_size=256, verbose=0, diagnostics=False, cache_features=True)
traced = tracemalloc.get_traced_memory()[1]
print("RESULT " + json.dumps({"rss": (status("VmHWM") - before) * 1024, "traced": traced}))
"""


def _growth(images: int) -> dict:
    """How far the frozen phase's peak rises over its start, in bytes: ``"rss"``, the
    process's resident set; ``"traced"``, what Python and numpy allocated."""
    # one thread and two malloc arenas: TensorFlow's peak then depends on the work, not on how
    # many threads happened to allocate at once (a spread of 150 MiB between runs otherwise)
    quiet = {"MALLOC_ARENA_MAX": "2", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_MEMORY_SCRIPT), str(images)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow", **quiet},
    )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    return json.loads(lines[-1][7:])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's VmHWM")
def test_peak_memory_of_the_frozen_phase_grows_with_the_pooled_features_only():
    # Twice the images: the peak rises by one more copy of the pooled features (2 KiB an
    # image), not by the 98 KiB of unpooled 7x7x512 features nor by a second pooled copy (a
    # list then a concatenate). Keras's own overhead is the same at both sizes and cancels.
    # numpy's allocations (traced) are exact to a few MiB; the resident set also holds
    # TensorFlow's allocator, whose peak moves by up to 80 MiB from run to run, so it gets a
    # bound that only the unpooled features would break.
    images = 20000
    small, large = _growth(images), _growth(2 * images)
    pooled, unpooled = images * 512 * 4, images * 7 * 7 * 512 * 4
    traced, rss = large["traced"] - small["traced"], large["rss"] - small["rss"]
    assert 0.8 * pooled <= traced <= 1.2 * pooled, (traced / 2**20, pooled / 2**20)
    assert rss <= unpooled / 10, (rss / 2**20, unpooled / 2**20)
