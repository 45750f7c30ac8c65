"""The command line with Hub ids: classify, weights fetch/list/path/verify/purge, and a gated
repo's error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hub_server import Repo, hub_server_fixture, publish, timm_config, tiny_vgg19_fixture  # noqa: F401
from PIL import Image

from kzoo.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_weights_fetch_prints_the_verified_file_of_a_hub_id(capsys, hub_server):
    config = timm_config("vgg19")
    repo = hub_server.add(Repo("timm/vgg19.tv_in1k", {"config.json": config}))
    code, out, err = run(
        capsys, "weights", "fetch", f"hf://timm/vgg19.tv_in1k@{repo.commit}/config.json"
    )
    assert code == 0, err
    assert Path(out.strip()).read_bytes() == config


def test_weights_fetch_of_a_model_id_fetches_its_safetensors(
    capsys, hub_server, tiny_vgg19, tmp_path
):
    repo, _ = publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    code, out, err = run(capsys, "weights", "fetch", "hf://timm/vgg19.tv_in1k", "--no-progress")
    assert code == 0, err
    data = Path(out.strip()).read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(repo.files["model.safetensors"]).digest()


def test_weights_list_path_verify_purge_take_a_hub_id(capsys, hub_server, tiny_vgg19, tmp_path,
                                                     monkeypatch):  # fmt: skip
    publish(hub_server, tmp_path, "timm/vgg19.tv_in1k")
    hub_id = "hf://timm/vgg19.tv_in1k"
    code, out, err = run(capsys, "weights", "path", hub_id)
    assert code == 0, err
    path = Path(out.strip())
    assert not path.exists() and path.name == "model.safetensors"
    code, out, err = run(capsys, "weights", "list", hub_id)
    assert code == 0 and "vgg19.hf--timm--vgg19.tv_in1k" in out and "not cached" in out, out
    assert run(capsys, "weights", "fetch", hub_id, "--no-progress")[1].strip() == str(path)
    # offline from here: the commit pinned by the fetch names the file without the Hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "weights", "list", hub_id)
    assert code == 0 and str(path) in out, out
    code, out, err = run(capsys, "weights", "verify", hub_id)
    assert code == 0 and out.startswith("ok") and "sha256" in out, out
    with path.open("r+b") as f:  # one flipped byte in the middle
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    code, out, err = run(capsys, "weights", "verify", hub_id)
    assert code == 1 and out.startswith("FAILED"), out
    code, out, err = run(capsys, "weights", "purge", hub_id, "--yes")
    assert code == 0 and f"removing {path}" in out and not path.exists(), out
    code, out, err = run(capsys, "weights", "list", "vgg19")  # the manifest's sources untouched
    assert code == 0 and "hf--" not in out
    code, out, err = run(capsys, "weights", "path", hub_id, "--notop")
    assert code != 0 and "no tag, no --notop" in err


def test_a_gated_repo_fails_with_what_to_do(capsys, hub_server):
    hub_server.add(Repo("org/secret", {"config.json": b"{}"}, gated=True, token="t"))
    code, out, err = run(capsys, "weights", "fetch", "hf://org/secret")
    assert code != 0 and out == ""
    assert "accept its conditions" in err and "HF_TOKEN" in err


@pytest.mark.backend
def test_classify_a_hub_model(capsys, hub_server, tiny_vgg19, tmp_path):
    publish(hub_server, tmp_path, "timm/vgg19.tv_in1k", label_names=[f"bird{i}" for i in range(10)])
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(image)
    code, out, err = run(
        capsys, "classify", image, "--model", "hf://timm/vgg19.tv_in1k", "--top", "3"
    )
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert len(rows) == 3 and all(row.split()[1].startswith("bird") for row in rows)
