"""Regression with targets in real units: standardise them to train, invert to predict.

    python examples/regression_units.py           # house prices in dollars
    python examples/regression_units.py --smoke   # a few epochs, to check the setup works

Prices of a few hundred thousand dollars make a poor training target: the loss starts
enormous and the output layer's initial scale is far off. The usual advice is to standardise
the target, and not to forget to invert the standardisation when predicting. Here
``TargetStandardizer.attach`` puts the inversion inside the model, so the model you save
predicts dollars.
"""

# ruff: noqa: E402 - Keras is imported after the command line is parsed
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before Keras loads, so --help answers at once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="a small data set, 3 epochs")
    parser.add_argument("--seed", type=int, default=0, help="weights and shuffling seed")
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and bad flags: an answer before TensorFlow loads

import keras
import numpy as np

from kzoo.layers import TargetStandardizer, fit_standardization

FEATURES = ("area_m2", "rooms", "age_years", "distance_km")


def make_houses(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic houses: four features and a price in dollars (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 250, n)
    rooms = np.clip(np.round(area / 35 + rng.normal(0, 0.7, n)), 1, None)
    age = rng.uniform(0, 80, n)
    distance = rng.uniform(0.5, 30, n)
    price = (60_000 + 2_600 * area + 9_000 * rooms - 1_100 * age) * np.exp(-distance / 35)
    price += rng.normal(0, 12_000, n)
    x = np.stack([area, rooms, age, distance], axis=1).astype("float32")
    return x, price


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n_train, epochs = (256, 3) if args.smoke else (2000, args.epochs)
    keras.utils.set_random_seed(args.seed)

    x_train, y_train = make_houses(n_train, seed=0)
    x_test, y_test = make_houses(500, seed=1)
    print(f"target: house price in dollars, mean ${y_train.mean():,.0f}, std ${y_train.std():,.0f}")

    scaler = TargetStandardizer().fit(y_train)
    model = keras.Sequential(
        [
            keras.Input((len(FEATURES),)),
            fit_standardization(x_train),  # inputs standardised too, inside the model
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="house_prices",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(x_train, scaler.transform(y_train), epochs=epochs, batch_size=32, verbose=2)

    priced = scaler.attach(model)  # same weights; its output is in dollars
    predictions = priced.predict(x_test, verbose=0)[:, 0]
    mae = float(np.mean(np.abs(predictions - y_test)))
    baseline = float(np.mean(np.abs(y_train.mean() - y_test)))
    raw = model.predict(x_test[:1], verbose=0)[0, 0]
    print(f"forgetting to invert would predict ${raw:,.2f} for a ${y_test[0]:,.0f} house")
    print(f"test MAE: ${mae:,.0f} (always predicting the mean price: ${baseline:,.0f})")
    print(f"result: mae_dollars={mae:.2f} baseline_mae_dollars={baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
