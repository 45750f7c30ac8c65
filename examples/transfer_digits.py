"""Transfer learning on MNIST: features learned on digits 0-4 help learn 5-9 from a few images.

1. Pre-train a small DSL network on digits 0-4 (all their training images).
2. Transfer it to digits 5-9 with only a few labelled images per class: kzoo.transfer cuts it
   before its classifier, trains a new head with the base frozen, then fine-tunes.
3. Train the same architecture from scratch on the same few images.
Both are tested on every test image of digits 5-9.

    python examples/transfer_digits.py              # about a minute on a laptop CPU
    python examples/transfer_digits.py --smoke      # a few seconds, for tests
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import kzoo
from kzoo.datasets import load_mnist

SPEC = "32C3-MP2-64C3-MP2-FC128+D0.5-FC5"
HEAD = "FC128+D0.5-FC5"


def network(name: str) -> keras.Model:
    """The architecture, with the 0-255 -> 0-1 scaling inside the model."""
    scale = keras.layers.Rescaling(1 / 255, name="rescale")
    return kzoo.build(SPEC, input_shape=(28, 28, 1), preprocessing=scale, name=name)


def few_per_class(x, y, per_class: int, seed: int):
    """``per_class`` random images of each label."""
    rng = np.random.default_rng(seed)
    picks = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )
    return x[picks], y[picks]


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=3, help="labelled images per digit")
    parser.add_argument("--source", default="auto", choices=("auto", "keras", "offline"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests")
    args = parser.parse_args(argv)
    pre_epochs, frozen_epochs, fine_epochs = (1, 2, 1) if args.smoke else (5, 40, 20)

    mnist = load_mnist(args.source)
    print(mnist.describe())
    source_train = mnist.y_train < 5
    x_pre, y_pre = mnist.x_train[source_train], mnist.y_train[source_train]
    if args.smoke:
        x_pre, y_pre = x_pre[:256], y_pre[:256]
    target_test = mnist.y_test >= 5
    x_test, y_test = mnist.x_test[target_test], mnist.y_test[target_test] - 5
    target = mnist.y_train >= 5
    x_few, y_few = few_per_class(
        mnist.x_train[target], mnist.y_train[target] - 5, args.per_class, args.seed
    )
    quiet = {"verbose": 0, "batch_size": 16}

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    pretrained = network("digits_0_to_4")
    pretrained.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pretrained.fit(x_pre, y_pre, epochs=pre_epochs, batch_size=64, verbose=0)
    print(f"pre-trained on {len(x_pre)} images of digits 0-4 ({time.perf_counter() - start:.0f} s)")

    keras.utils.set_random_seed(args.seed)
    clf = kzoo.transfer(pretrained, head=HEAD, learning_rate=1e-3)
    clf.fit(x_few, y_few, frozen_epochs=frozen_epochs, fine_tune_epochs=fine_epochs, **quiet)
    transfer_accuracy = clf.model.evaluate(x_test, y_test, verbose=0)[1]

    keras.utils.set_random_seed(args.seed)
    scratch = network("scratch")
    scratch.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    scratch.fit(x_few, y_few, epochs=frozen_epochs + fine_epochs, **quiet)
    scratch_accuracy = scratch.evaluate(x_test, y_test, verbose=0)[1]

    print(f"digits 5-9 from {args.per_class} labelled images per class, {len(x_test)} test images:")
    print(f"  transferred from 0-4: {transfer_accuracy:.1%} test accuracy")
    print(f"  trained from scratch: {scratch_accuracy:.1%} test accuracy")
    print(f"  margin: {100 * (transfer_accuracy - scratch_accuracy):+.1f} points")
    return {"transfer": float(transfer_accuracy), "scratch": float(scratch_accuracy)}


if __name__ == "__main__":
    main()
