"""A real HTTP server on 127.0.0.1 that serves byte payloads with injectable faults.

Use it as a context manager or through the ``fault_server`` fixture, which a test module
makes available with ``from fault_server import fault_server_fixture  # noqa: F401``::

    with FaultServer() as server:
        url = server.add("/w.bin", payload, Fault("status", status=503, times=2, retry_after="1"))
        fetch([url], dest)
        assert server.count("/w.bin") == 3

Each path has a queue of faults; a request takes the first fault that still has uses left
(``times=None`` never runs out) and that applies to it (``ignore_range`` and
``bad_content_range`` only apply to Range requests). Without a fault the path behaves like a
good server: 200, or 206 with a correct Content-Range for ``Range: bytes=N-``.

Fault kinds:
    truncate           announce the full Content-Length, send ``at`` bytes, close
    wrong_length       send the whole body with Content-Length off by ``delta``
    corrupt            same size, one byte flipped at ``at``
    status             answer ``status`` (404, 500, 503...) with optional ``retry_after``
    redirect           302 to ``location`` (another registered path)
    ignore_range       answer a Range request with 200 and the whole body
    bad_content_range  answer a Range request with 206 and a Content-Range that starts at 0
    stall              send ``at`` bytes, then go silent for ``seconds``
    trickle            send ``chunk`` bytes every ``delay`` seconds

Registering an absolute URL as the path (``server.add("http://host/f", data)``) lets the
server stand in for an HTTP proxy, which receives the absolute URL as its request path.

Every request is recorded (method, path, Range header) so tests can assert "zero requests"
or "one GET". The server stops when the ``with`` block or the test ends, and by itself after
``lifetime`` seconds so a forgotten server never outlives the test run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

__all__ = ["Fault", "FaultServer", "Hit", "dead_url", "fault_server_fixture", "self_signed"]

KINDS = {
    "truncate",
    "wrong_length",
    "corrupt",
    "status",
    "redirect",
    "ignore_range",
    "bad_content_range",
    "stall",
    "trickle",
}


@dataclass
class Fault:
    """One injected misbehaviour; see the module docstring for the kinds."""

    kind: str
    times: int | None = 1
    at: int | None = None
    status: int = 503
    retry_after: str | None = None
    delta: int = 0
    seconds: float = 0.0
    location: str | None = None
    chunk: int = 1024
    delay: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(KINDS)}")


@dataclass
class Hit:
    """One request the server received."""

    method: str
    path: str
    range: str | None
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        owner._record(Hit(self.command, path, rng, dict(self.headers.items())))
        entry = owner._payloads.get(path)
        if entry is None:
            return self._plain(404, b"not found")
        data, faults = entry
        start = _range_start(rng)
        fault = owner._take(path, faults, ranged=start is not None)
        # The client may give up mid-body (timeouts, killed tests): nothing to report then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(data, start, fault, head)

    def _plain(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, data: bytes, start: int | None, fault: Fault | None, head: bool) -> None:
        kind = fault.kind if fault else None
        if kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._plain(fault.status, b"injected failure", extra)
        if kind == "redirect":
            target = (
                f"http://{self.server.owner.host}:{self.server.server_address[1]}{fault.location}"
            )
            return self._plain(302, b"", {"Location": target})
        status, body, headers = 200, data, {}
        if kind == "bad_content_range":
            status, headers = 206, {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}
        elif start is not None and kind != "ignore_range":
            if start >= len(data):
                return self._plain(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status, body = 206, data[start:]
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        if kind == "corrupt":
            at = len(body) // 2 if fault.at is None else fault.at
            body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]
        length = len(body) + (fault.delta if kind == "wrong_length" else 0)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        self._send(body, fault)

    def _send(self, body: bytes, fault: Fault | None) -> None:
        view = memoryview(body)
        stop = self.server.owner._stopped
        kind = fault.kind if fault else None
        if kind in ("truncate", "stall"):
            at = len(body) // 2 if fault.at is None else fault.at
            self.wfile.write(view[:at])
            self.wfile.flush()
            if kind == "truncate":
                return
            stop.wait(fault.seconds)
            view = view[at:]
        if kind == "trickle":
            for offset in range(0, len(view), fault.chunk):
                if stop.is_set():
                    return
                self.wfile.write(view[offset : offset + fault.chunk])
                self.wfile.flush()
                stop.wait(fault.delay)
            return
        for offset in range(0, len(view), 8 << 20):
            self.wfile.write(view[offset : offset + (8 << 20)])


def _range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes="):
        return None
    first = value[len("bytes=") :].split("-", 1)[0]
    return int(first) if first.isdigit() else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FaultServer

    def handle_error(self, request, client_address):  # a rejected TLS handshake, a reset
        pass


class FaultServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) with per-path faults.

    Args:
        lifetime: Seconds after which the server stops by itself.
        tls: ``(certfile, keyfile)`` to serve HTTPS instead of HTTP (see :func:`self_signed`).
        host: The loopback address to listen on (``127.0.0.2`` makes a second "host").
    """

    def __init__(
        self, lifetime: float = 300.0, tls: tuple[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self._payloads: dict[str, tuple[bytes, list[list]]] = {}
        self._hits: list[Hit] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._running = False

    def start(self) -> FaultServer:
        self._thread.start()
        self._timer.start()
        self._running = True
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                return
            self._running = False
        self._stopped.set()  # wakes stalled and trickling handlers
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def add(self, path: str, payload: bytes, *faults: Fault) -> str:
        """Serve ``payload`` at ``path`` with ``faults`` applied in order; return its URL."""
        with self._lock:
            self._payloads[path] = (bytes(payload), [[f, f.times] for f in faults])
        return self.url(path)

    def _take(self, path: str, faults: list[list], ranged: bool) -> Fault | None:
        with self._lock:
            for slot in faults:
                fault, left = slot
                if left == 0:
                    continue
                if fault.kind in ("ignore_range", "bad_content_range") and not ranged:
                    continue
                if left is not None:
                    slot[1] = left - 1
                return fault
        return None

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def remove(self, path: str) -> None:
        """Stop serving ``path`` (404 from now on), e.g. a signed URL that expired."""
        with self._lock:
            self._payloads.pop(path, None)

    def hits(self, path: str | None = None) -> list[Hit]:
        """Every request received (for ``path`` only, when given), oldest first."""
        with self._lock:
            return [h for h in self._hits if path is None or h.path == path]

    def count(self, path: str | None = None, method: str = "GET") -> int:
        """How many ``method`` requests ``path`` (or any path) received."""
        return sum(1 for h in self.hits(path) if h.method == method)

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of each GET of ``path`` (None where there was none)."""
        return [h.range for h in self.hits(path) if h.method == "GET"]


def dead_url(path: str = "/dead") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def self_signed(folder: Path) -> tuple[str, str]:
    """Write a one-day self-signed certificate for 127.0.0.1; return ``(certfile, keyfile)``.

    Uses the ``openssl`` command (skips the calling test where it is missing).
    """
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture(name="fault_server")
def fault_server_fixture():
    """A running :class:`FaultServer`, stopped when the test ends."""
    with FaultServer() as server:
        yield server
