"""kzoo.download against a real loopback HTTP server that misbehaves on purpose.

One test per row of the download test matrix, plus the guarantees around them (unpinned
hashes, TLS, progress). Payloads are tiny and backoffs are milliseconds.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import (  # noqa: F401
    Fault,
    FaultServer,
    dead_url,
    fault_server_fixture,
    self_signed,
)

from kzoo.download import cache, fetch, fetch_cached, fetcher, file_digest, stream, verify
from kzoo.errors import ChecksumError, DownloadError, Hint, OfflineError

PAYLOAD = bytes(range(256)) * 64 + b"tail"  # 16 KiB + 4: not a multiple of anything
HALF = len(PAYLOAD) // 2
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"progress": False, "backoff": 0.001, "max_wait": 0.01, "timeout": (5, 5)}


def pinned(**overrides):
    """fetch() keyword arguments for PAYLOAD with its size and both hashes pinned."""
    return {"size": len(PAYLOAD), "hashes": {"md5": MD5, "sha256": SHA256}, **FAST, **overrides}


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part.*"))


@pytest.fixture
def sleeps(monkeypatch):
    """Record the waits between retries instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(stream, "_sleep", waits.append)
    return waits


def test_happy_path_then_cache_hit_makes_zero_requests(fault_server, tmp_path, monkeypatch):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"

    assert fetch([url], dest, **pinned()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 1
    assert fault_server.hits("/w.bin")[0].headers["Accept-Encoding"] == "identity"
    assert partials(tmp_path) == []

    def no_hashing(*args, **kwargs):
        raise AssertionError("a cache hit must not hash")

    monkeypatch.setattr(fetcher, "Sinks", no_hashing)
    monkeypatch.setattr(stream, "Sinks", no_hashing)
    monkeypatch.setattr(fetcher, "file_digest", no_hashing)
    assert fetch([url], dest, **pinned()) == dest
    assert fault_server.count("/w.bin") == 1


def test_truncated_body_resumes_with_range(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("truncate", at=HALF))
    dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]
    assert len(sleeps) == 1


def test_truncated_body_every_time_fails_and_keeps_nothing_final(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("truncate", at=100, times=None))
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=r"gave up after 3 attempts"):
        fetch([url], dest, **pinned(retries=2))
    assert not dest.exists()
    assert fault_server.count("/w.bin") == 3


def test_wrong_content_length_longer_than_body_is_retried(fault_server, tmp_path, sleeps):
    # No pinned size: the client believes Content-Length, asks for the 100 missing bytes,
    # gets 416 (there are none) and starts over; the hash proves the final file right.
    url = fault_server.add("/w.bin", PAYLOAD, Fault("wrong_length", delta=+100))
    dest = fetch([url], tmp_path / "w.bin", hashes={"md5": MD5}, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={len(PAYLOAD)}-", None]


def test_wrong_content_length_longer_than_body_with_pinned_size_needs_no_retry_request(
    fault_server, tmp_path, sleeps
):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("wrong_length", delta=+100))
    dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 1  # the partial already has every pinned byte


def test_wrong_content_length_shorter_than_body_is_caught_by_size(fault_server, tmp_path, sleeps):
    # The client stops at the announced length; the pinned size says the file is short.
    url = fault_server.add("/w.bin", PAYLOAD, Fault("wrong_length", delta=-100))
    dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={len(PAYLOAD) - 100}-"]


def test_wrong_content_length_shorter_without_size_is_caught_by_hash(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("wrong_length", delta=-100, times=None))
    dest = tmp_path / "w.bin"
    with pytest.raises(ChecksumError, match=f"md5: expected {MD5}, got"):
        fetch([url], dest, hashes={"md5": MD5}, **FAST)
    assert not dest.exists()
    assert partials(tmp_path) == []


def test_same_size_corrupted_body_raises_checksum_error_and_deletes_it(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("corrupt", times=None))
    dest = tmp_path / "w.bin"
    with pytest.raises(ChecksumError) as info:
        fetch([url], dest, **pinned())
    corrupted = bytearray(PAYLOAD)
    corrupted[HALF] ^= 0xFF
    message = str(info.value)
    assert f"sha256: expected {SHA256}, got {hashlib.sha256(corrupted).hexdigest()}" in message
    assert "md5" not in message  # the strongest pinned hash alone is computed
    assert url in message
    assert not dest.exists() and partials(tmp_path) == []
    assert fault_server.count("/w.bin") == 1  # wrong bytes are not retried from the same URL


