"""Inside the network: does ``kzoo.features`` and ``kzoo.stylize`` cost anything over hand code?

1. Feature extraction: ``kzoo.features(vgg19, "blocks")`` against the sub-model a Keras user
   writes, ``keras.Model(vgg.input, [vgg.get_layer(n).output for n in names])``, on VGG-19 at
   224 px, batch 8: images per second of ``predict_on_batch``, interleaved, median of the
   repeats after a warm-up each. Target: ratio >= 0.98.
2. One style-transfer step at the same size and layers (content ``block5_conv2``, style the
   first conv of each block): ``kzoo.input_optimization.StyleTransfer`` against the keras.io
   tutorial's loop (a ``tf.function`` computing the loss on the stacked [content, style,
   image] batch, then ``optimizer.apply_gradients``). Also printed: the same loop with the
   content and style features computed once, as kzoo does, to show where the gain comes from.
   Target: ratio >= 1.0. TensorFlow only (the tutorial's loop is).

    python benchmarks/bench_features.py [--size 224] [--batch 8] [--repeats 5] [--steps 5]

The weights are random (``weights=None``): the speed is the same as with ImageNet's. Ratios
are printed last.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

import kzoo
from kzoo.input_optimization import StyleTransfer
from kzoo.losses import STYLE_LAYERS, gram_matrix
from kzoo.taps import block_outputs

CONTENT = "block5_conv2"


def _median_rate(run, images: int, repeats: int) -> float:
    run()  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


def feature_throughput(size: int, batch: int, repeats: int) -> tuple[float, float]:
    vgg = kzoo.load("vgg19", weights=None, include_top=False, input_shape=(size, size, 3))
    names = block_outputs(vgg)
    ours = kzoo.features(vgg, "blocks")
    hand = keras.Model(vgg.input, [vgg.get_layer(n).output for n in names])
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    np.testing.assert_allclose(  # the same numbers, or the race means nothing
        keras.ops.convert_to_numpy(ours.predict_on_batch(x)[names[-1]]),
        keras.ops.convert_to_numpy(hand.predict_on_batch(x)[-1]),
        rtol=1e-5,
        atol=1e-4,
    )
    rates = {"kzoo": [], "hand": []}
    for _ in range(2):  # interleaved: the machine's slow moments hit both sides
        rates["kzoo"].append(_median_rate(lambda: ours.predict_on_batch(x), batch, repeats))
        rates["hand"].append(_median_rate(lambda: hand.predict_on_batch(x), batch, repeats))
    return max(rates["kzoo"]), max(rates["hand"])


def keras_io_step(size: int, precomputed: bool):
    """The keras.io neural style transfer tutorial's step, at kzoo's layers and weighting."""
    import tensorflow as tf

    vgg = keras.applications.VGG19(weights=None, include_top=False)
    layers = {layer.name: layer.output for layer in vgg.layers}
    extractor = keras.Model(vgg.inputs, layers)
    rng = np.random.default_rng(0)
    base = tf.constant(rng.uniform(-100, 100, (1, size, size, 3)), tf.float32)
    style = tf.constant(rng.uniform(-100, 100, (1, size, size, 3)), tf.float32)
    image = tf.Variable(rng.uniform(-100, 100, (1, size, size, 3)).astype("float32"))
    optimizer = keras.optimizers.Adam(4.0)

    def losses(content_f, style_f, image_f):
        loss = tf.reduce_mean(tf.square(image_f[CONTENT] - content_f[CONTENT]))
        for name in STYLE_LAYERS:
            loss += tf.reduce_mean(tf.square(gram_matrix(image_f[name]) - style_f[name]))
        return loss

    if precomputed:
        content_f = extractor(base)
        style_f = {n: gram_matrix(v) for n, v in extractor(style).items() if n in STYLE_LAYERS}

        @tf.function
        def compute(image):
            with tf.GradientTape() as tape:
                loss = losses(content_f, style_f, extractor(image))
            return loss, tape.gradient(loss, image)
    else:

        @tf.function
        def compute(image):  # the tutorial: every step runs all three images
            with tf.GradientTape() as tape:
                f = extractor(tf.concat([base, style, image], axis=0))
                parts = [{n: v[i : i + 1] for n, v in f.items()} for i in range(3)]
                style_g = {n: gram_matrix(parts[1][n]) for n in STYLE_LAYERS}
                loss = losses(parts[0], style_g, parts[2])
            return loss, tape.gradient(loss, image)

    def step():
        loss, grads = compute(image)
        optimizer.apply_gradients([(grads, image)])
        return loss

    return step


def stylize_steps(size: int, steps: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(1)
    photo, painting = (rng.uniform(0, 255, (size, size, 3)) for _ in range(2))
    transfer = StyleTransfer(photo, painting, weights=None, size=size)
    ours = lambda: transfer.descent.step()  # noqa: E731
    tutorial, tutorial_once = keras_io_step(size, False), keras_io_step(size, True)
    rates = {"kzoo": [], "keras.io": [], "once": []}
    for _ in range(2):
        rates["kzoo"].append(_median_rate(ours, 1, steps))
        rates["keras.io"].append(_median_rate(tutorial, 1, steps))
        rates["once"].append(_median_rate(tutorial_once, 1, steps))
    return max(rates["kzoo"]), max(rates["keras.io"]), max(rates["once"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    ours, hand = feature_throughput(args.size, args.batch, args.repeats)
    print(f"features, VGG-19 {args.size} px, batch {args.batch} (best of 2 medians):")
    print(f"  kzoo.features      {ours:8.2f} img/s")
    print(f"  hand sub-model     {hand:8.2f} img/s")
    style_ratio = None
    if keras.backend.backend() == "tensorflow":
        kz, tutorial, once = stylize_steps(args.size, args.steps)
        style_ratio = kz / tutorial
        print(f"style transfer steps at {args.size} px (best of 2 medians of {args.steps}):")
        print(f"  kzoo StyleTransfer           {kz:6.3f} steps/s")
        print(f"  keras.io loop                {tutorial:6.3f} steps/s")
        print(f"  keras.io loop, targets once  {once:6.3f} steps/s (kzoo / this: {kz / once:.2f})")
    print(f"features ratio (kzoo / hand, target >= 0.98): {ours / hand:.3f}")
    if style_ratio is not None:
        print(f"stylize step ratio (kzoo / keras.io loop, target >= 1.0): {style_ratio:.3f}")


if __name__ == "__main__":
    main()
