"""`kzoo explain` and `kzoo build`, tested through main(argv)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kzoo.cli import main


def test_explain_prints_the_table(capsys):
    assert main(["explain", "lenet"]) == 0
    out = capsys.readouterr().out
    assert "block2_conv1" in out and "(7, 7, 50)" in out
    assert out.strip().splitlines()[-1] == "Total params: 655,596"


def test_explain_with_input_shape_and_dialect(capsys):
    assert main(["explain", "20C5-MP2-50C5-MP2-FC256-FC10", "--input-shape", "28x28x1",
                 "--dialect", "ciresan"]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip().endswith("Total params: 233,196")


def test_bad_spec_prints_the_caret_message_and_fails_without_traceback(capsys):
    assert main(["explain", "64C3-PM2-FC10", "--input-shape", "28x28x1"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: unknown layer token 'PM2'",
        "  | 64C3-PM2-FC10",
        "  |      ^^^",
        "  = help: did you mean 'MP2'?",
    ]
    assert "Traceback" not in err


def test_missing_input_shape_is_explained(capsys):
    assert main(["explain", "FC64-FC10"]) == 1
    assert "input_shape" in capsys.readouterr().err


def test_bad_input_shape_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["explain", "FC10", "--input-shape", "28by28"])
    assert info.value.code == 2
    assert "224x224x3" in capsys.readouterr().err


def test_explain_command_does_not_import_keras():
    code = (
        "import sys\n"
        "from kzoo.cli import main\n"
        "rc = main(['explain', 'vgg19'])\n"
        "print('KERAS' if 'keras' in sys.modules else 'NO-KERAS', rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "NO-KERAS 0"


def test_build_prints_the_canonical_string_and_saves(tmp_path, capsys):
    path = tmp_path / "m.keras"
    assert main(["build", "1x8x8-4C3-MP2-10N", "--summary", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "8x8x1:4C3-MP2-FC10" in out
    assert "block1_conv1" in out  # from the Keras summary
    assert path.exists()
    import keras

    model = keras.saving.load_model(path)
    assert [layer.name for layer in model.layers][-1] == "predictions"


def test_build_reports_a_bad_save_path(tmp_path, capsys):
    assert main(["build", "4:FC2", "--save", str(tmp_path / "m.txt")]) == 1
    assert "cannot save" in capsys.readouterr().err


def test_build_bad_spec_fails_cleanly(capsys):
    assert main(["build", "28x28x1:64C3-MP2-FC1"]) == 1
    err = capsys.readouterr().err
    assert "softmax over one unit" in err and "Traceback" not in err
