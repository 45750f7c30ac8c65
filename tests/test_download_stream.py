"""kzoo.download.stream through fetch(): Range answers, the retry policy, unreachable hosts,
free space and a full disk, and what each of them tells the user.

Besides the fault server of tests/fault_server.py, a scripted server answers each request with
the next reply of a list, for answers no well-behaved server gives (an unasked-for 206, a
Content-Range that does not match, no Content-Length, a hang-up before the answer).
"""

from __future__ import annotations

import email.utils
import errno
import gzip
import hashlib
import logging
import os
import re
import shutil
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import urllib3
from fault_server import Fault, dead_url, fault_server_fixture  # noqa: F401

from kzoo.download import cache, fetch, fetcher, sinks, stream, verify
from kzoo.errors import ChecksumError, DownloadError

PAYLOAD = bytes(range(256)) * 64 + b"tail"  # 16388 bytes
SIZE = len(PAYLOAD)
HALF = SIZE // 2
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"progress": False, "backoff": 0.25, "max_wait": 30.0, "timeout": (5, 5)}
HOST = "weights.example.invalid"


def pinned(**overrides):
    """fetch() keyword arguments for PAYLOAD with its size and sha256 pinned."""
    return {"size": SIZE, "hashes": {"sha256": SHA256}, **FAST, **overrides}


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part.*"))


def free_space(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, free))


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kzoo"]


@pytest.fixture
def sleeps(monkeypatch):
    """Record the waits between retries instead of sleeping; a retry loop that never ends
    fails the test instead of hanging it."""
    waits: list[float] = []

    def record(seconds):
        waits.append(seconds)
        if len(waits) > 30:
            raise AssertionError(f"retried for ever: {waits[:5]}...")

    monkeypatch.setattr(stream, "_sleep", record)
    return waits


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests go straight to the test servers (and the patched connection functions)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bar_events(monkeypatch):
    """What fetch() does to its progress bar: ("reset", total) and each update's count."""
    events: list = []

    class RecordingBar(fetcher.tqdm):
        def reset(self, total=None):
            events.append(("reset", total))
            return super().reset(total)

        def update(self, n=1):
            events.append(n)
            return super().update(n)

    monkeypatch.setattr(fetcher, "tqdm", RecordingBar)
    return events


@pytest.fixture
def chunk_sizes(monkeypatch):
    """The length of every chunk the sinks of a download are fed."""
    sizes: list[int] = []

    class RecordingSinks(sinks.Sinks):
        def update(self, chunk):
            sizes.append(len(chunk))
            super().update(chunk)

    monkeypatch.setattr(stream, "Sinks", RecordingSinks)
    return sizes


# --- a server that answers from a script -------------------------------------------------


