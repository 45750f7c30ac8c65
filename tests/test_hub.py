"""The Hub's file protocol against a stand-in (tests/hub_server.py): resolve, redirect, verify."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import Fault, dead_url
from hub_server import Repo, git_sha1, hub_server_fixture, timm_config  # noqa: F401

from kzoo.download import fetch, hub
from kzoo.download.hub_files import hub_file, locate
from kzoo.errors import (
    ChecksumError,
    EntryNotFoundError,
    GatedRepoError,
    HubError,
    KzooError,
    OfflineError,
    RepoNotFoundError,
    RevisionNotFoundError,
)

BLOB = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(BLOB).hexdigest()
HALF = len(BLOB) // 2
CONFIG = timm_config("vgg19")
NAME = "timm/vgg19.tv_in1k"


def repo(**kwargs) -> Repo:
    files = {"config.json": CONFIG, "model.safetensors": BLOB}
    return Repo(NAME, files, lfs={"model.safetensors"}, **kwargs)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_an_lfs_file_is_resolved_redirected_and_verified(hub_server, kzoo_home):
    hub_server.add(repo())
    path = hub_file(NAME, "model.safetensors")
    assert path.read_bytes() == BLOB
    assert path.is_relative_to(kzoo_home)
    assert [h.method for h in hub_server.hits()] == ["HEAD"]  # one resolve: located, fetched
    gets = hub_server.blob_gets()
    assert len(gets) == 1 and gets[0].path == f"/lfs/{SHA}/1"
    assert gets[0].headers.get("Accept-Encoding") == "identity"


def test_a_second_call_costs_one_head_and_a_commit_none(hub_server):
    r = hub_server.add(repo())
    first = hub_file(NAME, "model.safetensors")
    before = hub_server.total()
    assert hub_file(NAME, "model.safetensors") == first
    assert hub_server.total() - before == 1  # the branch may have moved: one HEAD
    before = hub_server.total()
    assert hub_file(NAME, "model.safetensors", r.commit) == first
    assert hub_server.total() == before


def test_a_small_git_file_is_checked_against_its_git_blob_id(hub_server):
    hub_server.add(repo())
    path = hub_file(NAME, "config.json")
    assert path.read_bytes() == CONFIG
    assert hub_server.blob_gets() == []


def test_a_git_file_whose_bytes_differ_from_its_etag_is_refused(hub_server, kzoo_home):
    r = hub_server.add(repo())
    real = hub.resolve(NAME, "config.json")
    assert real.info.etag == git_sha1(CONFIG)
    r.files["config.json"] = CONFIG.replace(b"vgg19", b"vgg16")  # same size, other bytes
    forged = hub.Resolved(NAME, "config.json", "main", real.commit, real.info, real.location)
    with pytest.raises(ChecksumError, match="not git blob"):
        hub.fetch_small(forged, None)
    assert not [f for f in files_under(kzoo_home) if f.endswith("config.json")]


def test_a_same_size_corrupted_blob_is_refused_and_nothing_is_kept(hub_server, kzoo_home):
    hub_server.add(repo(faults=[Fault("corrupt", times=None)]))
    with pytest.raises(ChecksumError, match=SHA):
        hub_file(NAME, "model.safetensors", progress=False)
    kept = files_under(kzoo_home)
    assert not [f for f in kept if "model.safetensors" in f and not f.endswith(".json")], kept


def test_the_token_goes_to_the_hub_and_never_to_the_storage_host(hub_server, monkeypatch):
    hub_server.add(repo(gated=True, token="hf_secret"))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert hub_file(NAME, "model.safetensors").read_bytes() == BLOB
    assert hub_file(NAME, "config.json").read_bytes() == CONFIG
    assert all(h.headers.get("Authorization") == "Bearer hf_secret" for h in hub_server.hits())
    assert hub_server.blobs.hits()
    assert not [h for h in hub_server.blobs.hits() if "Authorization" in h.headers]


def test_the_token_is_read_from_hf_token_path(hub_server, monkeypatch, tmp_path):
    hub_server.add(repo(gated=True, token="hf_from_file"))
    (tmp_path / "tok").write_text("hf_from_file\n")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "tok"))
    assert hub_file(NAME, "model.safetensors").read_bytes() == BLOB


def test_a_gated_repo_without_a_token_says_what_to_do_at_once(hub_server):
    hub_server.add(repo(gated=True, token="hf_secret"))
    with pytest.raises(GatedRepoError) as info:
        hub_file(NAME, "model.safetensors")
    message = str(info.value)
    assert "gated" in message and "accept its conditions" in message
    assert f"{hub_server.endpoint}/{NAME}" in message and "HF_TOKEN" in message
    assert info.value.code == "GatedRepo" and info.value.repo == NAME
    assert hub_server.count() == 1  # a refusal is not retried
    assert hub_server.blobs.hits() == []


@pytest.mark.parametrize(
    ("repo_name", "revision", "filename", "error", "words"),
    [
        ("timm/vgg91.tv_in1k", "main", "config.json", RepoNotFoundError, "check the spelling"),
        (NAME, "v9", "config.json", RevisionNotFoundError, "no revision 'v9'"),
        (NAME, "main", "pytorch_model.bin", EntryNotFoundError, "has no file"),
    ],
)
def test_the_hubs_error_codes_become_typed_errors(hub_server, repo_name, revision, filename,
                                                  error, words):  # fmt: skip
    hub_server.add(repo())
    with pytest.raises(error, match=words) as info:
        hub_file(repo_name, filename, revision)
    assert isinstance(info.value, HubError) and hub_server.count() == 1


def test_offline_after_one_load_makes_no_request(hub_server, monkeypatch):
    hub_server.add(repo())
    blob = hub_file(NAME, "model.safetensors")
    config = hub_file(NAME, "config.json")
    before = hub_server.total()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_file(NAME, "model.safetensors") == blob
    assert hub_file(NAME, "config.json") == config
    assert hub_server.total() == before


def test_offline_without_a_pin_names_what_to_do(hub_server, monkeypatch):
    hub_server.add(repo())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"HF_HUB_OFFLINE=1.*Load it once online"):
        hub_file(NAME, "model.safetensors")
    assert hub_server.total() == 0


def test_an_unreachable_hub_falls_back_to_the_pinned_commit(hub_server, monkeypatch, caplog):
    hub_server.add(repo())
    blob = hub_file(NAME, "model.safetensors")
    monkeypatch.setenv("HF_ENDPOINT", dead_url("").rstrip("/"))
    assert locate(NAME, "model.safetensors").info.sha256 == SHA
    assert hub_file(NAME, "model.safetensors") == blob
    assert "the commit main pointed at when last seen" in caplog.text


def test_a_renamed_repo_is_followed_through_its_relative_redirect(hub_server, monkeypatch):
    hub_server.add(repo(gated=True, token="hf_secret"))
    hub_server.renamed["oldorg/vgg19"] = NAME
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert hub_file("oldorg/vgg19", "model.safetensors").read_bytes() == BLOB


def prefill_hf_cache(hf_home: Path, commit: str, data: bytes = BLOB) -> Path:
    folder = hf_home / "hub" / "models--timm--vgg19.tv_in1k"
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / SHA).write_bytes(data)
    (folder / "blobs" / git_sha1(CONFIG)).write_bytes(CONFIG)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(f"../../blobs/{SHA}")
    (snap / "config.json").symlink_to(f"../../blobs/{git_sha1(CONFIG)}")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return folder


def test_a_prefilled_hf_cache_serves_its_blob_where_it_is(hub_server, kzoo_home):
    r = hub_server.add(repo())
    folder = prefill_hf_cache(Path(os.environ["HF_HOME"]), r.commit)
    before = files_under(folder)
    path = hub_file(NAME, "model.safetensors")
    assert path == folder / "blobs" / SHA
    assert hub_server.blob_gets() == []
    assert files_under(folder) == before  # kzoo never writes there


def test_a_prefilled_hf_cache_offline_costs_no_request(hub_server, monkeypatch):
    r = hub_server.add(repo())
    folder = prefill_hf_cache(Path(os.environ["HF_HOME"]), r.commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_file(NAME, "model.safetensors") == folder / "blobs" / SHA
    assert hub_file(NAME, "config.json").read_bytes() == CONFIG
    assert hub_server.total() == 0


def test_a_damaged_blob_in_the_hf_cache_is_not_used_nor_touched(hub_server, kzoo_home):
    r = hub_server.add(repo())
    damaged = bytes([BLOB[0] ^ 1]) + BLOB[1:]
    folder = prefill_hf_cache(Path(os.environ["HF_HOME"]), r.commit, damaged)
    path = hub_file(NAME, "model.safetensors")
    assert path.is_relative_to(kzoo_home) and path.read_bytes() == BLOB
    assert (folder / "blobs" / SHA).read_bytes() == damaged


def test_a_manifest_hub_url_with_another_sha256_fails_before_any_byte(hub_server, tmp_path):
    r = hub_server.add(repo())
    url = f"hf://{NAME}@{r.commit}/model.safetensors"
    with pytest.raises(ChecksumError, match="not the pinned"):
        fetch([url], tmp_path / "w", hashes={"sha256": "0" * 64}, progress=False)
    assert hub_server.blob_gets() == []
    assert fetch([url], tmp_path / "w", hashes={"sha256": SHA}).read_bytes() == BLOB


def test_a_dead_hub_url_falls_through_to_the_next_mirror(hub_server, tmp_path):
    hub_server.add(repo())
    mirror = hub_server.blobs.add("/mirror/model.safetensors", BLOB)
    url = f"hf://{NAME}@main/missing.safetensors"
    got = fetch([url, mirror], tmp_path / "w", hashes={"sha256": SHA}, progress=False)
    assert got.read_bytes() == BLOB


@pytest.mark.parametrize("bad", ["hf://vgg19", "hf://a/b/../c", "hf://timm/x@", "hf://t m/x"])
def test_a_malformed_hub_id_is_a_clear_error(bad):
    with pytest.raises(KzooError, match="malformed hub id"):
        hub.parse(bad)


def test_hub_ids_are_taken_apart():
    assert hub.parse("hf://timm/vgg19.tv_in1k") == hub.HubId(NAME)
    assert hub.parse("hf://timm/vgg19.tv_in1k@v1/sub/model.safetensors") == hub.HubId(
        NAME, "v1", "sub/model.safetensors"
    )
    assert hub.parse("hf://timm/vgg19.tv_in1k/model.safetensors").filename == "model.safetensors"


CHILD = """
import os, sys, time
from kzoo.download.hub_files import hub_file
repo, ready, n = sys.argv[1:]
open(os.path.join(ready, str(os.getpid())), "w").close()
deadline = time.time() + 30
while len(os.listdir(ready)) < int(n) and time.time() < deadline:
    time.sleep(0.01)
