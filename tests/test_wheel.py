"""The built wheel ships the real manifest, and ``kzoo models`` runs from it with no dependency."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the checkout gets no build/ folder)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO / "kzoo", src / "kzoo", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        command.insert(4, "--no-build-isolation")  # no index needed when setuptools is here
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (built,) = work.glob("kzoo-*.whl")
    return built


def test_wheel_contains_the_real_manifest(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("kzoo/zoo/weights_manifest.json")
    assert shipped == (REPO / "kzoo" / "zoo" / "weights_manifest.json").read_bytes()
    assert "vgg19" in json.loads(shipped)["models"]


def test_kzoo_models_runs_from_the_installed_wheel_without_dependencies(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    bindir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    python = next(p for p in (bindir / "python", bindir / "python.exe") if p.exists())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"PATH": str(bindir), "HOME": str(tmp_path), "KZOO_HOME": str(tmp_path / "cache")}
    kzoo = shutil.which("kzoo", path=str(bindir))
    assert kzoo is not None
    plain = subprocess.run([kzoo, "models"], capture_output=True, text=True, env=env, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert "vgg19" in plain.stdout.split()
    tagged = subprocess.run(
        [kzoo, "models", "--pretrained", "vgg19"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert tagged.returncode == 0, tagged.stderr
    assert "vgg19.imagenet" in tagged.stdout.split()