@dataclass
class Reply:
    """One scripted answer; ``body=None`` sends PAYLOAD from the requested Range start."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    length: bool = True  # announce Content-Length
    hang_up: bool = False  # close the connection without answering


class Scripted:
    """A loopback HTTP/1.0 server answering the n-th GET with the n-th reply, then like a
    good server (200, or 206 with a right Content-Range for ``Range: bytes=N-``)."""

    def __init__(self, *replies: Reply, payload: bytes = PAYLOAD) -> None:
        self.replies, self.payload, self.ranges = list(replies), payload, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_GET(self):
                owner.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/w.bin"

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        rng = handler.headers.get("Range")
        self.ranges.append(rng)
        start = int(rng[len("bytes=") : -1]) if rng else 0
        if self.replies:
            reply = self.replies.pop(0)
        elif rng:
            end = len(self.payload) - 1
            reply = Reply(206, {"Content-Range": f"bytes {start}-{end}/{len(self.payload)}"})
        else:
            reply = Reply()
        if reply.hang_up:
            return
        body = self.payload[start:] if reply.body is None else reply.body
        handler.send_response(reply.status)
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        if reply.length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


def own_partial(dest: Path, data: bytes) -> Path:
    """A partial file of this process (claimed like a dead process's one) holding ``data``."""
    part = cache.partial_path(dest)
    part.write_bytes(data)
    return part


# --- the retry policy ------------------------------------------------------------------


def test_transient_failures_back_off_exponentially_and_say_so(
    fault_server, tmp_path, sleeps, caplog
):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", status=503, times=4))
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        dest = fetch([url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert sleeps == [0.25, 0.5, 1.0, 2.0]
    assert messages(caplog)[0] == f"{url}: HTTP 503 Service Unavailable; retrying in 0.25 s"


def test_spent_retries_name_the_number_of_attempts(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", status=500, times=None))
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned(retries=2))
    assert (
        f"  {url}: HTTP 500 Internal Server Error (gave up after 3 attempts)"
        in str(info.value).splitlines()
    )
    assert len(sleeps) == 2


def test_408_request_timeout_is_retried(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", status=408))
    assert fetch([url], tmp_path / "w.bin", **pinned()).read_bytes() == PAYLOAD
    assert fault_server.count("/w.bin") == 2 and sleeps == [0.25]


def test_a_reachable_source_that_fails_gets_no_offline_advice(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", status=404, times=None))
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert "No source could be reached" not in str(info.value)


@pytest.mark.parametrize(
    ("offset", "low", "high"),
    [(20.0, 15.0, 20.0), (-3600.0, 0.0, 0.0)],
    ids=["in-20-seconds", "an-hour-ago"],
)
def test_retry_after_as_an_http_date_waits_until_then(
    fault_server, tmp_path, sleeps, offset, low, high
):
    when = email.utils.formatdate(time.time() + offset, usegmt=True)
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", retry_after=when))
    fetch([url], tmp_path / "w.bin", **pinned(max_wait=60.0))
    assert len(sleeps) == 1 and low <= sleeps[0] <= high


def test_an_unreadable_retry_after_falls_back_to_the_backoff(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", retry_after="soon"))
    fetch([url], tmp_path / "w.bin", **pinned())
    assert sleeps == [0.25]


@pytest.mark.parametrize("error", [TypeError, IndexError, ValueError])
def test_retry_after_dates_that_older_parsers_choke_on_fall_back_to_the_backoff(
    fault_server, tmp_path, sleeps, monkeypatch, error
):
    # Python 3.10's email.utils raises TypeError or IndexError where 3.11 raises ValueError.
    def choke(value):
        raise error(f"cannot parse {value!r}")

    monkeypatch.setattr(email.utils, "parsedate_to_datetime", choke)
    url = fault_server.add("/w.bin", PAYLOAD, Fault("status", retry_after="Wed, 21 Oct 2015"))
    fetch([url], tmp_path / "w.bin", **pinned())
    assert sleeps == [0.25]


# --- free space and a full disk ---------------------------------------------------------


@pytest.mark.parametrize(
    ("need", "text"),
    [
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 << 10, "1.5 MiB"),
        (3 << 30, "3.0 GiB"),
        (5 << 40, "5120.0 GiB"),
    ],
)
def test_a_disk_too_small_is_reported_in_readable_sizes(
    fault_server, tmp_path, monkeypatch, need, text
):
    url = fault_server.add("/w.bin", PAYLOAD)
    free_space(monkeypatch, 0)
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned(size=need))
    assert str(info.value) == (
        f"the disk is full: w.bin needs {text} ({need} bytes) in {tmp_path} and only 0 B is "
        "free. Free some space or set KZOO_HOME to a bigger disk."
    )
    assert fault_server.count() == 0


def test_free_space_equal_to_the_missing_bytes_is_enough_to_resume(
    fault_server, tmp_path, monkeypatch, sleeps
):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[:HALF])
    free_space(monkeypatch, SIZE - HALF)
    assert fetch([url], dest, **pinned()).read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [f"bytes={HALF}-"]


def test_unpinned_size_is_taken_from_content_length_across_a_resume(
    fault_server, tmp_path, monkeypatch, sleeps, bar_events
):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("truncate", at=HALF))
    free_space(monkeypatch, SIZE)  # enough for the whole file, and on resume for the rest
    dest = fetch([url], tmp_path / "w.bin", hashes={"md5": MD5}, **{**FAST, "progress": True})
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]
    assert [e for e in bar_events if isinstance(e, tuple)] == [("reset", SIZE)] * 2


def full_disk_after(writes: int):
    """A stream._write that fails with ENOSPC on call number ``writes + 1``."""
    calls = []

    def write(fh, chunk):
        calls.append(len(chunk))
        if len(calls) > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fh.write(chunk)

    return write


def test_a_disk_full_mid_write_names_the_announced_size_when_unpinned(
    fault_server, tmp_path, monkeypatch, sleeps
):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("trickle", chunk=1024, delay=0.005))
    monkeypatch.setattr(stream, "_write", full_disk_after(1))
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", hashes={"md5": MD5}, **FAST)
    assert str(info.value) == (
        f"the disk is full: w.bin needs 16.0 KiB ({SIZE} bytes) in {tmp_path}. "
        "Free some space or set KZOO_HOME to a bigger disk."
    )
    assert partials(tmp_path) == []