def test_download_checks_the_strongest_pin_and_verify_checks_them_all(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    wrong_md5 = "0" * 32  # a manifest typo in the weaker hash
    fetch([url], dest, **pinned(hashes={"md5": wrong_md5, "sha256": SHA256}))
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(ChecksumError, match=f"md5: expected {wrong_md5}, got {MD5}"):
        verify(dest, {"md5": wrong_md5, "sha256": SHA256})


def test_corrupt_mirror_falls_through_to_a_good_one(fault_server, tmp_path):
    bad = fault_server.add("/bad.bin", PAYLOAD, Fault("corrupt", times=None))
    good = fault_server.add("/good.bin", PAYLOAD)
    dest = fetch([bad, good], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD


def test_404_is_not_retried(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", status=404, times=None))
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert not isinstance(info.value, ChecksumError)
    assert url in str(info.value)
    assert fault_server.count("/w.bin") == 1 and sleeps == []


def test_500_and_503_then_success_backs_off_and_honours_retry_after(fault_server, tmp_path, sleeps):
    url = fault_server.add(
        "/w.bin",
        PAYLOAD,
        Fault("status", status=500),
        Fault("status", status=503, retry_after="7"),
        Fault("status", status=429, retry_after="0"),
    )
    dest = fetch([url], tmp_path / "w.bin", **pinned(backoff=0.002, max_wait=0.05))
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 4
    # 500: backoff * 2**0; 503: Retry-After 7 s capped at max_wait; 429: Retry-After 0.
    assert sleeps == [0.002, 0.05, 0.0]


def test_redirect_is_followed(fault_server, tmp_path):
    fault_server.add("/real.bin", PAYLOAD)
    url = fault_server.add("/old.bin", b"", Fault("redirect", location="/real.bin", times=None))
    dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/old.bin") == 1 and fault_server.count("/real.bin") == 1


def test_resume_across_calls(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("truncate", at=HALF))
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match="next call resumes it"):
        fetch([url], dest, **pinned(retries=0))
    assert [p.stat().st_size for p in partials(tmp_path)] == [HALF]

    fetch([url], dest, **pinned(retries=0))
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]
    assert partials(tmp_path) == []


def test_server_that_ignores_range_restarts_from_zero(fault_server, tmp_path, sleeps):
    url = fault_server.add(
        "/w.bin", PAYLOAD, Fault("truncate", at=HALF), Fault("ignore_range", times=None)
    )
    dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]


def test_bad_content_range_is_rejected_and_download_restarts(fault_server, tmp_path, sleeps):
    url = fault_server.add(
        "/w.bin", PAYLOAD, Fault("truncate", at=HALF), Fault("bad_content_range")
    )
    dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-", None]


def test_stalled_server_times_out_then_resumes(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("stall", at=HALF, seconds=30))
    dest = fetch([url], tmp_path / "w.bin", **pinned(timeout=(5, 0.3)))
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]


def test_stalled_server_fails_after_read_timeout(fault_server, tmp_path, sleeps):
    # Each attempt gets 100 more bytes (a resumed body stalls after 100 bytes too).
    url = fault_server.add("/w.bin", PAYLOAD, Fault("stall", at=100, seconds=30, times=None))
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match="timed out"):
        fetch([url], dest, **pinned(timeout=(5, 0.3), retries=1))
    assert not dest.exists()


CHILD = """
import os, sys, time
from kzoo.download import fetch
url, dest, size, md5, ready, n = sys.argv[1:]
open(os.path.join(ready, str(os.getpid())), "w").close()
deadline = time.time() + 30
while len(os.listdir(ready)) < int(n) and time.time() < deadline:
    time.sleep(0.01)
fetch([url], dest, size=int(size), hashes={"md5": md5}, progress=False, retries=3, backoff=0.01)
"""


def run_four_processes(server: FaultServer, tmp_path: Path, env: dict[str, str]) -> Path:
    url = server.add("/w.bin", PAYLOAD, Fault("trickle", chunk=2048, delay=0.15, times=None))
    dest = tmp_path / "cache" / "w.bin"
    ready = tmp_path / "ready"
    ready.mkdir()
    args = [url, str(dest), str(len(PAYLOAD)), MD5, str(ready), "4"]
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, *args], env={**os.environ, **env})
        for _ in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    return dest


def test_four_processes_at_once_make_one_get(fault_server, tmp_path):
    dest = run_four_processes(fault_server, tmp_path, {})
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 1
    assert partials(dest.parent) == []


def test_four_processes_with_locks_disabled_still_end_correct(fault_server, tmp_path):
    dest = run_four_processes(fault_server, tmp_path, {"KZOO_NO_LOCKS": "1"})
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") >= 2  # they really overlapped: no lock held them back
    assert partials(dest.parent) == []
    assert not (dest.parent / "w.bin.lock").exists()


