"""A Hugging Face Hub stand-in: the resolve protocol on 127.0.0.1, the storage host on 127.0.0.2.

``HEAD/GET /{org}/{name}/resolve/{revision}/{file}`` answers as the Hub does:

* an LFS file: 302 with an absolute ``Location`` on the storage host (a fresh "signed" path
  per request; one ``live_urls`` requests old stops working, as an expired signature would),
  ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256, quoted) and ``X-Linked-Size``;
* a git file: 200 with ``ETag`` (its git blob sha1, quoted) and ``X-Repo-Commit``, and the
  bytes on GET;
* errors: 401 ``RepoNotFound`` (an unknown repo, as the Hub answers anonymous callers), 401
  ``GatedRepo`` (a gated repo without the right ``Authorization``), 404 ``RevisionNotFound``,
  404 ``EntryNotFound``;
* ``renamed`` repos answer 307 with a relative ``Location`` (the Hub's redirect for a moved
  repo), which clients follow with the token.

The storage host is a :class:`fault_server.FaultServer`, so blob faults (stall, corrupt...)
apply to the first ``faulty`` signed URLs of a file (each resolve signs a new one). Both
servers record every request with its headers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fault_server import Fault, FaultServer, Hit

from kzoo import synthetic
from kzoo.dsl import ARCHITECTURES

TINY = synthetic.TINY_VGG19

__all__ = [
    "TINY",
    "HubServer",
    "Repo",
    "git_sha1",
    "hub_server_fixture",
    "publish",
    "spec_of",
    "timm_config",
    "tiny_vgg19_fixture",
]


def git_sha1(data: bytes) -> str:
    """The git blob id of ``data`` (independent of kzoo's own)."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def timm_config(architecture: str, num_classes: int = 1000, **pretrained) -> bytes:
    """A timm ``config.json`` for ``architecture``; ``pretrained`` overrides pretrained_cfg."""
    cfg = {
        "input_size": [3, 224, 224],
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "num_classes": num_classes,
        "license": "bsd-3-clause",
        **pretrained,
    }
    config = {
        "architecture": architecture,
        "num_classes": num_classes,
        "num_features": 4096,
        "global_pool": "avg",
        "pretrained_cfg": cfg,
    }
    return json.dumps(config, indent=2).encode()


@dataclass
class Repo:
    """One repo: its files at one commit, which of them are LFS, and who may read it."""

    name: str
    files: dict[str, bytes]
    lfs: set[str] = field(default_factory=set)
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    token: str | None = None  # the token that may read a gated repo
    faults: Sequence[Fault] = ()  # applied to the first ``faulty`` signed URLs
    faulty: int = 1_000_000
    live_urls: int = 8  # a signed URL expires once this many newer ones were handed out
    signed: int = 0  # how many signed URLs were handed out

    def __post_init__(self) -> None:
        self.branches = self.branches or {"main": self.commit}
        self._sha256: dict[str, tuple[bytes, str]] = {}  # file -> (its bytes, their sha256)

    def sha256(self, filename: str) -> str:
        """The file's sha256, computed once per bytes object (the Hub stores it; hashing on
        every HEAD would make the stand-in, not the client, the slow part of a benchmark)."""
        data = self.files[filename]
        cached = self._sha256.get(filename)
        if cached is None or cached[0] is not data:
            cached = self._sha256[filename] = (data, hashlib.sha256(data).hexdigest())
        return cached[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):
        pass

    def do_HEAD(self):
        self._serve()

    def do_GET(self):
        self._serve()

    def _plain(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET" and body:
            self.wfile.write(body)

    def _serve(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        owner._record(Hit(self.command, path, self.headers.get("Range"), dict(self.headers)))
        parts = path.lstrip("/").split("/", 4)
        if len(parts) < 5 or parts[2] != "resolve":
            return self._plain(404, {})
        repo_name = f"{parts[0]}/{parts[1]}"
        revision = urllib.parse.unquote(parts[3])
        filename = urllib.parse.unquote(parts[4])
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(owner, repo_name, revision, filename, path)

    def _answer(self, owner: HubServer, repo_name: str, revision: str, filename: str, path: str):
        if repo_name in owner.renamed:
            target = path.replace(f"/{repo_name}/", f"/{owner.renamed[repo_name]}/", 1)
            return self._plain(307, {"Location": target})
        repo = owner.repos.get(repo_name)
        if repo is None:
            return self._plain(401, {"X-Error-Code": "RepoNotFound"}, b"Repository not found")
        if repo.gated and self.headers.get("Authorization") != f"Bearer {repo.token}":
            return self._plain(401, {"X-Error-Code": "GatedRepo"}, b"Access restricted")
        commit = repo.branches.get(revision) or (revision if revision == repo.commit else None)
        if commit is None:
            return self._plain(404, {"X-Error-Code": "RevisionNotFound"}, b"Invalid rev id")
        data = repo.files.get(filename)
        if data is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
            return self._plain(404, headers, b"Entry not found")
        if filename in repo.lfs:
            sha = repo.sha256(filename)
            location = owner.sign(repo, sha, data)
            headers = {
                "Location": location,
                "X-Repo-Commit": commit,
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{sha}"',
            }
            return self._plain(302, headers)
        headers = {"ETag": f'"{git_sha1(data)}"', "X-Repo-Commit": commit}
        return (
            self._plain(200, headers, data) if self.command == "GET" else self._head(headers, data)
        )

    def _head(self, headers: dict[str, str], data: bytes) -> None:
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()


def _second_loopback() -> str:
    """127.0.0.2 where the system routes all of 127/8 (Linux), else ``localhost``: another
    host name for the same machine, which is all the token check compares."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.2", 0))
        except OSError:
            return "localhost"
    return "127.0.0.2"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: HubServer

    def handle_error(self, request, client_address):
        pass


class HubServer:
    """The resolve endpoint on 127.0.0.1 and a storage host (:attr:`blobs`) on 127.0.0.2."""

    def __init__(self, lifetime: float = 300.0) -> None:
        self.repos: dict[str, Repo] = {}
        self.renamed: dict[str, str] = {}
        self._hits: list[Hit] = []
        self._lock = threading.Lock()
        self.blobs = FaultServer(lifetime, host=_second_loopback())
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def start(self) -> HubServer:
        self.blobs.start()
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self.blobs.stop()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def add(self, repo: Repo) -> Repo:
        with self._lock:
            self.repos[repo.name] = repo
        return repo

    def sign(self, repo: Repo, sha: str, data: bytes) -> str:
        """A new signed URL for a blob; the one ``live_urls`` back expires (404 from now on)."""
        with self._lock:
            repo.signed += 1
            number = repo.signed
        if number > repo.live_urls:
            self.blobs.remove(f"/lfs/{sha}/{number - repo.live_urls}")
        faults = repo.faults if number <= repo.faulty else ()
        return self.blobs.add(f"/lfs/{sha}/{number}", data, *faults) + f"?X-Amz-Signature={number}"

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def hits(self) -> list[Hit]:
        """Every request the resolve endpoint received, oldest first."""
        with self._lock:
            return list(self._hits)

    def count(self, method: str | None = None) -> int:
        """Requests to the resolve endpoint (of ``method`` only, when given)."""
        return sum(1 for h in self.hits() if method is None or h.method == method)

    def blob_gets(self) -> list[Hit]:
        """Every GET the storage host received."""
        return [h for h in self.blobs.hits() if h.method == "GET"]

    def total(self) -> int:
        """Every request either host received."""
        return len(self.hits()) + len(self.blobs.hits())


@pytest.fixture(name="hub_server")
def hub_server_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """A running :class:`HubServer` that ``HF_ENDPOINT`` points at, with no token and an empty
    Hugging Face cache; stopped when the test ends."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    for name in ("HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
                 "HUGGINGFACE_HUB_CACHE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def spec_of(layout: synthetic.VGGLayout) -> str:
    conv = "C3+BN" if layout.batchnorm else "C3"
    convs = [
        f"{w}{conv}x{n}-MP2" for n, w in zip(layout.convs_per_block, layout.widths, strict=True)
    ]
    return "-".join([*convs, *(f"FC{units}" for units in layout.fc)])


@pytest.fixture(name="tiny_vgg19")
def tiny_vgg19_fixture(monkeypatch):
    """``vgg19`` at the tiny widths, its classifier written for 1000 classes as the real one."""
    thousand = dataclasses.replace(TINY, fc=(*TINY.fc[:-1], 1000))
    monkeypatch.setitem(ARCHITECTURES, "vgg19", (spec_of(thousand), (64, 64, 3), "tiny VGG-19"))


def publish(
    hub_server, tmp_path, name: str, layout=TINY, architecture: str = "vgg19", **cfg
) -> tuple[Repo, dict]:
    """Serve a timm-layout VGG checkpoint of ``layout`` and its config.json as ``name``."""
    path = tmp_path / f"{name.replace('/', '_')}.safetensors"
    tensors = synthetic.write_safetensors(path, layout, keys="timm")
    side = layout.input_size
    config = timm_config(architecture, layout.fc[-1], input_size=[3, side, side], **cfg)
    files = {"config.json": config, "model.safetensors": path.read_bytes()}
    return hub_server.add(Repo(name, files, lfs={"model.safetensors"})), tensors
