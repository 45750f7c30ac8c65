"""examples/mnist_table.py --smoke prints the whole table beside the talk's figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist_table.py"


@pytest.mark.slow
def test_mnist_table_smoke_prints_every_row_beside_the_talks_error():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--smoke", "--source", "offline"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "dataset: MNIST offline subset" in out
    assert out.count("| model | kzoo spec | talk error") == 1
    rows = re.findall(r"^\| (.+?) \| `(.+?)` \| (.+?) \| \*\*([\d.]+) %\*\* \| (\d+) \|", out, re.M)
    labels = [row[0] for row in rows]
    assert labels[:3] == ["FC64", "FC256-FC256", "LeNet"]
    assert len(rows) == 5 and any("recipe" in label for label in labels)
    talk = {row[0]: row[2] for row in rows}
    assert (talk["FC64"], talk["FC256-FC256"], talk["LeNet"]) == ("2.85 %", "1.83 %", "0.79 %")
    for _, spec, _, error, epochs in rows:
        assert spec.endswith("FC10")
        assert 0.0 <= float(error) <= 100.0
        assert epochs == "1"
    assert "+BN" in rows[-1][1] and "+D0.5" in rows[-1][1]
    assert "offline subset: 4,000 train / 1,000 test" in out
