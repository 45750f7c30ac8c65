"""Benchmark scripts run end to end in their small smoke modes, so they cannot rot unseen."""

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


@pytest.mark.slow
def test_bench_convert_tiny_converts_every_format_and_matches_the_numpy_reference(
    tmp_path: Path,
) -> None:
    figures_path = tmp_path / "convert.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_convert.py"),
            "--tiny",
            "--repeat",
            "1",
            "--dir",
            str(tmp_path),
            "--json",
            str(figures_path),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    figures = json.loads(figures_path.read_text())
    assert set(figures) == {
        "keras_h5",
        "caffe",
        "lasagne",
        "safetensors_vgg",
        "safetensors_vgg_timm",
        "resnet50_keras_h5",
        "resnet50_caffe",
        "resnet50_torch_pth",
        "resnet50_torch_safetensors",
    }
    for row in figures.values():
        assert row["reference_error"] < 1e-5
        assert row["convert_over_read"] > 0 and row["rss_over_weights"] > 0


@pytest.mark.slow
def test_bench_download_small_payload_prints_its_ratio_last() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_download.py"), "--mb", "8"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("ratio fetch/raw: ")
    assert float(last.split(": ")[1]) > 0


@pytest.mark.slow
def test_bench_features_small_run_checks_both_sides_and_prints_its_ratios_last() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_features.py"), "--size", "32",
         "--repeats", "1", "--steps", "1"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout.strip().splitlines()  # fmt: skip
    assert out[-2].startswith("features ratio (kzoo / hand")
    assert out[-1].startswith("stylize step ratio (kzoo / keras.io loop")
    assert float(out[-1].rsplit(" ", 1)[1]) > 0


def test_bench_check_small_run_prints_its_ratios_last(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_check.py"), "--images", "80",
         "--side", "64", "--repeats", "1"],
        capture_output=True, text=True, check=True, timeout=300, env=env,
    ).stdout.strip().splitlines()  # fmt: skip
    assert out[-2].startswith("ratio workers=1 / loop")
    assert out[-1].startswith("ratio workers=2 / loop")
    assert float(out[-1].rsplit(" ", 1)[1]) > 0
