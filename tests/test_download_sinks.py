"""kzoo.download.sinks: the hashing and flushing threads behind every download and verify.

A sink that fails must surface its own error and never stall the stream; the periodic
fdatasync must run once per FLUSH bytes of the file being written. Payloads are copied from
local files with a small CHUNK, so the chunking (and so the flush schedule) is exact.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
import time

import pytest

from kzoo.download import fetch, sinks, stream, verify

BLOCK = 1000  # stream.CHUNK in these tests: 15 chunks for PAYLOAD
PAYLOAD = bytes(range(250)) * 60  # 15000 bytes
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A local file holding PAYLOAD, read BLOCK bytes at a time."""
    monkeypatch.setattr(stream, "CHUNK", BLOCK)
    path = tmp_path / "source.bin"
    path.write_bytes(PAYLOAD)
    return path


def fetch_in_thread(*args, deadline: float = 20.0, **kwargs):
    """Run fetch() in a thread; fail if it is still running after ``deadline`` seconds.

    Returns what fetch returned, or the exception it raised (not re-raised, to compare it).
    """
    outcome: dict[str, object] = {}

    def run():
        try:
            outcome["result"] = fetch(*args, **kwargs)
        except BaseException as exc:  # the failure under test, compared by identity below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), "fetch() blocked: a sink stopped draining its queue"
    return outcome.get("error", outcome.get("result"))


def test_md5_and_sha256_work_where_fips_forbids_hashes_for_security(tmp_path, monkeypatch):
    # On a FIPS-mode system md5 is refused unless it is asked for as a non-security hash.
    real_new = hashlib.new

    def fips_new(name, *args, usedforsecurity=True, **kwargs):
        if name == "md5" and usedforsecurity:
            raise ValueError("[digital envelope routines] unsupported (FIPS mode)")
        return real_new(name, *args, usedforsecurity=usedforsecurity, **kwargs)

    monkeypatch.setattr(hashlib, "new", fips_new)
    path = tmp_path / "w.bin"
    path.write_bytes(PAYLOAD)
    assert verify(path, {"md5": MD5, "sha256": SHA256}) == {
        "md5": f"md5:{MD5}",
        "sha256": f"sha256:{SHA256}",
    }


class Boom(Exception):
    """The failure a sink is made to raise."""


class FailingHash:
    """A hash whose ``update`` raises ``error`` on call number ``fail_at``."""

    def __init__(self, real, error: BaseException, fail_at: int) -> None:
        self.real, self.error, self.fail_at, self.calls = real, error, fail_at, 0

    def update(self, chunk: bytes) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        self.real.update(chunk)

    def hexdigest(self) -> str:
        return self.real.hexdigest()


def test_a_hash_failing_mid_stream_reaches_the_caller_as_itself_and_never_blocks(
    source, tmp_path, monkeypatch
):
    error = Boom("the hash ran out of memory")
    made: list[FailingHash] = []

    def failing_hash(algorithm):
        made.append(FailingHash(hashlib.new(algorithm), error, fail_at=3))
        return made[-1]

    monkeypatch.setattr(sinks, "new_hash", failing_hash)
    dest = tmp_path / "w.bin"
    # 15 chunks after the failure at the third: more than the 8 a queue holds, so a sink
    # that stopped draining would block the copy for ever.
    raised = fetch_in_thread([str(source)], dest, size=len(PAYLOAD), hashes={"sha256": SHA256})
    assert raised is error
    assert [h.calls for h in made] == [3]  # a failed hash is not fed again
    assert not dest.exists()


def test_a_flush_failing_with_a_non_os_error_reaches_the_caller_as_itself(
    source, tmp_path, monkeypatch
):
    error = Boom("fdatasync broke")

    def datasync(fd):
        raise error

    monkeypatch.setattr(sinks, "FLUSH", 2 * BLOCK)
    monkeypatch.setattr(sinks, "_datasync", datasync)
    raised = fetch_in_thread([str(source)], tmp_path / "w.bin", size=len(PAYLOAD))
    assert raised is error


@pytest.mark.parametrize(
    ("flush", "flushes"),
    [
        (3 * BLOCK, 5),  # exactly every third chunk: after chunks 3, 6, 9, 12 and 15
        (3 * BLOCK + 1, 3),  # one byte more: not until the fourth chunk, so 4, 8 and 12
    ],
)
def test_a_download_fdatasyncs_its_partial_file_once_per_flush_bytes(
    source, tmp_path, monkeypatch, flush, flushes
):
    synced: list[int] = []
    monkeypatch.setattr(sinks, "FLUSH", flush)
    monkeypatch.setattr(sinks, "_datasync", lambda fd: synced.append(os.fstat(fd).st_ino))
    dest = fetch([str(source)], tmp_path / "w.bin", size=len(PAYLOAD), hashes={"sha256": SHA256})
    assert dest.read_bytes() == PAYLOAD
    assert synced == [dest.stat().st_ino] * flushes  # the partial file, renamed into place


def test_verify_reads_without_flushing_anything(source, monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(sinks, "FLUSH", BLOCK)
    monkeypatch.setattr(sinks, "_datasync", synced.append)
    assert verify(source, {"sha256": SHA256})["sha256"] == f"sha256:{SHA256}"
    assert synced == []


def test_a_periodic_flush_failing_with_an_os_error_does_not_fail_the_download(
    source, tmp_path, monkeypatch
):
    # The final fsync before the rename reports real write errors; the early ones only
    # start the writeback, so EIO there must not cost the download.
    calls: list[int] = []

    def datasync(fd):
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(sinks, "FLUSH", 2 * BLOCK)
    monkeypatch.setattr(sinks, "_datasync", datasync)
    dest = fetch([str(source)], tmp_path / "w.bin", size=len(PAYLOAD), hashes={"sha256": SHA256})
    assert dest.read_bytes() == PAYLOAD
    assert len(calls) == 7  # every flush was tried, each failure swallowed


def test_a_stalled_sink_holds_at_most_eight_chunks_before_the_producer_waits(monkeypatch):
    release = threading.Event()

    class SlowHash:
        def update(self, chunk):
            release.wait(10)

        def hexdigest(self):
            return "0"

    monkeypatch.setattr(sinks, "new_hash", lambda algorithm: SlowHash())
    sink = sinks.Sinks(["md5"])
    accepted: list[int] = []

    def produce():
        for n in range(20):
            sink.update(b"x")
            accepted.append(n)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    deadline = time.monotonic() + 5
    while len(accepted) < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # room for a tenth chunk, were the queue bigger
    # one chunk in the stalled update, eight waiting in the queue
    assert len(accepted) == 9
    release.set()
    producer.join(5)
    assert len(accepted) == 20
    assert sink.digests() == {"md5": "md5:0"}


ABANDON = """
from kzoo.download.sinks import Sinks
sinks = Sinks(["md5", "sha256"])
sinks.update(b"never closed: a read error left the sinks behind")
"""


def test_sinks_left_open_do_not_keep_the_interpreter_from_exiting():
    # Closed, the same sinks end their threads and hash what they were fed; the child below
    # never closes them, as when a read error leaves them behind.
    before = set(threading.enumerate())
    closed = sinks.Sinks(["md5", "sha256"])
    closed.update(b"x")
    assert closed.digests()["md5"] == f"md5:{hashlib.md5(b'x').hexdigest()}"
    assert set(threading.enumerate()) <= before
    done = subprocess.run([sys.executable, "-c", ABANDON], timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