def test_a_disk_full_names_the_pinned_size_when_the_source_is_bigger(tmp_path, monkeypatch):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD * 2)
    monkeypatch.setattr(stream, "CHUNK", 1000)  # the disk fills before the file is too long
    monkeypatch.setattr(stream, "_write", full_disk_after(0))
    with pytest.raises(DownloadError, match=rf"needs 16\.0 KiB \({SIZE} bytes\)"):
        fetch([str(source)], tmp_path / "w.bin", **pinned())


def test_no_room_to_create_the_partial_file_is_a_full_disk(
    fault_server, tmp_path, monkeypatch, sleeps
):
    url = fault_server.add("/w.bin", PAYLOAD)

    def no_inode_left(path, *args, **kwargs):
        if ".part." in os.fspath(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(stream, "open", no_inode_left, raising=False)
    with pytest.raises(DownloadError, match=rf"disk is full: w\.bin needs .*\({SIZE} bytes\)"):
        fetch([url], tmp_path / "w.bin", **pinned())
    assert partials(tmp_path) == []


def test_a_write_error_other_than_a_full_disk_is_raised_as_itself(
    fault_server, tmp_path, monkeypatch, sleeps
):
    url = fault_server.add("/w.bin", PAYLOAD)

    def broken_disk(fh, chunk):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(stream, "_write", broken_disk)
    with pytest.raises(OSError, match="Input/output error") as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert info.value.errno == errno.EIO and not isinstance(info.value, DownloadError)


# --- local sources ----------------------------------------------------------------------


def test_a_local_copy_shorter_than_the_pinned_size_is_refused(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD[:-1])
    dest = tmp_path / "w.bin"
    with pytest.raises(ChecksumError, match=f"size: expected {SIZE} bytes, got {SIZE - 1}"):
        fetch([str(source)], dest, size=SIZE, progress=False)
    assert not dest.exists()


def test_a_missing_local_file_is_reported_with_the_reason_alone(tmp_path):
    source = tmp_path / "absent.bin"
    with pytest.raises(DownloadError) as info:
        fetch([str(source)], tmp_path / "w.bin", **pinned())
    assert (
        f"  {source}: cannot read {source}: No such file or directory"
        in str(info.value).splitlines()
    )


def test_a_local_copy_is_read_in_chunks_ends_at_the_end_and_warns_nothing(
    tmp_path, monkeypatch, chunk_sizes
):
    monkeypatch.setattr(stream, "CHUNK", 1000)
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    outcome: list = []

    def copy():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            outcome.append(fetch([str(source)], tmp_path / "w.bin", **pinned()))

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "copying a local file never reached its end"
    assert outcome == [tmp_path / "w.bin"]
    assert chunk_sizes == [1000] * 16 + [SIZE - 16000]


def test_a_local_copy_shows_its_size_on_the_progress_bar(tmp_path, bar_events):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    fetch([str(source)], tmp_path / "w.bin", **pinned(progress=True))
    assert bar_events == [("reset", SIZE), 0, SIZE]


# --- resuming, and what counts as a resumable answer ------------------------------------


def test_resuming_hashes_the_bytes_already_there_in_chunks(
    fault_server, tmp_path, monkeypatch, chunk_sizes, sleeps
):
    monkeypatch.setattr(stream, "CHUNK", 1000)
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[:5000])
    assert fetch([url], dest, **pinned()).read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == ["bytes=5000-"]
    assert chunk_sizes[:5] == [1000] * 5  # the resumed bytes, read back once
    assert max(chunk_sizes) <= 1000 and sum(chunk_sizes) == SIZE


