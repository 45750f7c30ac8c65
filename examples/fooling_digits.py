"""Fool the talk's LeNet: ten images it is sure are digits, that no person would call digits.

    python examples/fooling_digits.py                 # train on the digits, fool, draw
    python examples/fooling_digits.py --smoke         # a short version, for the tests

Trains ``20C5-MP2-50C5-MP2-FC256-FC10`` on MNIST (the offline subset when keras.datasets
cannot download), then for each class runs gradient ascent on the input from noise until the
network gives that class a probability of at least 0.99 (Nguyen et al. 2015; Simonyan et al.
2013's class models), and draws the ten images with their probabilities.
"""

# ruff: noqa: E402 - Keras is imported after the command line is parsed
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before Keras loads, so --help answers at once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument("--source", default="auto", choices=("auto", "keras", "offline"))
    parser.add_argument("--threshold", type=float, default=0.99, help="probability to reach")
    parser.add_argument("--steps", type=int, default=500, help="at most this many steps")
    parser.add_argument("--out", default="fooling_digits.png", help="PNG of the ten images")
    parser.add_argument("--smoke", action="store_true", help="2 epochs on 1,000 digits")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and bad flags: an answer before TensorFlow loads

import keras
import numpy as np

import kzoo
from kzoo.datasets import load_mnist

SPEC = "20C5-MP2-50C5-MP2-FC256-FC10"


def train_lenet(source: str, epochs: int, smoke: bool, seed: int) -> tuple[keras.Model, float]:
    """The talk's LeNet on RGB-free 0-255 digits (the scaling is a layer in the model)."""
    keras.utils.set_random_seed(seed)
    data = load_mnist(source)
    x, y = data.x_train, data.y_train
    if smoke:
        x, y = x[:1000], y[:1000]
    model = kzoo.build(
        SPEC, input_shape=(28, 28, 1), preprocessing=keras.layers.Rescaling(1 / 255, name="scale")
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype("float32"), y, epochs=epochs, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(data.x_test.astype("float32"), data.y_test, verbose=0)
    return model, float(accuracy)


def draw(result: kzoo.input_optimization.FoolingResult, path: Path) -> Path:
    """The ten images in a row, each titled with its class and probability."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result.targets), figsize=(1.3 * len(result.targets), 1.7))
    for ax, image, target, p in zip(
        np.atleast_1d(axes), result.images, result.targets, result.probabilities, strict=True
    ):
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{target}: {p:.4f}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    epochs = 2 if args.smoke else args.epochs
    model, accuracy = train_lenet(args.source, epochs, args.smoke, args.seed)
    print(f"LeNet test accuracy {accuracy:.3f} after {epochs} epoch(s)")
    result = kzoo.fool(
        model, range(10), threshold=args.threshold, steps=args.steps, seed=args.seed,
        progress=False,
    )  # fmt: skip
    for target, p in zip(result.targets, result.probabilities, strict=True):
        print(f"  fooled as {target}: p = {p:.4f}")
    print(f"{result.steps} steps; every class at p >= {args.threshold}: {result.reached}")
    written = draw(result, Path(args.out))
    print(f"saved {written}")
    return {"probabilities": result.probabilities, "reached": result.reached, "out": written}


if __name__ == "__main__":
    sys.exit(0 if main()["reached"] else 1)
