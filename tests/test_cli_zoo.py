"""``kzoo models``, ``kzoo weights ...`` and ``kzoo classify`` through ``kzoo.cli.main``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fault_server import FaultServer
from PIL import Image
from test_zoo import served_source, tiny_manifest, write_source

import kzoo
from kzoo.cli import hint_line, main


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_models_lists_names_and_pretrained_tags(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert out.split() == [
        "inception_v3", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
        "resnet50_v2", "vgg16", "vgg19", "vgg19_bn",
    ]  # fmt: skip
    code, out, _ = run(capsys, "models", "vgg19*", "--pretrained")
    assert out.split() == [
        "vgg19.caffe",
        "vgg19.imagenet",
        "vgg19.lasagne",
        "vgg19.tv_in1k",
        "vgg19_bn.tv_in1k",
    ]
    code, out, _ = run(capsys, "models", "--pretrained", "-l", "vgg19")
    assert "import-only" in next(line for line in out.splitlines() if "lasagne" in line)


def test_models_with_no_match_fails(capsys):
    code, _, err = run(capsys, "models", "densenet*")
    assert code == 1
    assert "densenet*" in err


def test_models_does_not_import_keras_or_numpy():
    check = (
        "import sys\n"
        "from kzoo.cli import main\n"
        "assert main(['models']) == 0\n"
        "heavy = sorted(m for m in ('keras', 'numpy', 'requests') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "vgg19" in result.stdout.split()


def test_import_installs_a_file_that_load_then_uses_offline(capsys, tmp_path, monkeypatch):
    path, *_ = write_source("lasagne", tmp_path)
    source = {
        "format": "lasagne",
        "preprocessing": "caffe",
        "classes": "embedded",
        "import_only": "not redistributable",
        "files": {"top": {"urls": []}},
    }
    manifest = write_manifest(tmp_path, tiny_manifest({"lasagne": source}))
    with pytest.raises(kzoo.DownloadError, match="cannot be downloaded") as error:
        kzoo.load("tiny", manifest=manifest)
    (hint,) = error.value.hints
    assert "kzoo.zoo.import_weights('tiny.lasagne', FILE)" in str(error.value)
    assert hint_line(hint).endswith("kzoo weights import tiny lasagne FILE")

    code, out, err = run(
        capsys, "weights", "import", "tiny", "lasagne", path, "--manifest", manifest
    )
    assert code == 0, err
    assert "use it as tiny.lasagne: --model tiny.lasagne" in err
    installed = Path(out.strip())
    assert installed.read_bytes() == path.read_bytes()
    assert installed.with_name(installed.name + ".sha256").exists()  # unpinned: recorded
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    model = kzoo.load("tiny.lasagne", manifest=manifest)
    assert model.get_layer("predictions").get_weights()[0].shape == (32, 10)
    ((top,),) = kzoo.decode_predictions(
        np.eye(10)[[2]], top=1, weights="tiny.lasagne", manifest=manifest
    )
    assert top[:2] == ("n00000002", "class 2, synthetic")


def test_import_rejects_a_file_that_does_not_match_the_pin(capsys, tmp_path, kzoo_home):
    path, fmt, mode, _ = write_source("keras_h5", tmp_path)
    md5 = hashlib.md5(b"something else").hexdigest()
    source = {
        "format": fmt,
        "preprocessing": mode,
        "files": {"top": {"urls": ["https://example.invalid/w.h5"], "md5": md5}},
    }
    manifest = write_manifest(tmp_path, tiny_manifest({"k": source}))
    code, _, err = run(capsys, "weights", "import", "tiny.k", path, "--manifest", manifest)
    assert code == 1
    assert err.startswith("error:") and md5 in err
    assert not list(kzoo_home.rglob("*.h5"))  # nothing installed


def test_fetch_path_verify_list_and_purge(capsys, server, tmp_path, kzoo_home):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = write_manifest(
        tmp_path, tiny_manifest({"c": served_source(server, path, fmt, mode, pin=False)})
    )
    code, expected, _ = run(capsys, "weights", "path", "tiny", "--manifest", manifest)
    assert code == 0
    assert not Path(expected.strip()).exists()
    assert Path(expected.strip()).is_relative_to(kzoo_home)

    code, out, _ = run(
        capsys, "weights", "fetch", "tiny.c", "--no-progress", "--manifest", manifest
    )
    assert code == 0
    assert out.strip() == expected.strip()
    assert server.count(f"/{path.name}") == 1
    code, out, _ = run(capsys, "weights", "list", "tiny", "--manifest", manifest)
    assert expected.strip() in out

    code, out, _ = run(capsys, "weights", "verify", "tiny", "--manifest", manifest)
    assert code == 0 and out.startswith("ok")
    cached = Path(expected.strip())
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    cached.write_bytes(bytes(data))
    code, out, _ = run(capsys, "weights", "verify", "tiny", "--manifest", manifest)
    assert code == 1 and "FAILED" in out

    code, out, _ = run(capsys, "weights", "purge", "tiny", "--manifest", manifest)
    assert code == 0 and "pass --yes" in out and cached.exists()
    code, out, _ = run(capsys, "weights", "purge", "tiny", "--yes", "--manifest", manifest)
    assert code == 0 and not cached.exists()


def _class_index(server: FaultServer) -> dict:
    index = {str(i): [f"n{i:08d}", f"thing_{i}"] for i in range(10)}
    payload = json.dumps(index).encode()
    url = server.add("/index.json", payload)
    return {
        "ten": {
            "format": "keras_class_index",
            "urls": [url],
            "size": len(payload),
            "md5": hashlib.md5(payload).hexdigest(),
        }
    }


def _expected_top5(model, image_path: Path) -> list[str]:
    with Image.open(image_path) as image:
        rgb = image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    scores = model.predict(np.asarray(rgb, dtype=np.float32)[None], verbose=0)[0]
    return [f"thing_{i}" for i in np.argsort(-scores, kind="stable")[:5]]


def test_classify_prints_top5_class_names_for_png_and_jpeg(capsys, server, tmp_path):
    path, fmt, mode, _ = write_source("keras_h5", tmp_path)
    source = served_source(server, path, fmt, mode)
    source["classes"] = "ten"
    manifest = write_manifest(tmp_path, tiny_manifest({"k": source}, classes=_class_index(server)))
    pixels = np.random.default_rng(3).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    png, jpeg = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(pixels).save(png)
    Image.fromarray(pixels[::-1]).save(jpeg, quality=90)

    code, out, err = run(
        capsys, "classify", png, jpeg, "--model", "tiny", "--weights", "k", "--manifest", manifest
    )
    assert code == 0, err
    model = kzoo.load("tiny.k", manifest=manifest)
    lines = out.splitlines()
    for image_path in (png, jpeg):
        start = lines.index(str(image_path))
        rows = lines[start + 1 : start + 6]
        assert [row.split()[2] for row in rows] == _expected_top5(model, image_path)
        assert rows[0].split()[1].startswith("n0000000")


def test_classify_accepts_a_saved_keras_model_with_labels(capsys, server, tmp_path):
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"c": served_source(server, path, fmt, mode, pin=False)})
    saved = tmp_path / "tiny.keras"
    kzoo.load("tiny", manifest=manifest).save(saved)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"label{i}\n" for i in range(10)))
    image = tmp_path / "c.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(image)
    code, out, err = run(
        capsys, "classify", image, "--model", saved, "--labels", labels, "--top", "3"
    )
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert len(rows) == 3 and all(row.split()[1].startswith("label") for row in rows)


def test_classify_unreadable_image_is_a_clean_error(capsys, tmp_path):
    bogus = tmp_path / "x.png"
    bogus.write_bytes(b"not an image")
    labels = tmp_path / "l.txt"
    labels.write_text("a\n")
    import keras

    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.save(tmp_path / "m.keras")
    code, _, err = run(
        capsys, "classify", bogus, "--model", tmp_path / "m.keras", "--labels", labels
    )
    assert code == 1
    assert "cannot read image" in err