print(hub_file(repo, "model.safetensors", progress=False))
"""


def test_six_processes_at_once_make_one_get(hub_server, tmp_path):
    hub_server.add(repo(faults=[Fault("trickle", chunk=65536, delay=0.05, times=None)]))
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, NAME, str(ready), "6"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=90)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6
    assert len(set(outputs)) == 1 and Path(outputs[0]).read_bytes() == BLOB
    assert len(hub_server.blob_gets()) == 1


KILLED = """
import sys
from kzoo.download.hub_files import hub_file
hub_file(sys.argv[1], "model.safetensors", progress=False)
"""


def test_sigkill_mid_download_then_a_new_process_resumes_from_a_fresh_url(hub_server, kzoo_home):
    hub_server.add(repo(faults=[Fault("stall", at=HALF, seconds=60)], faulty=1, live_urls=1))
    child = subprocess.Popen([sys.executable, "-c", KILLED, NAME])
    deadline = time.monotonic() + 30
    while not [p for p in kzoo_home.rglob("*.part.*") if p.stat().st_size >= HALF]:
        assert time.monotonic() < deadline, "the child never wrote its partial file"
        assert child.poll() is None, "the child exited before it was killed"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)

    path = hub_file(NAME, "model.safetensors", progress=False)
    assert path.read_bytes() == BLOB
    gets = [(h.path, h.range) for h in hub_server.blob_gets()]
    assert gets[0] == (f"/lfs/{SHA}/1", None)  # the child's resolve, then its GET
    assert gets[1:] == [(f"/lfs/{SHA}/2", f"bytes={HALF}-")]  # resolved afresh (1 expired)
    assert hub_server.count("HEAD") == 2
    assert list(kzoo_home.rglob("*.part.*")) == []


def test_a_hf_cache_without_symlinks_is_used_once_the_hub_names_the_hash(hub_server, monkeypatch):
    r = hub_server.add(repo())
    snapshot = Path(os.environ["HF_HOME"]) / "hub" / "models--timm--vgg19.tv_in1k" / "snapshots"
    (snapshot / r.commit).mkdir(parents=True)
    (snapshot / r.commit / "model.safetensors").write_bytes(BLOB)  # a copy, as on Windows
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError):  # its name says nothing: kzoo does not guess
        hub_file(NAME, "model.safetensors", r.commit)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert (
        hub_file(NAME, "model.safetensors", r.commit) == snapshot / r.commit / "model.safetensors"
    )
    assert hub_server.blob_gets() == []


def test_a_signed_url_that_expired_is_resolved_afresh(hub_server):
    r = hub_server.add(repo(live_urls=1))
    locate(NAME, "model.safetensors", r.commit)  # signs URL 1, remembered for the fetch
    hub_server.sign(r, SHA, BLOB)  # someone else's resolve: URL 1 expires
    assert hub_file(NAME, "model.safetensors", r.commit).read_bytes() == BLOB
    gets = [h.path for h in hub_server.blob_gets()]
    assert gets == [f"/lfs/{SHA}/1", f"/lfs/{SHA}/3"]  # 404, then a fresh resolve