KILLED_CHILD = """
import sys
from kzoo.download import fetch
fetch([sys.argv[1]], sys.argv[2], size=int(sys.argv[3]), progress=False, timeout=(5, 60))
"""


def test_threads_of_one_process_fetch_once(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("trickle", chunk=4096, delay=0.05, times=None))
    dest = tmp_path / "w.bin"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fetch([url], dest, **pinned()), range(4)))
    assert results == [dest] * 4 and dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 1


def test_sigkill_mid_download_then_retry_adopts_the_partial(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("stall", at=HALF, seconds=60))
    dest = tmp_path / "w.bin"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, url, str(dest), str(len(PAYLOAD))]
    )
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size >= HALF for p in partials(tmp_path)):
        assert time.monotonic() < deadline, "the child never wrote its partial file"
        assert child.poll() is None, "the child exited before it was killed"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)

    fetch([url], dest, **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]
    assert partials(tmp_path) == []


def test_stale_partial_with_wrong_bytes_is_downloaded_again(fault_server, tmp_path):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    stale = cache.partial_path(dest)  # ours: adopted like a dead process's partial
    stale.write_bytes(PAYLOAD[::-1])  # right size, wrong bytes: no request could tell
    fetch([url], dest, **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None]
    assert partials(tmp_path) == []


def snapshot(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    )


def test_read_only_cache_hit_writes_nothing_and_miss_fails_clearly(
    fault_server, tmp_path, monkeypatch
):
    layer = tmp_path / "layer"
    (layer / "raw").mkdir(parents=True)
    (layer / "raw" / "w.bin").write_bytes(PAYLOAD)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache root's parent should be")
    # Tests run as root, where permission bits stop nothing: a root below a regular file
    # cannot be created by anyone.
    monkeypatch.setenv("KZOO_HOME", str(blocker / "kzoo"))
    monkeypatch.setenv(
        "KZOO_READONLY_CACHES", os.pathsep.join(["", str(tmp_path / "x"), str(layer)])
    )
    url = fault_server.add("/w.bin", PAYLOAD)
    before = snapshot(tmp_path)

    hit = fetch_cached("raw/w.bin", [url], **pinned())
    assert hit == layer / "raw" / "w.bin"
    assert snapshot(tmp_path) == before
    assert fault_server.count() == 0

    with pytest.raises(DownloadError, match=r"cannot be written.*KZOO_HOME"):
        fetch_cached("raw/other.bin", [url], **pinned())
    assert fault_server.count() == 0
    assert snapshot(tmp_path) == before


def test_disk_too_small_fails_before_any_request(fault_server, tmp_path, monkeypatch):
    url = fault_server.add("/w.bin", PAYLOAD)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 10))
    with pytest.raises(DownloadError, match=rf"disk is full.*\({len(PAYLOAD)} bytes\)"):
        fetch([url], tmp_path / "w.bin", **pinned())
    assert fault_server.count() == 0


