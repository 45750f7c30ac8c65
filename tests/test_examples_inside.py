"""The fooling and style transfer examples run end to end in their --smoke mode, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fooling_digits_reaches_099_for_every_class_in_its_short_version(tmp_path, capsys):
    out = tmp_path / "fooled.png"
    result = _example("fooling_digits").main(["--smoke", "--source", "offline", "--out", str(out)])
    assert result["reached"] and len(result["probabilities"]) == 10
    assert float(np.min(result["probabilities"])) >= 0.99
    with Image.open(out) as picture:
        assert picture.size[0] > picture.size[1] > 0
    assert "every class at p >= 0.99: True" in capsys.readouterr().out


@pytest.mark.slow
def test_style_transfer_smoke_lowers_its_losses_and_writes_the_picture(tmp_path):
    out = tmp_path / "stylized.png"
    result = _example("style_transfer").main(["--smoke", "--out", str(out)])
    for term in ("total", "content", "style"):
        assert result["history"][term][-1] < result["history"][term][0]
    with Image.open(out) as picture:
        assert picture.size == (64, 64)