def test_a_body_longer_than_the_pinned_size_is_cut_off(fault_server, tmp_path, sleeps):
    # in chunks smaller than the size: it is their sum that runs past it
    url = fault_server.add("/w.bin", PAYLOAD, Fault("trickle", chunk=1024, delay=0.002))
    dest = tmp_path / "w.bin"
    with pytest.raises(ChecksumError, match=f"size: expected {SIZE - 100} bytes, got more"):
        fetch([url], dest, size=SIZE - 100, progress=False)
    assert not dest.exists() and partials(tmp_path) == []


def test_a_partial_longer_than_the_pinned_size_is_discarded(fault_server, tmp_path, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD + b"left over")
    assert fetch([url], dest, **pinned()).read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None]


def test_a_one_byte_partial_that_is_wrong_gets_one_fresh_download(
    fault_server, tmp_path, sleeps, caplog
):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    own_partial(dest, b"X")  # PAYLOAD starts with a zero byte
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        assert fetch([url], dest, **pinned()).read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == ["bytes=1-", None]
    assert sleeps == []  # the 206 was accepted: its bytes failed, not its Content-Range
    assert messages(caplog) == ["w.bin: resumed bytes failed verification; starting over"]


def test_wrong_bytes_after_the_fresh_download_too_are_a_checksum_error(
    fault_server, tmp_path, sleeps
):
    url = fault_server.add(
        "/w.bin", PAYLOAD, Fault("truncate", at=HALF), Fault("corrupt", times=None)
    )
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[::-1])  # complete but wrong: verified without a request
    with pytest.raises(ChecksumError, match="sha256: expected"):
        fetch([url], dest, **pinned())
    # the fresh download broke, resumed and came back wrong as well: no third try
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]
    assert not dest.exists() and partials(tmp_path) == []


def test_a_complete_partial_is_verified_without_a_request_and_shown_full(
    fault_server, tmp_path, bar_events
):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD)
    assert fetch([url], dest, **pinned(progress=True)).read_bytes() == PAYLOAD
    assert fault_server.count() == 0
    assert bar_events == [("reset", SIZE), SIZE]


def test_a_complete_one_byte_partial_needs_no_request(fault_server, tmp_path):
    url = fault_server.add("/w.bin", b"k")
    dest = tmp_path / "w.bin"
    own_partial(dest, b"k")
    fetch([url], dest, size=1, hashes={"sha256": hashlib.sha256(b"k").hexdigest()}, **FAST)
    assert dest.read_bytes() == b"k" and fault_server.count() == 0


def test_a_zero_byte_file_is_still_asked_for(fault_server, tmp_path, sleeps):
    missing = fault_server.add("/missing.bin", b"", Fault("status", status=404, times=None))
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch([missing], tmp_path / "missing.bin", size=0, **FAST)
    empty = fault_server.add("/empty.bin", b"")
    assert fetch([empty], tmp_path / "empty.bin", size=0, **FAST).read_bytes() == b""
    assert fault_server.count("/empty.bin") == 1


RANGE_ACCEPTED = [
    f"bytes {HALF}-{SIZE - 1}/{SIZE}",
    f"bytes {HALF}-{SIZE - 1}/*",
]
RANGE_REJECTED = [
    f"bytes 0-{SIZE - 1}/{SIZE}",  # the whole file, as if no Range had been sent
    f"bytes 0-{SIZE - 1}/*",
    f"bytes {HALF}-{SIZE - 2}/{SIZE}",  # ends a byte short of the total
    f"bytes {HALF}-{SIZE - 1}/many",
    f"bytes {HALF}-last/{SIZE}",
    f"bytes {HALF}-99999/100000",  # consistent, but not the pinned size
    None,  # no Content-Range at all
]


