"""The transfer examples run end to end in their --smoke mode."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import keras
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_transfer_digits_smoke_reports_both_accuracies(capsys):
    result = _example("transfer_digits").main(["--smoke", "--source", "offline"])
    printed = capsys.readouterr().out
    assert "transferred from 0-4" in printed and "trained from scratch" in printed
    assert 0.0 <= result["transfer"] <= 1.0 and 0.0 <= result["scratch"] <= 1.0


@pytest.mark.slow
def test_transfer_folder_smoke_trains_saves_and_reloads_vgg19(capsys, tmp_path):
    result = _example("transfer_folder").main(["--smoke", "--work", str(tmp_path)])
    assert result["same"] and result["classes"] == ["blue", "green", "red"]
    model = keras.saving.load_model(result["out"])
    assert model.input_shape == (None, 32, 32, 3)
    assert "phase boundary after epoch 2" in capsys.readouterr().out


@pytest.mark.slow
def test_transfer_folder_smoke_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory goes
    _example("transfer_folder").main(["--smoke"])
    assert list(tmp_path.iterdir()) == []