def test_disk_full_mid_write_deletes_the_partial(fault_server, tmp_path, monkeypatch, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD)

    def full_disk(fh, chunk):
        fh.write(chunk[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(stream, "_write", full_disk)
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=rf"disk is full.*\({len(PAYLOAD)} bytes\)"):
        fetch([url], dest, **pinned())
    assert not dest.exists() and partials(tmp_path) == []
    assert fault_server.count() == 1 and sleeps == []


def test_offline_makes_zero_requests_and_names_path_and_import_command(
    fault_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "vgg19" / "w.bin"
    hint = Hint("import_weights", "install a copy with import_weights(...)", {"model": "vgg19"})
    with pytest.raises(OfflineError) as info:
        fetch([url], dest, hints=[hint], **pinned())
    assert str(dest) in str(info.value) and hint.text in str(info.value)
    assert info.value.hints == (hint,)
    assert fault_server.count() == 0
    assert not dest.parent.exists()


def test_offline_still_copies_local_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    source = tmp_path / "copy.bin"
    source.write_bytes(PAYLOAD)
    dest = fetch([dead_url(), str(source)], tmp_path / "cache" / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD


def test_mirror_fallback_from_a_dead_port(fault_server, tmp_path, sleeps):
    dead = dead_url("/w.bin")
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = fetch([dead, url], tmp_path / "w.bin", **pinned(retries=1))
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 1


def test_all_mirrors_failing_lists_each_url_and_reason(fault_server, tmp_path, sleeps):
    dead = dead_url("/w.bin")
    missing = fault_server.url("/missing.bin")
    with pytest.raises(DownloadError) as info:
        fetch([dead, missing], tmp_path / "w.bin", **pinned(retries=1))
    lines = str(info.value).splitlines()
    assert any(dead in line and "Connection refused" in line for line in lines)
    assert any(missing in line and "HTTP 404" in line for line in lines)


def test_file_url_and_plain_path_are_copied_and_verified(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    by_url = fetch([source.as_uri()], tmp_path / "a" / "w.bin", **pinned())
    by_path = fetch([str(source)], tmp_path / "b" / "w.bin", **pinned())
    assert by_url.read_bytes() == by_path.read_bytes() == PAYLOAD

    source.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(ChecksumError, match="sha256: expected"):
        fetch([source.as_uri()], tmp_path / "c" / "w.bin", **pinned())
    assert not (tmp_path / "c" / "w.bin").exists()


def test_missing_local_file_is_a_download_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot read"):
        fetch([str(tmp_path / "absent.bin")], tmp_path / "w.bin", **pinned())


def test_unpinned_source_warns_records_sha256_and_checks_it_later(fault_server, tmp_path, caplog):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        fetch([url], dest, hashes={"sha256": None}, **FAST)
    assert "no pinned hash" in caplog.text
    record = dest.with_name("w.bin.sha256")
    assert record.read_text().strip() == f"sha256:{SHA256}"
    assert verify(dest)["sha256"] == f"sha256:{SHA256}"

    dest.write_bytes(PAYLOAD[::-1])
    with pytest.raises(ChecksumError, match=f"expected {SHA256}"):
        verify(dest)

    # The source changes after the first download: the recorded hash catches it.
    dest.unlink()
    fault_server.add("/w.bin", PAYLOAD[::-1])
    with pytest.raises(ChecksumError, match=f"sha256: expected {SHA256}") as info:
        fetch([url], dest, **FAST)
    assert "if the source really changed, delete that file" in str(info.value)
    assert not dest.exists()


def test_verify_checks_pinned_hashes_and_size(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(PAYLOAD)
    seen = verify(path, {"md5": MD5, "sha256": f"sha256:{SHA256.upper()}"}, size=len(PAYLOAD))
    assert seen == {"md5": f"md5:{MD5}", "sha256": f"sha256:{SHA256}"}
    assert file_digest(path, "md5") == f"md5:{MD5}"
    with pytest.raises(ChecksumError, match=rf"size: expected {len(PAYLOAD) + 1} bytes"):
        verify(path, {"md5": MD5}, size=len(PAYLOAD) + 1)
    with pytest.raises(ChecksumError, match="nothing to verify"):
        verify(path)


def test_untrusted_certificate_fails_fast_and_ca_bundle_env_is_honoured(
    tmp_path, monkeypatch, sleeps
):
    cert, key = self_signed(tmp_path)
    with FaultServer(tls=(cert, key)) as server:
        url = server.add("/w.bin", PAYLOAD)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with pytest.raises(DownloadError, match=r"TLS error.*REQUESTS_CA_BUNDLE"):
            fetch([url], tmp_path / "w.bin", **pinned())
        assert sleeps == [] and server.count() == 0  # not retried, nothing sent

        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
        dest = fetch([url], tmp_path / "w.bin", **pinned())
        assert dest.read_bytes() == PAYLOAD and server.count("/w.bin") == 1


def test_proxy_environment_variables_are_honoured(fault_server, tmp_path, monkeypatch):
    # The fault server plays the proxy: it receives the absolute URL as the request path.
    target = "http://weights.example.invalid/w.bin"
    fault_server.add(target, PAYLOAD)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, fault_server.url(""))
    dest = fetch([target], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.count(target) == 1


def test_progress_bar_starts_at_the_bytes_already_there(fault_server, tmp_path, monkeypatch):
    positions: list[int] = []
    real_tqdm = fetcher.tqdm

    class RecordingBar(real_tqdm):
        def reset(self, total=None):
            super().reset(total)
            positions.append(("reset", total))

        def update(self, n=1):
            positions.append(n)
            return super().update(n)

    monkeypatch.setattr(fetcher, "tqdm", RecordingBar)
    url = fault_server.add("/w.bin", PAYLOAD, Fault("truncate", at=HALF))
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError):
        fetch([url], dest, **pinned(retries=0, progress=True))
    positions.clear()
    fetch([url], dest, **pinned(retries=0, progress=True))
    assert positions[:2] == [("reset", len(PAYLOAD)), HALF]
    assert sum(n for n in positions if isinstance(n, int)) == len(PAYLOAD)
