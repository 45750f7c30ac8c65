"""Small Keras ResNets with keras.applications layer names, in each source's semantics.

The converters are tested on tiny widths; the named architectures (``resnet50``,
``resnet50_torch``, ``resnet50_caffe``...) are full size, so the tests build the same layouts
at any widths here:

- ``"keras"``: keras.applications v1 (stride on the first 1x1, every conv with a bias, BN eps
  1.001e-5, pool1 after one pixel of zero padding);
- ``"torch"``: torchvision v1.5 (stride on the 3x3, explicit symmetric padding before strided
  convs and pool1, no conv bias, BN eps 1e-5);
- ``"caffe"``: Kaiming He's release (v1 stride, pool1 with Caffe's ceil-mode output size,
  only ``conv1`` with a bias, BN eps 1e-5).
"""

from __future__ import annotations

import keras

from kzoo.synthetic import ResNetLayout

EPSILON = {"keras": 1.001e-5, "torch": 1e-5, "caffe": 1e-5}


def keras_resnet(
    layout: ResNetLayout, variant: str, include_top: bool = True, pooling: str | None = None
) -> keras.Model:
    """A Keras ResNet for ``layout`` in ``variant``'s semantics, with logits out."""
    layers = keras.layers
    eps = EPSILON[variant]
    size = layout.input_size
    inputs = keras.Input((size, size, layout.in_channels))

    def conv(x, filters, kernel, stride, name, bias):
        if kernel == 3 and (variant == "torch" or stride == 1):
            if variant == "torch":  # torch pads 1 on both sides; Keras "same" may not
                x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
            padding = "valid" if variant == "torch" else "same"
        else:
            padding = "valid"
        return layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=bias, name=f"{name}_conv"
        )(x)

    def bn(x, name):
        return layers.BatchNormalization(epsilon=eps, name=f"{name}_bn")(x)

    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(layout.stem, 7, strides=2, use_bias=variant != "torch", name="conv1_conv")(x)
    x = layers.Activation("relu", name="conv1_relu")(bn(x, "conv1"))
    if variant == "caffe":  # ceil mode: pad the end so the last, overhanging window exists
        side = x.shape[1]
        extra = (-(-(side - 3) // 2)) * 2 + 3 - side
        x = layers.ZeroPadding2D(((0, extra), (0, extra)), name="pool1_pad")(x)
    else:
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    bias = variant == "keras"
    convs = list(layout.convs())
    for stage, count in enumerate(layout.blocks, 2):
        for block in range(1, count + 1):
            name = f"conv{stage}_block{block}"
            stride = 2 if stage > 2 and block == 1 else 1
            parts = {p: (c_out, k) for s, b, p, _, c_out, k in convs if (s, b) == (stage, block)}
            shortcut = x
            if 0 in parts:
                shortcut = bn(conv(x, parts[0][0], 1, stride, f"{name}_0", bias), f"{name}_0")
            out = x
            for part in sorted(p for p in parts if p):
                c_out, kernel = parts[part]
                if layout.bottleneck:
                    on_this = (part == 2) if variant == "torch" else (part == 1)
                else:
                    on_this = part == 1
                out = conv(out, c_out, kernel, stride if on_this else 1, f"{name}_{part}", bias)
                out = bn(out, f"{name}_{part}")
                last = part == (3 if layout.bottleneck else 2)
                if not last:
                    out = layers.Activation("relu", name=f"{name}_{part}_relu")(out)
            x = layers.Add(name=f"{name}_add")([shortcut, out])
            x = layers.Activation("relu", name=f"{name}_out")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(layout.classes, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name=f"resnet_{variant}")
