"""Train the talk's LeNet, written as one line, on MNIST.

    python examples/lenet_mnist.py            # full MNIST if reachable, else the offline subset
    python examples/lenet_mnist.py --smoke    # a few batches, to check the setup works

The architecture string reads left to right: 20 conv filters of 5x5, 2x2 max-pooling, 50
filters of 5x5, pooling, a 256-unit hidden layer, and a 10-way softmax head.
"""

# ruff: noqa: E402 - Keras is imported after the command line is parsed
from __future__ import annotations

import argparse
import logging
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before Keras loads, so --help answers at once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: 10 offline, 2 full")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--source", choices=["auto", "keras", "offline"], default="auto", help="MNIST source"
    )
    parser.add_argument("--smoke", action="store_true", help="train on a few batches only")
    parser.add_argument("--seed", type=int, default=0, help="weights and shuffling seed")
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and bad flags: an answer before TensorFlow loads

import keras
import numpy as np

import kzoo
from kzoo.datasets import load_mnist

SPEC = "20C5-MP2-50C5-MP2-FC256-FC10"

# Chosen so a 2-core CPU finishes in about a minute: 4,000 images are cheap per epoch, the
# full 60,000 are fifteen times more per epoch and need fewer of them.
DEFAULT_EPOCHS = {"offline": 10, "keras": 2}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keras.utils.set_random_seed(args.seed)

    data = load_mnist(args.source)
    print(f"dataset: {data.describe()}")
    x_train = data.x_train.astype("float32") / 255.0
    x_test = data.x_test.astype("float32") / 255.0
    y_train, y_test = data.y_train, data.y_test
    epochs = args.epochs or DEFAULT_EPOCHS[data.source]
    if args.smoke:
        x_train, y_train, x_test, y_test = x_train[:256], y_train[:256], x_test[:256], y_test[:256]
        epochs = 1

    model = kzoo.build(SPEC, input_shape=(28, 28, 1))
    print(f"model: {SPEC}  ({model.count_params():,} parameters)")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=epochs,
        validation_split=0.1,
        verbose=1,
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    chance = 1.0 / len(np.unique(y_test))
    print(f"trained {epochs} epoch(s) in {seconds:.0f} s on {data.source} MNIST")
    print(f"test accuracy: {accuracy:.4f} on {len(x_test):,} images (chance: {chance:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
