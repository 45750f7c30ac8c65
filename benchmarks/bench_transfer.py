"""Transfer learning: kzoo.transfer against the same training written in plain Keras.

1. Frozen phase, 5 epochs, same data and head: kzoo caches the base's features (one forward
   pass) and trains the head on them; plain Keras runs the frozen base every epoch.
   Target: >= 4x faster.
2. Fine-tune phase throughput (images/s after the first, compiling, epoch): kzoo's recompiled
   model with per-group learning rates against a plain ``compile`` + ``fit``. Target: >= 1.0.

3. With ``--memory``: the frozen phase's peak memory and time at 1,000 / 10,000 / 20,000
   images whose base gives 7x7x512 features under a ``GAP`` head, each in a fresh process:
   plain Keras (no cache), the cache as it was (every batch of unpooled features kept in a
   list, then concatenated), kzoo's cache (the GAP inside the cached pass, preallocated), and a
   second run with ``cache_features="disk"`` (the base skipped).

    python benchmarks/bench_transfer.py [--images 1024] [--size 64] [--epochs 5]
    python benchmarks/bench_transfer.py --memory [--counts 1000,10000,20000]

Times include compiling, as a user sees them. Ratios are printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from _throughput import Throughput

import kzoo

BASE = "32C3x2-MP2-64C3x2-MP2-128C3x2-MP2-256C3x2-MP2-FC10"  # VGG-style; cut before flatten
HEAD = "GAP-FC256-FC5"


def make_data(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, size, size, 3)).astype("float32"), rng.integers(0, 5, n)


def make_base(size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return kzoo.build(BASE, input_shape=(size, size, 3), name="vgg_style")


def plain_keras_model(size: int) -> tuple[keras.Model, keras.Model]:
    """What a user writes by hand: the Keras guide's recipe."""
    full = make_base(size)
    base = keras.Model(full.inputs, full.get_layer("block4_pool").output)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    features = base(inputs, training=False)
    head = kzoo.build(HEAD, input_shape=tuple(features.shape[1:]), prefix="head_")
    return keras.Model(inputs, head(features)), base


# one TensorFlow thread and two malloc arenas: peaks then measure the work, not the threads
QUIET = {"MALLOC_ARENA_MAX": "2", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
MEMORY_BASE = "512C1-FC3"  # at 7x7x3: 7x7x512 features, as VGG-19's block5_pool at 224 px


def memory_worker(mode: str, n: int, epochs: int) -> dict:
    """One frozen phase in this (fresh) process: its peak RSS growth and wall time."""
    keras.utils.set_random_seed(0)
    base = kzoo.build(MEMORY_BASE, input_shape=(7, 7, 3), name="wide")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (n, 7, 7, 3)).astype("float32"), rng.integers(0, 3, n)
    options = {"batch_size": 128, "verbose": 0}
    clf = kzoo.transfer(base, head="GAP-FC3")
    if mode == "disk_second":  # a first run fills the disk cache, untimed
        clf.fit_frozen(x, y, epochs=1, cache_features="disk", diagnostics=False, **options)
        clf = kzoo.transfer(base, head="GAP-FC3")
    before = _reset_peak()
    start = time.perf_counter()
    if mode == "plain":
        clf.model.compile("adam", "sparse_categorical_crossentropy")
        clf.model.fit(x, y, epochs=epochs, **options)
    elif mode == "list_concat":  # the cache as it was: unpooled batches, then one concatenate
        cut = clf.base
        batches = [cut.predict_on_batch(x[i : i + 128]) for i in range(0, n, 128)]
        features = np.concatenate([np.asarray(b) for b in batches])
        del batches
        clf.head.compile("adam", "sparse_categorical_crossentropy")
        clf.head.fit(features, y, epochs=epochs, **options)
    else:
        setting = "disk" if mode == "disk_second" else True
        clf.fit_frozen(x, y, epochs=epochs, cache_features=setting, diagnostics=False, **options)
    seconds = time.perf_counter() - start
    return {"growth": _peak() - before, "seconds": seconds}