@pytest.mark.parametrize("content_range", RANGE_ACCEPTED)
@pytest.mark.parametrize("size", [SIZE, None], ids=["pinned", "unpinned"])
def test_a_206_with_a_matching_content_range_resumes(tmp_path, sleeps, content_range, size):
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[:HALF])
    with Scripted(Reply(206, {"Content-Range": content_range})) as server:
        fetch([server.url], dest, size=size, hashes={"sha256": SHA256}, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={HALF}-"] and sleeps == []


@pytest.mark.parametrize("content_range", RANGE_REJECTED)
def test_a_206_with_any_other_content_range_restarts_from_zero_at_once(
    tmp_path, sleeps, caplog, content_range
):
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[:HALF])
    headers = {} if content_range is None else {"Content-Range": content_range}
    with Scripted(Reply(206, headers)) as server, caplog.at_level(logging.WARNING, "kzoo"):
        fetch([server.url], dest, **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={HALF}-", None]
    assert sleeps == [0.0]
    assert messages(caplog) == [
        f"{server.url}: Range bytes={HALF}- answered with Content-Range "
        f"{content_range or ''!r}; restarting from zero; retrying in 0.00 s"
    ]


def test_a_206_nobody_asked_for_is_not_trusted(tmp_path, sleeps):
    whole = Reply(206, {"Content-Range": f"bytes 0-{SIZE - 1}/{SIZE}"})
    with Scripted(whole) as server:
        dest = fetch([server.url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, None] and sleeps == [0.0]


def test_a_416_restarts_from_zero_at_once(fault_server, tmp_path, sleeps, caplog):
    # No pinned size: Content-Length says 100 bytes more than there are, the resume asks for
    # them, and the 416 that answers sends the download back to zero without a pause.
    url = fault_server.add("/w.bin", PAYLOAD, Fault("wrong_length", delta=+100))
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        dest = fetch([url], tmp_path / "w.bin", hashes={"md5": MD5}, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={SIZE}-", None]
    assert sleeps == [0.25, 0.0]
    broke, restart = messages(caplog)[:2]
    assert broke.startswith(f"{url}: connection broke after {SIZE} bytes: ")
    assert restart == (
        f"{url}: HTTP 416 for Range bytes={SIZE}-; restarting from zero; retrying in 0.00 s"
    )


def test_a_server_error_during_a_resume_keeps_the_partial(fault_server, tmp_path, sleeps):
    url = fault_server.add(
        "/w.bin", PAYLOAD, Fault("truncate", at=HALF), Fault("status", status=503)
    )
    assert fetch([url], tmp_path / "w.bin", **pinned()).read_bytes() == PAYLOAD
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-", f"bytes={HALF}-"]


def test_a_server_that_ignores_range_is_noted(fault_server, tmp_path, sleeps, caplog):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("ignore_range"))
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[:HALF])
    with caplog.at_level(logging.INFO, logger="kzoo"):
        assert fetch([url], dest, **pinned()).read_bytes() == PAYLOAD
    assert f"{url} ignores Range: downloading w.bin from the start" in messages(caplog)


def test_a_broken_connection_is_retried_saying_how_much_arrived(
    fault_server, tmp_path, sleeps, caplog
):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("truncate", at=HALF))
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        fetch([url], tmp_path / "w.bin", **pinned())
    assert messages(caplog)[0].startswith(
        f"{url}: connection broke after {HALF} bytes: ProtocolError: "
    )


def test_a_body_shorter_than_its_content_length_is_resumed(fault_server, tmp_path, sleeps, caplog):
    url = fault_server.add("/w.bin", PAYLOAD, Fault("wrong_length", delta=-100))
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        fetch([url], tmp_path / "w.bin", **pinned())
    assert messages(caplog) == [
        f"{url}: the body ended after {SIZE - 100} of {SIZE} bytes; retrying in 0.25 s"
    ]


def test_a_hang_up_before_the_answer_is_retried(tmp_path, sleeps, caplog):
    with Scripted(Reply(hang_up=True)) as server, caplog.at_level(logging.WARNING, "kzoo"):
        dest = fetch([server.url], tmp_path / "w.bin", **pinned())
    assert dest.read_bytes() == PAYLOAD and sleeps == [0.25]
    assert messages(caplog)[0].startswith(f"{server.url}: ConnectionError: ")


def test_a_body_without_content_length_is_read_to_the_end(tmp_path, sleeps):
    with Scripted(Reply(length=False)) as server:
        dest = fetch([server.url], tmp_path / "w.bin", hashes={"sha256": SHA256}, **FAST)
    assert dest.read_bytes() == PAYLOAD and server.ranges == [None]


ENCODED = gzip.compress(PAYLOAD, mtime=0)


