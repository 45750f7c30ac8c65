"""The LeNet and regression examples run end to end in --smoke mode, as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_lenet_example_trains_from_the_spec_and_reports_dataset_and_accuracy():
    out = _run("lenet_mnist.py", "--smoke", "--source", "offline")
    assert "dataset: MNIST offline subset" in out
    assert "model: 20C5-MP2-50C5-MP2-FC256-FC10" in out
    params = int(re.search(r"\(([\d,]+) parameters\)", out).group(1).replace(",", ""))
    assert params > 200_000
    accuracy = float(re.search(r"test accuracy: ([\d.]+) on 256 images", out).group(1))
    assert 0.0 <= accuracy <= 1.0


@pytest.mark.slow
def test_regression_example_reports_its_error_in_the_targets_units():
    out = _run("regression_units.py", "--smoke")
    match = re.search(r"result: mae_dollars=([\d.]+) baseline_mae_dollars=([\d.]+)", out)
    assert match, out
    mae, baseline = float(match.group(1)), float(match.group(2))
    # Without the inversion the predictions would be near 0, so off by the whole price (far
    # above the baseline); an error measured in standard units would be below ~1.
    assert mae > 0.01 * baseline
    assert mae < baseline, "the model should beat predicting the mean price"
    assert baseline > 10_000
