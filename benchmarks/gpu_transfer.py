"""VGG-19 transfer learning on one GPU with Keras + JAX: fine-tune img/s and frozen-phase time.

    KERAS_BACKEND=jax python benchmarks/gpu_transfer.py             # one GPU, under 5 minutes
    KERAS_BACKEND=jax python benchmarks/gpu_transfer.py --smoke     # tiny sizes, runs on a CPU

Measures, with random weights (speed does not depend on their values) and mixed_bfloat16 on
a GPU: (1) the frozen phase, 5 epochs, with feature caching against the same phase without
it; (2) fine-tuning the whole network, images/s after the compiling epoch, kzoo against the
same model compiled and fitted by hand. Writes ``gpu_transfer.json`` to ``$OUT`` (or the
current folder) and prints the ratios last.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # after choosing the backend
import numpy as np
from _throughput import Throughput

import kzoo

HEAD = "GAP-FC256-FC5"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU test)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--frozen-images", type=int, default=2048)
    parser.add_argument("--frozen-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-steps", type=int, default=20, help="batches per epoch")
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batch_size, args.frozen_images = 32, 8, 32
        args.frozen_epochs, args.fine_tune_steps, args.fine_tune_epochs = 2, 2, 2
    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(0)
    n = max(args.frozen_images, args.batch_size * args.fine_tune_steps)
    x = rng.uniform(0, 255, (n, *shape)).astype("float32")
    y = rng.integers(0, 5, n)
    xf, yf = x[: args.frozen_images], y[: args.frozen_images]
    xt, yt = (
        x[: args.batch_size * args.fine_tune_steps],
        y[: args.batch_size * args.fine_tune_steps],
    )
    quiet = {"batch_size": args.batch_size, "verbose": 0, "diagnostics": False}

    def transfer() -> kzoo.Transfer:
        keras.utils.set_random_seed(0)
        return kzoo.transfer("vgg19", head=HEAD, weights=None, input_shape=shape)

    clf = transfer()
    precision = clf.precision
    print(f"keras {keras.__version__} ({keras.backend.backend()}), {precision}, VGG-19 {shape}")

    # 1. frozen phase, cached vs not
    cached = timed(lambda: clf.fit_frozen(xf, yf, epochs=args.frozen_epochs, **quiet))
    big = transfer()
    cached_big = timed(
        lambda: big.fit_frozen(xf, yf, epochs=args.frozen_epochs, head_batch_size=1024, **quiet)
    )
    plain = transfer()
    uncached = timed(
        lambda: plain.fit_frozen(xf, yf, epochs=args.frozen_epochs, cache_features=False, **quiet)
    )
    print(f"frozen phase {args.frozen_epochs} epochs x {len(xf)} images: uncached {uncached:.1f} s")
    print(f"  cached {cached:.1f} s, cached with head batch 1024 {cached_big:.1f} s")

    # 2. fine-tune throughput: kzoo vs the same model compiled by hand
    meter = Throughput(len(xt))
    clf.fine_tune(xt, yt, epochs=args.fine_tune_epochs, callbacks=[meter], **quiet)
    kzoo_rate = meter.rate()
    hand = transfer()
    hand.base.trainable = True
    hand.model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    meter = Throughput(len(xt))
    hand.model.fit(
        xt, yt, epochs=args.fine_tune_epochs, callbacks=[meter], batch_size=args.batch_size,
        verbose=0,
    )  # fmt: skip
    hand_rate = meter.rate()
    print(
        f"fine-tune b{args.batch_size}: kzoo {kzoo_rate:.0f} img/s, by hand {hand_rate:.0f} img/s"
    )

    result = {
        "device": str(keras.distribution.list_devices()[0]),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "precision": precision,
        "input_shape": list(shape),
        "batch_size": args.batch_size,
        "frozen_images": len(xf),
        "frozen_epochs": args.frozen_epochs,
        "frozen_uncached_s": uncached,
        "frozen_cached_s": cached,
        "frozen_cached_head_b1024_s": cached_big,
        "frozen_speedup": uncached / cached,
        "frozen_speedup_head_b1024": uncached / cached_big,
        "fine_tune_img_s": kzoo_rate,
        "fine_tune_by_hand_img_s": hand_rate,
        "fine_tune_ratio": kzoo_rate / hand_rate,
        "smoke": args.smoke,
    }
    out = Path(os.environ.get("OUT", ".")) / "gpu_transfer.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    print(f"fine-tune ratio kzoo/by hand: {result['fine_tune_ratio']:.2f}")
    print(f"frozen-phase speed-up (cached, head b1024): {result['frozen_speedup_head_b1024']:.2f}x")
    print(f"frozen-phase speed-up (cached, same batches): {result['frozen_speedup']:.2f}x")


if __name__ == "__main__":
    main()