@pytest.mark.parametrize("read1", [True, False], ids=["urllib3-read1", "older-urllib3"])
def test_a_body_the_server_encoded_anyway_is_stored_and_sized_as_sent(
    tmp_path, monkeypatch, sleeps, bar_events, read1
):
    # Asked for identity, the server gzips: Content-Length and any Range count the gzip
    # bytes, so those are what is stored (and checked), whatever the urllib3 version.
    if not read1:
        for cls in urllib3.response.HTTPResponse.__mro__:
            if "read1" in vars(cls):
                monkeypatch.delattr(cls, "read1")
    monkeypatch.setattr(stream, "CHUNK", 100)
    reply = Reply(body=ENCODED, headers={"Content-Encoding": "gzip"})
    with Scripted(reply, payload=ENCODED) as server:
        dest = fetch([server.url], tmp_path / "w.bin", **{**FAST, "progress": True})
    assert dest.read_bytes() == ENCODED
    assert bar_events[0] == ("reset", len(ENCODED))
    assert max(n for n in bar_events if isinstance(n, int)) <= 100  # read CHUNK at a time


def test_received_bytes_are_in_the_file_at_once_for_a_resume_after_a_kill(
    fault_server, tmp_path, monkeypatch, sleeps
):
    # The partial file is unbuffered: what the sinks see has been handed to the OS, so a
    # SIGKILL between two chunks loses nothing that arrived.
    url = fault_server.add("/w.bin", PAYLOAD, Fault("trickle", chunk=1024, delay=0.002))
    dest = tmp_path / "w.bin"
    part = cache.partial_path(dest)
    fed: list[int] = []
    on_disk: list[int] = []

    class CheckingSinks(sinks.Sinks):
        def update(self, chunk):
            fed.append(fed[-1] + len(chunk) if fed else len(chunk))
            on_disk.append(part.stat().st_size)
            super().update(chunk)

    monkeypatch.setattr(stream, "Sinks", CheckingSinks)
    assert fetch([url], dest, **pinned()).read_bytes() == PAYLOAD
    assert len(fed) > 8 and on_disk == fed


def test_a_tls_failure_mid_body_is_not_retried(fault_server, tmp_path, monkeypatch, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD)

    def body(resp):
        yield PAYLOAD[:1000]
        raise urllib3.exceptions.SSLError("decryption failed or bad record mac")

    monkeypatch.setattr(stream, "_body", body)
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert (
        f"  {url}: TLS error: decryption failed or bad record mac" in str(info.value).splitlines()
    )
    assert sleeps == [] and fault_server.count() == 1


# --- hosts that cannot be reached -------------------------------------------------------


def connect_fails(monkeypatch, error: BaseException) -> None:
    """Make every new connection fail the way the network would, below urllib3."""

    def create_connection(address, *args, **kwargs):
        raise error

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)


def reason_of(info) -> str:
    return str(info.value).splitlines()[1]


def test_a_refused_connection_is_not_retried_and_says_so(tmp_path, sleeps):
    url = dead_url("/w.bin")
    port = url.split(":")[2].split("/")[0]
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert reason_of(info) == f"  {url}: cannot connect to 127.0.0.1:{port}: Connection refused"
    assert "No source could be reached. Offline?" in str(info.value)
    assert sleeps == []


