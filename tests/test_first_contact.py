"""What a new user meets in the first hour: no network, no backend, bad files, the README's steps.

The stalls are tested end to end through the command line in a subprocess, with a stopwatch:
an unresolvable host (the reserved ``.invalid`` domain), a refused loopback port, a dead mirror
in front of a live one. Bad input (a pickle bomb, a pickle that runs code, NaN and integer
weights) must end in its typed error and leave nothing in the cache.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from fault_server import FaultServer, dead_url
from PIL import Image
from test_zoo import served_source, tiny_manifest, write_source

import kzoo
from kzoo import synthetic
from kzoo.cli import main
from kzoo.errors import ConversionError, DownloadError, UnsafePickleError
from kzoo.synthetic import writers

ROOT = Path(__file__).resolve().parents[1]
UNRESOLVABLE = "https://weights.kzoo.invalid/tiny.h5"  # RFC 2606: never resolves


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


def kzoo_cli(
    *args: object, env: dict | None = None, timeout: float = 120
) -> tuple[int, str, float]:
    """Run ``python -m kzoo ARGS`` in a fresh process; ``(status, stderr + stdout, seconds)``."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kzoo", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return result.returncode, result.stderr + result.stdout, time.monotonic() - start


def manifest_with_urls(tmp_path: Path, urls: list[str], size: int | None = 1234) -> Path:
    source = {"format": "keras_h5", "preprocessing": "caffe", "files": {"top": {"urls": urls}}}
    if size is not None:
        source["files"]["top"]["size"] = size
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(tiny_manifest({"web": source})))
    return path


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- 1, 2: no network, dead mirrors --------------------------------------------------------


@pytest.mark.parametrize("where", ["unresolvable host", "refused port"])
def test_an_unreachable_source_fails_at_once_with_one_line_and_the_fixes(where, tmp_path):
    url = UNRESOLVABLE if where == "unresolvable host" else dead_url("/tiny.h5")
    manifest = manifest_with_urls(tmp_path, [url])
    home = tmp_path / "home"
    status, output, seconds = kzoo_cli(
        "weights", "fetch", "tiny", "--manifest", manifest, env={"KZOO_HOME": str(home)}
    )
    assert status == 1 and seconds < 3, (seconds, output)
    assert sum(url in line for line in output.splitlines()) == 1
    for fix in ("KZOO_OFFLINE=1", "kzoo weights import tiny web FILE", "KZOO_MANIFEST"):
        assert fix in output, output
    reason = "cannot resolve the host name" if where == "unresolvable host" else "refused"
    assert reason in output
    assert files_in(home) == []  # no lock file, no empty folders


def test_a_dead_mirror_costs_no_wait_before_the_next_one(server, tmp_path):
    path, fmt, mode, _ = write_source("keras_h5", tmp_path)
    live = served_source(server, path, fmt, mode)
    live["files"]["top"]["urls"].insert(0, dead_url(f"/{path.name}"))
    manifest = tmp_path / "mirrors.json"
    manifest.write_text(json.dumps(tiny_manifest({"src": live})))
    env = {"KZOO_HOME": str(tmp_path / "home")}
    status, output, with_dead = kzoo_cli(
        "weights", "fetch", "tiny", "--manifest", manifest, env=env
    )
    assert status == 0, output
    assert "trying the next mirror" in output and server.count(f"/{path.name}") == 1
    env = {"KZOO_HOME": str(tmp_path / "home2")}
    live["files"]["top"]["urls"].pop(0)
    manifest.write_text(json.dumps(tiny_manifest({"src": live})))
    _, _, without = kzoo_cli("weights", "fetch", "tiny", "--manifest", manifest, env=env)
    assert with_dead - without < 2, (with_dead, without)


def test_a_lookup_failure_is_not_retried_but_a_server_error_is(server, tmp_path, monkeypatch):
    from kzoo.download import stream

    waits: list[float] = []
    monkeypatch.setattr(stream, "_sleep", waits.append)
    with pytest.raises(DownloadError, match="cannot resolve"):
        kzoo.download.fetch([UNRESOLVABLE], tmp_path / "a.bin", progress=False, hashes={})
    assert waits == []
    from fault_server import Fault

    url = server.add("/flaky.bin", b"payload", Fault("status", status=503))
    kzoo.download.fetch([url], tmp_path / "b.bin", progress=False, backoff=0.01)
    assert len(waits) == 1 and server.count("/flaky.bin") == 2


