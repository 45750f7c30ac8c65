"""Transfer learning: kzoo.transfer against the same training written in plain Keras.

1. Frozen phase, 5 epochs, same data and head: kzoo caches the base's features (one forward
   pass) and trains the head on them; plain Keras runs the frozen base every epoch.
   Target: >= 4x faster.
2. Fine-tune phase throughput (images/s after the first, compiling, epoch): kzoo's recompiled
   model with per-group learning rates against a plain ``compile`` + ``fit``. Target: >= 1.0.

    python benchmarks/bench_transfer.py [--images 1024] [--size 64] [--epochs 5]

Times include compiling, as a user sees them. Ratios are printed last.
"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs")
    args = parser.parse_args()
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
