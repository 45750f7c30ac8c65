"""Throughput of kzoo's verified fetch against a plain requests download of the same bytes.

A child process serves a payload (500 MB by default) on 127.0.0.1; this process downloads
it alternately with

* raw:   ``requests.get(stream=True)`` copied to a file in 1 MiB chunks, nothing verified,
  nothing flushed to disk (the target's baseline);
* raw+fsync: the same, then one fsync: a durable copy, as kzoo must make one before it
  renames the file into place (for information);
* fetch: ``kzoo.download.fetch`` with size, md5 and sha256 pinned, as a manifest entry with
  both hashes known (it hashes with the strongest, sha256, while streaming; fsync; atomic
  rename);
* fetch-md5: the same with only md5 pinned, as Keras's own files are (for information);
* hub: ``fetch(["hf://bench/big@<commit>/big.bin"])`` from a Hugging Face Hub stand-in
  (tests/hub_server.py): a HEAD to the resolve endpoint on 127.0.0.1, the 302's signed URL on
  127.0.0.2 fetched without the token, the body checked against the sha256 the HEAD named
  (target: >= 0.95x fetch, kzoo's download of the same bytes from a plain URL).

Dirty pages are flushed (``os.sync``) before each timed run, so no run pays for the previous
one's writeback. It prints MB/s for each run, the medians, the one-core speed of each hash over
bytes in memory (what verification costs; with no idle core a verified download cannot go
faster), the ratio hub/fetch, and the ratio fetch/raw last (target >= 0.9).

    python benchmarks/bench_download.py [--mb 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from kzoo.download import fetch, hub

TESTS = Path(__file__).resolve().parents[1] / "tests"

SERVER = """
import hashlib, os, sys
sys.path.insert(0, sys.argv[1])
from fault_server import FaultServer
from hub_server import HubServer, Repo
payload = os.urandom(1 << 20) * int(sys.argv[2])
server = FaultServer(lifetime=3600).start()
server.add("/big.bin", payload)
hub = HubServer(lifetime=3600).start()
repo = hub.add(Repo("bench/big", {"big.bin": payload}, lfs={"big.bin"}))
md5, sha256 = hashlib.md5(payload).hexdigest(), hashlib.sha256(payload).hexdigest()
print(server.port, md5, sha256, hub.endpoint, repo.commit, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin
hub.stop()
server.stop()
"""


def raw_copy(url: str, path: Path) -> None:
    headers = {"Accept-Encoding": "identity"}
    with requests.get(url, stream=True, timeout=(10, 60), headers=headers) as resp:
        resp.raise_for_status()
        with open(path, "wb") as fh:
            for chunk in resp.iter_content(1 << 20):
                fh.write(chunk)


def raw_durable_copy(url: str, path: Path) -> None:
    raw_copy(url, path)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def hash_speed(name: str, size: int) -> float:
    """MB/s of one hash over ``size`` bytes already in memory, one thread."""
    block = os.urandom(8 << 20)
    start = time.perf_counter()
    h = hashlib.new(name)
    for _ in range(size // len(block)):
        h.update(block)
    return size / (time.perf_counter() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="payload size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each variant")
    args = parser.parse_args()

    size = args.mb << 20
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(TESTS), str(args.mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port, md5, sha256, endpoint, commit = server.stdout.readline().split()
        url = f"http://127.0.0.1:{port}/big.bin"
        os.environ["HF_ENDPOINT"] = endpoint
        hub_url = f"hf://bench/big@{commit}/big.bin"
        pins = {
            "fetch": {"md5": md5, "sha256": sha256},
            "fetch-md5": {"md5": md5},
            "hub": {"sha256": sha256},
        }
        with tempfile.TemporaryDirectory() as tmp:
            speeds: dict[str, list[float]] = {
                "raw": [],
                "raw+fsync": [],
                "fetch": [],
                "fetch-md5": [],
                "hub": [],
            }
            os.environ.pop("HF_TOKEN", None)  # the stand-in serves a public repo
            for run in range(args.repeat):
                order = list(speeds) if run % 2 == 0 else list(reversed(speeds))
                for name in order:
                    path = Path(tmp) / f"{name}.bin"
                    os.sync()  # the previous run's writeback is not this run's cost
                    hub.forget_resolved()  # each hub run pays for its HEAD
                    start, cpu = time.perf_counter(), time.process_time()
                    if name == "raw":
                        raw_copy(url, path)
                    elif name == "raw+fsync":
                        raw_durable_copy(url, path)
                    else:
                        source = hub_url if name == "hub" else url
                        fetch([source], path, size=size, hashes=pins[name], progress=False)
                    seconds = time.perf_counter() - start
                    cpu = time.process_time() - cpu  # this process, every thread
                    assert path.stat().st_size == size
                    path.unlink()
                    speeds[name].append(size / seconds / 1e6)
                    print(
                        f"run {run + 1} {name:9s} {speeds[name][-1]:8.1f} MB/s "
                        f"({cpu:.2f} s CPU in this process)",
                        flush=True,
                    )
    finally:
        server.stdin.close()
        server.wait(timeout=30)

    raw, verified = statistics.median(speeds["raw"]), statistics.median(speeds["fetch"])
    md5_only = statistics.median(speeds["fetch-md5"])
    via_hub = statistics.median(speeds["hub"])
    durable = statistics.median(speeds["raw+fsync"])
    print(f"payload {args.mb} MiB over loopback, median of {args.repeat} runs each")
    print(f"load average before the last run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"raw requests copy            {raw:8.1f} MB/s")
    print(f"raw copy + fsync (info)      {durable:8.1f} MB/s")
    print(f"fetch sha256+fsync           {verified:8.1f} MB/s")
    print(f"fetch md5+fsync (info)       {md5_only:8.1f} MB/s")
    print(f"hub HEAD+302+sha256+fsync    {via_hub:8.1f} MB/s")
    for name in ("sha256", "md5"):
        print(f"{name + ' in memory, one core':28s} {hash_speed(name, size):8.1f} MB/s")
    print(f"ratio fetch/(raw+fsync) (info): {verified / durable:.2f}")
    paired = statistics.median(h / f for h, f in zip(speeds["hub"], speeds["fetch"], strict=True))
    print(f"ratio hub/fetch (target >= 0.95): {via_hub / verified:.2f}")
    print(f"ratio hub/fetch, median of the runs' own ratios (steadier under load): {paired:.2f}")
    print(f"ratio fetch/raw: {verified / raw:.2f}")


if __name__ == "__main__":
    main()