# --- 3: no backend --------------------------------------------------------------------------


def _without_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    pytest.skip("needs a machine without torch, to stand for a missing backend")


def test_no_backend_is_one_typed_error_naming_the_extra_before_any_download(server, tmp_path):
    _without_torch()
    path, fmt, mode, _ = write_source("keras_h5", tmp_path)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(tiny_manifest({"src": served_source(server, path, fmt, mode)})))
    code = (
        "import sys, kzoo\n"
        "try:\n"
        "    kzoo.load('tiny', manifest=sys.argv[1])\n"
        "except kzoo.BackendError as error:\n"
        "    print('BackendError:', error)\n"
        "try:\n"
        "    kzoo.build('lenet')\n"
        "except kzoo.BackendError as error:\n"
        "    print('BackendError:', error)\n"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, str(manifest)], capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "torch", "KZOO_HOME": str(tmp_path / "home")},
        timeout=120, check=False,
    )  # fmt: skip
    assert time.monotonic() - start < 3
    lines = [line for line in result.stdout.splitlines() if line.startswith("BackendError:")]
    assert len(lines) == 2, result.stdout + result.stderr
    assert 'pip install "kzoo[torch]"' in result.stdout and "KERAS_BACKEND" in result.stdout
    assert server.hits() == [] and files_in(tmp_path / "home") == []
    status, output, seconds = kzoo_cli("build", "lenet", env={"KERAS_BACKEND": "torch"})
    assert status == 1 and seconds < 3 and 'pip install "kzoo[torch]"' in output
    assert "Traceback" not in output


def test_the_backend_comes_from_keras_json_when_keras_backend_is_unset(tmp_path, monkeypatch):
    from kzoo.backend import configured_backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert configured_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert configured_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert configured_backend() == "torch"


# --- 4: inputs checked first ------------------------------------------------------------------