def _status(key: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024


def _reset_peak() -> int:
    """Forget the peak so far (Linux: imports and model building) and return the RSS now."""
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")
        return _status("VmRSS")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak() -> int:
    if Path("/proc/self/clear_refs").exists():
        return _status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_table(counts: list[int], epochs: int) -> None:
    modes = ("plain", "list_concat", "kzoo", "disk_second")
    print(
        f"frozen phase, {epochs} epochs, base {MEMORY_BASE} at 7x7x3 (7x7x512 features), GAP head"
    )
    print(f"{'images':>7} {'pooled MiB':>10} " + " ".join(f"{m:>22}" for m in modes))
    last = {}
    with tempfile.TemporaryDirectory() as home:
        for n in counts:
            row = {}
            for mode in modes:
                env = {**os.environ, "KZOO_HOME": home, "CUDA_VISIBLE_DEVICES": "", **QUIET}
                command = [sys.executable, __file__, "--memory-worker", mode, str(n)]
                command += ["--epochs", str(epochs)]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                row[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            pooled = n * 512 * 4 / 2**20
            cells = " ".join(
                f"{r['growth'] / 2**20:9.0f} MiB {r['seconds']:7.2f} s" for r in row.values()
            )
            print(f"{n:7,} {pooled:10.1f} {cells}")
            last = row
    extra = (last["kzoo"]["growth"] - last["plain"]["growth"]) / 2**20
    print(f"peak growth over plain Keras, kzoo cache: {extra:.0f} MiB (pooled: {pooled:.0f} MiB)")
    gain = last["list_concat"]["growth"] / max(last["kzoo"]["growth"], 1)
    print(f"peak growth, cache as it was / kzoo: {gain:.1f}x")
    second = last["disk_second"]["seconds"] / last["kzoo"]["seconds"]
    print(f"disk cache, second run time / first run time: {second:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs")
    parser.add_argument("--memory", action="store_true", help="peak memory of the cache")
    parser.add_argument("--counts", default="1000,10000,20000", help="images, for --memory")
    parser.add_argument("--memory-worker", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        mode, n = args.memory_worker
        print(json.dumps(memory_worker(mode, int(n), args.epochs)))
        return
    if args.memory:
        memory_table([int(c) for c in args.counts.split(",")], args.epochs)
        return
    x, y = make_data(args.images, args.size)
    quiet = {"batch_size": args.batch_size, "verbose": 0}
    print(f"keras {keras.__version__} ({keras.backend.backend()}); base {BASE} at {args.size}px")
    print(f"{args.images} images, batch {args.batch_size}, {args.epochs} frozen epochs")

    # 1. frozen phase; best of --repeats, alternating, because shared machines are noisy
    plain_times, cached_times, big_times = [], [], []
    for _ in range(args.repeats):
        model, _ = plain_keras_model(args.size)
        start = time.perf_counter()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=args.epochs, **quiet)
        plain_times.append(time.perf_counter() - start)

        clf = kzoo.transfer(make_base(args.size), head=HEAD)
        start = time.perf_counter()
        clf.fit_frozen(x, y, epochs=args.epochs, cache_features=True, diagnostics=False, **quiet)
        cached_times.append(time.perf_counter() - start)

        clf_big = kzoo.transfer(make_base(args.size), head=HEAD)
        start = time.perf_counter()
        clf_big.fit_frozen(
            x, y, epochs=args.epochs, head_batch_size=512, diagnostics=False, **quiet
        )  # fmt: skip
        big_times.append(time.perf_counter() - start)
    plain_frozen, cached_frozen, cached_big = min(plain_times), min(cached_times), min(big_times)
    print(f"frozen phase, plain Keras:            {plain_frozen:7.2f} s")
    print(f"frozen phase, kzoo cached features:   {cached_frozen:7.2f} s")
    print(f"frozen phase, kzoo cached, head b512: {cached_big:7.2f} s")

    # 2. fine-tune throughput, best of --repeats, alternating
    fine_epochs = 4
    plain_rates, kzoo_rates = [], []
    for _ in range(args.repeats):
        model, base = plain_keras_model(args.size)
        base.trainable = True
        optimizer = keras.optimizers.Adam(1e-4)
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
        meter = Throughput(args.images)
        model.fit(x, y, epochs=fine_epochs, callbacks=[meter], **quiet)
        plain_rates.append(meter.rate())

        clf = kzoo.transfer(make_base(args.size), head=HEAD)
        meter = Throughput(args.images)
        clf.fine_tune(x, y, epochs=fine_epochs, callbacks=[meter], diagnostics=False, **quiet)
        kzoo_rates.append(meter.rate())
    plain_rate, kzoo_rate = max(plain_rates), max(kzoo_rates)
    print(f"fine-tune, plain Keras: {plain_rate:8.1f} img/s")
    print(f"fine-tune, kzoo (per-group learning rates): {kzoo_rate:8.1f} img/s")

    print(f"fine-tune throughput ratio kzoo/plain: {kzoo_rate / plain_rate:.2f} (target >= 1.0)")
    print(f"frozen-phase speed-up, head b512: {plain_frozen / cached_big:.2f}x")
    print(f"frozen-phase speed-up, same batches: {plain_frozen / cached_frozen:.2f}x (target >= 4)")


if __name__ == "__main__":
    main()
