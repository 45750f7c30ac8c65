"""Does a DSL-built model train as fast as the same model written by hand in Keras?

Builds the talk's LeNet twice - with ``kzoo.build`` and layer by layer in Keras - checks the
two are identical (layer types, shapes, parameters), gives both the same weights, then times
one-epoch fits on the same data, interleaved (ABBA order) after a warm-up fit each, and
reports medians. Build times are printed too. The last line is the throughput ratio.

    python benchmarks/bench_build.py [--repeats 6] [--samples 4096] [--batch-size 128]

Target: ratio >= 0.98 (the DSL costs nothing at train time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

import kzoo

SPEC = "20C5-MP2-50C5-MP2-FC256-FC10"
INPUT_SHAPE = (28, 28, 1)


def build_by_hand() -> keras.Model:
    """The same network as SPEC, written out in Keras (same padding, activations, names)."""
    layers = keras.layers
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(20, 5, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = layers.Conv2D(50, 5, padding="same", activation="relu", name="block2_conv1")(x)
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="fc1")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="hand")


def signature(model: keras.Model) -> list[tuple[str, tuple, int]]:
    return [
        (type(layer).__name__, tuple(layer.output.shape), layer.count_params())
        for layer in model.layers
    ]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6, help="timed fits per model")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    kzoo.build(SPEC, input_shape=INPUT_SHAPE)  # imports kzoo's builder once, outside the timing
    t_dsl = median_time(lambda: kzoo.build(SPEC, input_shape=INPUT_SHAPE), 5)
    t_hand = median_time(build_by_hand, 5)
    print(f"build: kzoo.build {t_dsl * 1e3:.1f} ms, by hand {t_hand * 1e3:.1f} ms (median of 5)")

    keras.utils.set_random_seed(0)
    models = {"dsl": kzoo.build(SPEC, input_shape=INPUT_SHAPE), "hand": build_by_hand()}
    if signature(models["dsl"]) != signature(models["hand"]):
        raise SystemExit(
            "the two models differ:\n"
            f"  dsl:  {signature(models['dsl'])}\n  hand: {signature(models['hand'])}"
        )
    models["hand"].set_weights(models["dsl"].get_weights())
    print(
        f"models identical: {len(models['dsl'].layers)} layers, "
        f"{models['dsl'].count_params():,} params each"
    )

    rng = np.random.default_rng(0)
    x = rng.random((args.samples, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)

    def fit(name: str) -> float:
        start = time.perf_counter()
        models[name].fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
        return args.samples / (time.perf_counter() - start)

    for model in models.values():
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for name in models:  # warm-up: tracing/compilation, excluded
        fit(name)

    rates: dict[str, list[float]] = {"dsl": [], "hand": []}
    for r in range(args.repeats):
        order = ("dsl", "hand") if r % 2 == 0 else ("hand", "dsl")
        for name in order:
            rates[name].append(fit(name))
    dsl, hand = statistics.median(rates["dsl"]), statistics.median(rates["hand"])
    print(
        f"fit throughput, median of {args.repeats} epochs of {args.samples} images, "
        f"batch {args.batch_size}:"
    )
    print(f"  kzoo.build  {dsl:8.0f} img/s   (runs: {', '.join(f'{v:.0f}' for v in rates['dsl'])})")
    print(
        f"  by hand     {hand:8.0f} img/s   (runs: {', '.join(f'{v:.0f}' for v in rates['hand'])})"
    )
    print(f"ratio (kzoo.build / hand-written fit throughput, target >= 0.98): {dsl / hand:.3f}")


if __name__ == "__main__":
    main()