def test_a_refused_connection_without_a_port_names_the_host(tmp_path, monkeypatch, sleeps):
    connect_fails(monkeypatch, ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    url = f"http://{HOST}/w.bin"
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert reason_of(info) == f"  {url}: cannot connect to {HOST}: Connection refused"


def test_a_failure_to_connect_without_an_errno_is_quoted_whole(tmp_path, monkeypatch, sleeps):
    connect_fails(monkeypatch, OSError("getaddrinfo returns an empty list"))
    url = f"http://{HOST}/w.bin"
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert re.fullmatch(
        rf"  {re.escape(url)}: cannot connect to {HOST}: HTTPConnection\(host='{HOST}', "
        r"port=80\): Failed to establish a new connection: getaddrinfo returns an empty list",
        reason_of(info),
    )
    assert sleeps == []


def test_a_host_name_that_does_not_resolve_is_not_retried(tmp_path, monkeypatch, sleeps):
    connect_fails(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    url = f"http://{HOST}/w.bin"
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned())
    assert reason_of(info) == (
        f"  {url}: cannot resolve the host name {HOST!r} (no network, or no DNS for it)"
    )
    assert "No source could be reached" in str(info.value) and sleeps == []


@pytest.mark.parametrize(("timeout", "seconds"), [((0.25, 5), "0.25"), (0.75, "0.75")])
def test_a_connect_timeout_names_the_connect_timeout(
    tmp_path, monkeypatch, sleeps, timeout, seconds
):
    connect_fails(monkeypatch, TimeoutError("timed out"))
    url = f"http://{HOST}:8080/w.bin"
    with pytest.raises(DownloadError) as info:
        fetch([url], tmp_path / "w.bin", **pinned(timeout=timeout))
    assert reason_of(info) == f"  {url}: no answer from {HOST}:8080 within {seconds} s"
    assert sleeps == []


def test_a_connection_error_without_details_is_retried(fault_server, tmp_path, monkeypatch, sleeps):
    url = fault_server.add("/w.bin", PAYLOAD)
    real_send = requests.adapters.HTTPAdapter.send
    calls = []

    def send(self, request, **kwargs):
        calls.append(request.url)
        if len(calls) == 1:
            raise requests.exceptions.ConnectionError()
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    assert fetch([url], tmp_path / "w.bin", **pinned()).read_bytes() == PAYLOAD
    assert calls == [url, url] and sleeps == [0.25]


def test_a_read_timeout_is_what_ends_a_stall(fault_server, tmp_path, sleeps):
    # The stall outlasts the read timeout by far less than a test run: were the timeout not
    # passed on, the body would simply arrive whole after the stall.
    url = fault_server.add("/w.bin", PAYLOAD, Fault("stall", at=HALF, seconds=1.5))
    fetch([url], tmp_path / "w.bin", **pinned(timeout=(5, 0.2)))
    assert fault_server.ranges("/w.bin") == [None, f"bytes={HALF}-"]


# --- checksum messages and partial files that cannot be deleted --------------------------


def test_verify_names_every_difference_in_one_message(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(PAYLOAD)
    with pytest.raises(ChecksumError) as info:
        verify(path, {"md5": "0" * 32, "sha256": "f" * 64}, size=SIZE + 1)
    assert str(info.value) == (
        f"{path} is corrupt: size: expected {SIZE + 1} bytes, got {SIZE}; "
        f"md5: expected {'0' * 32}, got {MD5}; sha256: expected {'f' * 64}, got {SHA256}. "
        "Delete it and fetch it again."
    )


def test_a_doubly_prefixed_pin_is_quoted_in_full(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(PAYLOAD)
    with pytest.raises(ChecksumError, match=f"md5: expected md5:{MD5}, got {MD5}"):
        verify(path, {"md5": f"md5:md5:{MD5}"})


@pytest.fixture
def undeletable_partials(monkeypatch):
    """os.unlink fails for partial files (held open elsewhere on Windows, EBUSY, ...)."""
    real_unlink = os.unlink
    refused: list[str] = []

    def unlink(path, *args, **kwargs):
        if ".part." in os.fspath(path):
            refused.append(os.fspath(path))
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    return refused


@pytest.mark.parametrize(
    "first",
    [Reply(206, {"Content-Range": f"bytes 0-{SIZE - 1}/{SIZE}"}), Reply(416, body=b"")],
    ids=["bad-content-range", "416"],
)
def test_a_rejected_resume_goes_on_when_the_partial_cannot_be_deleted(
    tmp_path, sleeps, undeletable_partials, first
):
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[:HALF])
    with Scripted(first) as server:
        assert fetch([server.url], dest, **pinned()).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={HALF}-", f"bytes={HALF}-"]
    assert undeletable_partials


def test_wrong_bytes_stay_a_checksum_error_when_the_partial_cannot_be_deleted(
    fault_server, tmp_path, sleeps, undeletable_partials
):
    url = fault_server.add("/w.bin", PAYLOAD)
    dest = tmp_path / "w.bin"
    own_partial(dest, PAYLOAD[::-1])
    with pytest.raises(ChecksumError, match="sha256: expected"):
        fetch([url], dest, **pinned())
    assert undeletable_partials and not dest.exists()