def test_classify_reports_a_missing_image_before_touching_weights(server, tmp_path):
    manifest = manifest_with_urls(tmp_path, [server.add("/w.h5", b"x" * 1234)])
    status, output, seconds = kzoo_cli(
        "classify", tmp_path / "cat.jpg", "--model", "tiny", "--manifest", manifest,
        env={"KZOO_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert status == 1 and seconds < 3 and "no such file" in output and "cat.jpg" in output
    assert server.hits() == []
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    status, output, _ = kzoo_cli(
        "classify", not_an_image, "--model", "tiny", "--manifest", manifest
    )
    assert status == 1 and "cannot read image" in output and server.hits() == []


def test_every_command_checks_its_files_before_doing_work(capsys, tmp_path):
    missing = tmp_path / "missing.keras"
    for argv in (
        ["plot", "kernels", missing],
        ["plot", "saliency", missing, missing],
        ["plot", "history", tmp_path / "h.json"],
        ["export", missing, "--out", tmp_path / "o"],
        ["weights", "import", "vgg19", "lasagne", tmp_path / "vgg19.pkl"],
        ["classify", tmp_path / "a.png", "--labels", tmp_path / "labels.txt"],
    ):
        assert main([str(a) for a in argv]) == 1, argv
        assert "no such" in capsys.readouterr().err


def test_commands_that_load_zoo_weights_fetch_them_before_importing_keras(tmp_path):
    """Offline, classify, stylize and transfer fail on the weights in about a second."""
    manifest = str(manifest_with_urls(tmp_path, [UNRESOLVABLE]))
    photo = tmp_path / "real.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    (tmp_path / "flowers" / "rose").mkdir(parents=True)
    real, home = str(photo), tmp_path / "home"
    cases = [
        ["classify", real, "--model", "tiny.web"],
        ["stylize", real, real, "--model", "tiny.web", "--out", str(tmp_path / "s.png")],
        ["transfer", "--data", str(tmp_path / "flowers"), "--base", "tiny.web", "--out", "m.keras"],
    ]
    code = (
        "import sys, time\n"
        "from kzoo.cli import main\n"
        f"for argv in {[[*argv, '--manifest', manifest] for argv in cases]!r}:\n"
        "    start = time.monotonic()\n"
        "    status = main(argv)\n"
        "    print('exit', status, f'{time.monotonic() - start:.2f}', file=sys.stderr)\n"
        "print('keras imported:', 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "KZOO_HOME": str(home)},
    )  # fmt: skip
    assert "keras imported: False" in result.stdout, result.stderr
    reports = re.split(r"exit (\d) ([\d.]+)\n", result.stderr)
    for i, argv in enumerate(cases):
        report, status, seconds = reports[3 * i : 3 * i + 3]
        assert status == "1" and float(seconds) < 2, (argv, report, seconds)
        assert "cannot resolve the host name" in report, (argv, report)
        assert "kzoo weights import tiny web FILE" in report, (argv, report)
    assert files_in(home) == []


def test_bad_names_images_models_and_strings_fail_before_keras_is_imported(tmp_path):
    """Each refusal comes from the checks that run before a handler imports Keras."""
    not_an_image = tmp_path / "photo.jpg"
    not_an_image.write_text("not an image")
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("not a zip")
    folder = tmp_path / "flowers" / "rose"
    folder.mkdir(parents=True)
    photo = tmp_path / "real.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    bad, real, model = str(not_an_image), str(photo), str(not_a_model)
    cases = [
        (["build", "64C3-XX2", "--input-shape", "32x32x3"], "unknown layer token 'XX2'"),
        (["build", "64C3-MP2x9", "--input-shape", "32x32x3"], "reduces 1x1 to 0x0"),
        (["classify", real, "--model", "vgg91"], "did you mean 'vgg19'"),
        (["classify", real, "--weights", "cafe"], "did you mean 'caffe'"),
        (["stylize", bad, real, "--out", "s.png"], "cannot read image"),
        (["stylize", real, real, "--model", "vgg19.lasgne", "--out", "s.png"], "'lasagne'"),
        (
            ["transfer", "--data", str(folder.parent), "--out", "m.keras", "--base", "nosuchnet"],
            "unknown model 'nosuchnet'",
        ),
        (["export", model, "--out", str(tmp_path / "m.onnx")], "not a zip archive"),
        (["plot", "kernels", model], "not a zip archive"),
        (["plot", "features", model, real], "not a zip archive"),
    ]
    code = (
        "import sys\n"
        "from kzoo.cli import main\n"
        f"for argv in {[argv for argv, _ in cases]!r}:\n"
        "    print('exit', main(argv), file=sys.stderr)\n"
        "print('keras imported:', 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    reports = result.stderr.split("exit 1\n")
    assert len(reports) == len(cases) + 1, result.stderr
    for (argv, expected), report in zip(cases, reports, strict=False):
        assert report.startswith("error: ") and expected in report, (argv, report)
    assert "keras imported: False" in result.stdout


def test_a_file_that_is_not_an_image_is_one_typed_error_in_the_library(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8 a truncated jpeg")
    with pytest.raises(kzoo.ImageError, match=f"cannot read image {bad}"):
        kzoo.stylize(bad, bad, steps=1)
    lenet = kzoo.build("28x28x1:4C5-MP2-FC10")
    with pytest.raises(kzoo.ImageError, match="Give a PNG, JPEG"):
        kzoo.plots.plot_occlusion(lenet, bad, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_a_named_architecture_is_pointed_at_build_not_load():
    with pytest.raises(kzoo.UnknownNameError) as error:
        kzoo.load("lenet")
    assert "kzoo.build('lenet')" in str(error.value)
    assert "list_architectures" in str(error.value)


# --- 5: plots inside nested models -------------------------------------------------------------


def _saved_transfer_model(tmp_path: Path) -> Path:
    base = kzoo.build("16x16x3:4C3x2-MP2-8C3-MP2-FC10", name="vgg_like")
    clf = kzoo.transfer(base, head="GAP-FC3", cache_features=False)
    path = tmp_path / "flowers.keras"
    clf.model.save(path)
    return path


def test_the_readme_plot_steps_work_on_a_transfer_model(capsys, tmp_path):
    model = _saved_transfer_model(tmp_path)
    assert main(["plot", "kernels", str(model), "--out", str(tmp_path / "k.png")]) == 0
    out = tmp_path / "k2.png"
    assert main(["plot", "kernels", str(model), "--layer", "block2_conv1", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    saliency = tmp_path / "s.png"
    args = ["plot", "saliency", str(model), str(tmp_path / "image.npy"), "--out", str(saliency)]
    assert main(args) == 0 and saliency.stat().st_size > 0


def test_kernels_of_a_nested_base_are_its_first_conv(tmp_path):
    from kzoo.plots.figures import _first_conv

    model = keras.saving.load_model(_saved_transfer_model(tmp_path))
    assert _first_conv(model, None).name == "block1_conv1"
    assert _first_conv(model, "vgg_like_base/block2_conv1").name == "block2_conv1"
    with pytest.raises(kzoo.UnknownNameError, match="did you mean 'block2_conv1'"):
        _first_conv(model, "block2_conv9")


# --- 6, 7, 9: training: the dataset's order, stops that speak, no warnings -----------------------


def _tiny_transfer(seed: int = 0) -> kzoo.Transfer:
    keras.utils.set_random_seed(seed)
    base = kzoo.build("8x8x3:4C3-MP2-FC10", name="tiny_base")
    return kzoo.transfer(base, head="GAP-FC3", learning_rate=0.01)


@pytest.mark.backend
def test_cached_and_uncached_frozen_phases_see_a_dataset_in_its_own_order():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data input belongs to the TensorFlow backend")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    heads = []
    for cache in (True, False):
        clf = _tiny_transfer()
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        clf.fit_frozen(data, epochs=3, cache_features=cache, verbose=0, diagnostics=False)
        heads.append([w.copy() for w in clf.head.get_weights()])
    for cached, plain in zip(*heads, strict=True):
        np.testing.assert_allclose(cached, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.backend
def test_a_diagnostics_stop_is_in_the_history_and_skips_fine_tuning(caplog):
    clf = _tiny_transfer()
    x = np.full((32, 8, 8, 3), 3e38, np.float32)  # sums overflow: the loss is NaN at once
    y = np.arange(32) % 3
    history = clf.fit(x, y, frozen_epochs=3, fine_tune_epochs=2, verbose=0, batch_size=8)
    stop = history.stopped
    assert stop is not None and stop.phase == "frozen" and stop.reason == "nan_loss"
    assert (
        stop.by_diagnostics and "NaN" in stop.message and str(stop).startswith("training stopped")
    )
    assert history.phase_boundary is None and set(history.phases) == {"frozen"}
    assert "Fine-tuning skipped" in caplog.text


def test_the_transfer_command_says_which_phase_stopped_and_exits_1(capsys, tmp_path):
    data = tmp_path / "data"
    for index, name in enumerate(("red", "green")):
        (data / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.full((8, 8, 3), 40, np.uint8)
            pixels[..., index] = 200 + i
            Image.fromarray(pixels).save(data / name / f"{i}.png")
    base = tmp_path / "base.keras"
    kzoo.build("8x8x3:4C3-MP2-FC10").save(base)
    out = tmp_path / "t.keras"
    status = main([
        "transfer", "--base", str(base), "--data", str(data), "--out", str(out),
        "--input-shape", "8x8x3", "--learning-rate", "1e30", "--frozen-epochs", "2",
        "--fine-tune-epochs", "1", "--batch-size", "4", "--validation-split", "0", "--quiet",
    ])  # fmt: skip
    err = capsys.readouterr()
    assert status == 1
    assert "training stopped in the frozen phase at epoch 1" in err.err and "NaN" in err.err
    assert "nothing saved" in err.err and not out.exists()
    assert "head GAP-FC256+D0.5-FC2" in err.out  # filled in, not 'FC{classes}'


@pytest.mark.backend
def test_a_chance_level_stop_on_the_last_frozen_epoch_still_skips_fine_tuning():
    clf = _tiny_transfer()
    x = np.zeros((48, 8, 8, 3), np.float32)  # one image, three labels: exactly chance
    y = np.arange(48) % 3
    history = clf.fit(x, y, frozen_epochs=3, fine_tune_epochs=2, verbose=0, batch_size=16)
    assert history.stopped is not None and history.stopped.reason == "chance_accuracy"
    assert history.stopped.epoch == 3 and set(history.phases) == {"frozen"}


@pytest.mark.backend
def test_kzoo_fit_calls_on_a_dataset_do_not_trigger_the_shuffle_warning():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data input belongs to the TensorFlow backend")
    clf = _tiny_transfer()
    x = np.zeros((16, 8, 8, 3), np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(16) % 3)).batch(8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(data, frozen_epochs=1, fine_tune_epochs=1, verbose=0, cache_features=False)
    assert not [w for w in caught if "shuffle" in str(w.message)]


def test_commands_that_load_tensorflow_print_none_of_its_native_start_up_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "kzoo", "build", "8x8x1:4C3-FC2"], capture_output=True,
        text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert "8x8x1:4C3-FC2" in result.stdout


@pytest.mark.parametrize(
    "example",
    [
        "lenet_mnist",
        "mnist_table",
        "regression_units",
        "transfer_digits",
        "transfer_folder",
        "fooling_digits",
        "style_transfer",
    ],
)
def test_example_help_answers_without_importing_tensorflow(example):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['{example}.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'examples' / (example + '.py'))!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('loaded:', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "usage:" in result.stdout
    assert "loaded: False False" in result.stdout, result.stdout


def test_the_folder_example_fails_on_missing_weights_before_importing_tensorflow(tmp_path):
    folder = tmp_path / "flowers" / "rose"
    folder.mkdir(parents=True)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "transfer_folder.py"), str(folder.parent)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "KZOO_OFFLINE": "1", "KZOO_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    seconds = time.monotonic() - start
    assert result.returncode == 1 and seconds < 3, (seconds, result.stderr)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "import_weights('vgg19.imagenet', FILE, notop=True)" in result.stderr


# --- 10: small truths --------------------------------------------------------------------------


def test_list_tables_have_headers_and_say_what_they_mean(capsys):
    assert main(["weights", "list", "vgg19"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["weights", "file", "size", "hash", "cached", "at"]
    assert any("not cached (import-only)" in line for line in lines)
    assert not any(line.split()[-1] in ("-", "?") for line in lines[2:])
    assert main(["models", "-l"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:3] == ["model", "input", "weights"]
    assert main(["models", "--architectures"]) == 0
    assert "lenet" in capsys.readouterr().out


def test_cli_errors_name_the_flag_not_the_python_argument(capsys):
    assert main(["explain", "FC64-FC10"]) == 1
    err = capsys.readouterr().err
    assert "--input-shape 28x28x1" in err and "input_shape=(" not in err


def test_every_command_line_in_the_docs_parses(capsys):
    from kzoo import __version__
    from kzoo.cli.commands import make_parser

    parser = make_parser(__version__)
    found = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in _command_lines(doc.read_text()):
            found += 1
            try:
                parser.parse_args(line)
            except SystemExit:
                pytest.fail(
                    f"{doc.name}: the documented command does not parse: kzoo {' '.join(line)}"
                )
    assert found >= 10


def _command_lines(markdown: str) -> list[list[str]]:
    import shlex

    lines, inside = [], False
    for raw in markdown.splitlines():
        if raw.startswith("```"):
            inside = not inside
            continue
        text = raw.split("#", 1)[0].strip() if inside else ""
        for part in text.split("  "):  # two commands on one line, as in README's CLI block
            part = part.strip()
            synopsis = "[" in part or "..." in part or "\\" in part  # usage, not a command
            if part.startswith("kzoo ") and not synopsis:
                lines.append(shlex.split(part)[1:])
    return lines


# --- 11, 12, 13: bad files ---------------------------------------------------------------


def laughs(levels: int = 39) -> bytes:
    """A 400-byte protocol-2 pickle: {'param values': L}, L_i = [L_(i-1), L_(i-1)] via the memo."""
    parts = [b"\x80\x02}q\x00X\x0c\x00\x00\x00param values", b"]q\x01K\x01a0"]
    for i in range(2, levels + 2):
        parts.append(b"]q" + bytes([i]) + b"(h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"e0")
    parts.append(b"h" + bytes([levels + 1]) + b"s.")
    return b"".join(parts)


def test_a_pickle_bomb_is_refused_in_well_under_a_second(tmp_path, kzoo_home):
    path = tmp_path / "laughs.pkl"
    path.write_bytes(laughs())
    assert len(path.read_bytes()) < 500
    start = time.monotonic()
    with pytest.raises(UnsafePickleError, match="nests containers"):
        kzoo.load("vgg19", weights=str(path))
    assert time.monotonic() - start < 1
    assert files_in(kzoo_home) == []


def test_shared_containers_resolve_once_and_stay_shared(tmp_path):
    from kzoo.converters._safe_pickle import load_mapped

    path = tmp_path / "shared.pkl"
    path.write_bytes(laughs(levels=20))  # 2**20 paths, 21 lists
    data, _ = load_mapped(path)
    top = data["param values"]
    assert top[0] is top[1] and len(top) == 2


def test_import_runs_the_format_reader_and_refuses_what_load_would(capsys, tmp_path, kzoo_home):
    marker = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "vgg19.pkl"
    evil.write_bytes(pickle.dumps({"param values": [RunsCode()]}, protocol=2))
    assert main(["weights", "import", "vgg19", "lasagne", str(evil)]) == 1
    assert "refusing to load a pickle that asks for" in capsys.readouterr().err
    assert not marker.exists() and files_in(kzoo_home) == []
    bomb = tmp_path / "bomb.pkl"
    bomb.write_bytes(laughs())
    with pytest.raises(UnsafePickleError):
        kzoo.zoo.import_weights("vgg19.lasagne", bomb)
    assert files_in(kzoo_home) == []


def test_verify_says_what_it_checked(capsys, tmp_path):
    path, *_ = write_source("lasagne", tmp_path)
    assert main(["weights", "import", "vgg19", "lasagne", str(path)]) == 0
    capsys.readouterr()
    assert main(["weights", "verify", "vgg19.lasagne"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok") and "sha256 recorded" in out and "lasagne structure" in out


def _nan_bias(monkeypatch) -> None:
    real = writers._bias
    calls = []

    def bias(rng, n):
        out = real(rng, n)
        if not calls:
            out[1] = np.nan
        calls.append(n)
        return out

    monkeypatch.setattr(writers, "_bias", bias)


@pytest.mark.parametrize("kind", ["keras_h5", "caffe", "lasagne", "torchvision"])
def test_nan_weights_are_a_conversion_error_naming_the_layer(
    kind, tmp_path, monkeypatch, kzoo_home
):
    _nan_bias(monkeypatch)
    path, fmt, mode, _ = write_source(kind, tmp_path)
    elsewhere = {"urls": ["https://weights.kzoo.invalid/x"]}
    manifest = tiny_manifest(
        {"x": {"format": fmt, "preprocessing": mode, "files": {"top": elsewhere}}}
    )
    with pytest.raises(ConversionError, match=r"block1_conv1.*1 NaN") as error:
        kzoo.load("tiny", weights=str(path), manifest=manifest)
    assert error.value.file_is_bad
    with pytest.raises(ConversionError, match="1 NaN"):
        kzoo.converters.inspect(fmt, path)
    assert files_in(kzoo_home) == []


@pytest.mark.parametrize("kind", ["keras_h5", "lasagne", "torchvision"])
def test_integer_arrays_where_weights_belong_are_refused(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "_bias", lambda rng, n: np.arange(n, dtype=np.int64))
    path, fmt, *_ = write_source(kind, tmp_path)
    with pytest.raises(ConversionError, match="int64 arrays where weights are floating-point"):
        kzoo.converters.convert(fmt, path, synthetic.keras_slots(synthetic.TINY_VGG19))


def test_a_downloaded_file_that_fails_its_reader_is_not_kept(
    server, tmp_path, monkeypatch, kzoo_home
):
    _nan_bias(monkeypatch)
    path, fmt, mode, _ = write_source("caffe", tmp_path)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode)})
    with pytest.raises(ConversionError, match="was deleted; the next load downloads it again"):
        kzoo.load("tiny", manifest=manifest)
    assert files_in(kzoo_home) == []


def test_a_file_that_only_does_not_fit_the_model_is_kept(server, tmp_path, kzoo_home):
    path, fmt, mode, _ = write_source("caffe", tmp_path, layout=synthetic.TINY_VGG16)
    manifest = tiny_manifest({"src": served_source(server, path, fmt, mode)})  # a VGG-19 spec
    with pytest.raises(ConversionError, match="do not fit the model") as error:
        kzoo.load("tiny", manifest=manifest)
    assert error.value.file_is_bad is False
    assert [p.name for p in files_in(kzoo_home / "raw")] == [path.name]
