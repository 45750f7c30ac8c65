"""The GPU benchmark script runs end to end in its CPU smoke mode (JAX backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_transfer_smoke_writes_its_figures(tmp_path: Path) -> None:
    env = {**os.environ, "KERAS_BACKEND": "jax", "OUT": str(tmp_path)}
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_transfer.py"), "--smoke"],
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    result = json.loads((tmp_path / "gpu_transfer.json").read_text())
    assert result["fine_tune_ratio"] > 0
    assert result["frozen_speedup"] > 0
