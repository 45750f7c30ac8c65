"""The shapes of VGG networks that the synthetic files are written for.

:class:`VGGLayout` describes a VGG (blocks of 3x3 convs, 2x2 pools, dense layers) at any
widths; :data:`VGG19` and friends are the real sizes, :data:`TINY_VGG19` and friends the ones
the tests use. :func:`keras_slots` lists the weight slots of the matching Keras model without
building it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from kzoo.converters import WeightSlot

__all__ = [
    "TINY_VGG16",
    "TINY_VGG19",
    "TINY_VGG19_BN",
    "VGG16",
    "VGG19",
    "VGG19_BN",
    "VGGLayout",
    "keras_slots",
]


@dataclass(frozen=True)
class VGGLayout:
    """The shape of a VGG network: blocks of 3x3 convs, 2x2 pools, then dense layers.

    Attributes:
        convs_per_block: Convolutions in each block (VGG-19: 2, 2, 4, 4, 4).
        widths: Output channels of each block's convolutions.
        fc: Widths of the dense layers, the last one being the classifier.
        input_size: Side of the square input image.
        in_channels: Channels of the input image.
        batchnorm: Whether each conv is followed by BatchNorm (torchvision's ``vgg19_bn``).
    """

    convs_per_block: tuple[int, ...] = (2, 2, 4, 4, 4)
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    fc: tuple[int, ...] = (4096, 4096, 1000)
    input_size: int = 224
    in_channels: int = 3
    batchnorm: bool = False

    @property
    def pool5_size(self) -> int:
        """Side of the feature map that the first dense layer flattens."""
        return self.input_size // 2 ** len(self.convs_per_block)

    def convs(self) -> Iterator[tuple[int, int, int, int]]:
        """Yield ``(block, index, in_channels, out_channels)`` for each conv, 1-based."""
        channels = self.in_channels
        for block, (count, width) in enumerate(
            zip(self.convs_per_block, self.widths, strict=True), 1
        ):
            for index in range(1, count + 1):
                yield block, index, channels, width
                channels = width

    def dense(self) -> Iterator[tuple[str, int, int]]:
        """Yield ``(keras_name, in_features, out_features)`` for each dense layer."""
        features = self.widths[-1] * self.pool5_size**2
        for i, width in enumerate(self.fc):
            name = "predictions" if i == len(self.fc) - 1 else f"fc{i + 1}"
            yield name, features, width
            features = width


def keras_slots(layout: VGGLayout, include_top: bool = True) -> list[WeightSlot]:
    """The :class:`~kzoo.converters.WeightSlot` list of the Keras model for ``layout``.

    Lets converters run without building a Keras model (benchmarks, quick checks). Names follow
    keras.applications; a BatchNorm layout has bias-free convs, each followed by ``<conv>_bn``.
    """
    slots = []
    for block, index, c_in, c_out in layout.convs():
        name = f"block{block}_conv{index}"
        if layout.batchnorm:
            slots.append(WeightSlot(name, "conv", ((3, 3, c_in, c_out),)))
            slots.append(WeightSlot(f"{name}_bn", "batchnorm", ((c_out,),) * 4))
        else:
            slots.append(WeightSlot(name, "conv", ((3, 3, c_in, c_out), (c_out,))))
    if include_top:
        for name, n_in, n_out in layout.dense():
            slots.append(WeightSlot(name, "dense", ((n_in, n_out), (n_out,))))
    return slots


VGG19 = VGGLayout()
VGG16 = replace(VGG19, convs_per_block=(2, 2, 3, 3, 3))
VGG19_BN = replace(VGG19, batchnorm=True)
# pool5 is 2x2 at 64x64, so the (C, H, W) vs (H, W, C) flatten order is exercised
TINY_VGG19 = VGGLayout(widths=(4, 8, 16, 16, 16), fc=(32, 32, 10), input_size=64)
TINY_VGG16 = replace(TINY_VGG19, convs_per_block=(2, 2, 3, 3, 3))
TINY_VGG19_BN = replace(TINY_VGG19, batchnorm=True)
