"""The shapes of the VGG and ResNet networks that the synthetic files are written for.

:class:`VGGLayout` describes a VGG (blocks of 3x3 convs, 2x2 pools, dense layers) at any
widths; :data:`VGG19` and friends are the real sizes, :data:`TINY_VGG19` and friends the ones
the tests use. :func:`keras_slots` lists the weight slots of the matching Keras model without
building it. :class:`ResNetLayout` and :func:`resnet_slots` do the same for ResNets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from kzoo.converters import WeightSlot

__all__ = [
    "RESNET18",
    "RESNET50",
    "TINY_RESNET18",
    "TINY_RESNET50",
    "TINY_VGG16",
    "TINY_VGG19",
    "TINY_VGG19_BN",
    "VGG16",
    "VGG19",
    "VGG19_BN",
    "ResNetLayout",
    "VGGLayout",
    "keras_slots",
    "resnet_slots",
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


@dataclass(frozen=True)
class ResNetLayout:
    """The shape of a ResNet: a 7x7 stem, four stages of residual blocks, a classifier.

    Attributes:
        blocks: Residual blocks per stage (ResNet-50: 3, 4, 6, 3).
        widths: Each stage's inner width; a bottleneck block outputs ``4 * width``.
        stem: Output channels of the 7x7 ``conv1``.
        bottleneck: Bottleneck blocks (1x1, 3x3, 1x1: ResNet-50 and deeper) or basic blocks
            (3x3, 3x3: ResNet-18/34).
        classes: Outputs of the classifier.
        input_size: Side of the square input image.
        in_channels: Channels of the input image.
    """

    blocks: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: int = 64
    bottleneck: bool = True
    classes: int = 1000
    input_size: int = 224
    in_channels: int = 3

    @property
    def expansion(self) -> int:
        """Output channels of a block per unit of inner width."""
        return 4 if self.bottleneck else 1

    @property
    def features(self) -> int:
        """Channels of the last feature map (the classifier's inputs)."""
        return self.widths[-1] * self.expansion

    def convs(self) -> Iterator[tuple[int, int, int, int, int, int]]:
        """Yield ``(stage, block, part, in, out, kernel)`` per conv after the stem, 1-based.

        ``stage`` counts like keras.applications (2..5), ``part`` 0 is the projection
        shortcut of a block's first block (only where the shape changes), 1.. its convs.
        """
        channels = self.stem
        for stage, (count, width) in enumerate(zip(self.blocks, self.widths, strict=True), 2):
            out = width * self.expansion
            for block in range(1, count + 1):
                if block == 1 and (stage > 2 or channels != out):
                    yield stage, block, 0, channels, out, 1
                if self.bottleneck:
                    parts = ((channels, width, 1), (width, width, 3), (width, out, 1))
                else:
                    parts = ((channels, width, 3), (width, out, 3))
                for part, (c_in, c_out, kernel) in enumerate(parts, 1):
                    yield stage, block, part, c_in, c_out, kernel
                channels = out


def resnet_slots(
    layout: ResNetLayout, include_top: bool = True, conv_bias: str = "all"
) -> list[WeightSlot]:
    """The weight slots of the keras.applications-named Keras ResNet for ``layout``.

    Args:
        layout: The network.
        include_top: Whether the ``predictions`` layer is included.
        conv_bias: Which convs have a bias: ``"all"`` (keras.applications), ``"none"``
            (torchvision) or ``"stem"`` (Caffe: ``conv1`` only).

    Returns:
        The slots in keras.applications order (BN epsilon unset).
    """

    def conv(name: str, kernel: int, c_in: int, c_out: int, bias: bool) -> WeightSlot:
        shapes = ((kernel, kernel, c_in, c_out),) + (((c_out,),) if bias else ())
        return WeightSlot(name, "conv", shapes)

    slots = [
        conv("conv1_conv", 7, layout.in_channels, layout.stem, conv_bias != "none"),
        WeightSlot("conv1_bn", "batchnorm", ((layout.stem,),) * 4),
    ]
    for stage, block, part, c_in, c_out, kernel in layout.convs():
        name = f"conv{stage}_block{block}_{part}"
        slots.append(conv(f"{name}_conv", kernel, c_in, c_out, conv_bias == "all"))
        slots.append(WeightSlot(f"{name}_bn", "batchnorm", ((c_out,),) * 4))
    if include_top:
        shapes = ((layout.features, layout.classes), (layout.classes,))
        slots.append(WeightSlot("predictions", "dense", shapes))
    return slots


RESNET50 = ResNetLayout()
RESNET18 = ResNetLayout(blocks=(2, 2, 2, 2), bottleneck=False)
# Two blocks in the first stages exercise identity blocks. At 40x40 the conventions differ
# where it matters: Caffe's ceil-mode pool1 overhangs its 20x20 input, and a stride-2 3x3
# meets an even 10x10 map, where Keras's "same" pads 0/1 and torch 1/1.
TINY_RESNET50 = ResNetLayout(
    blocks=(2, 2, 1, 1), widths=(2, 3, 4, 5), stem=4, classes=7, input_size=40
)
TINY_RESNET18 = replace(TINY_RESNET50, widths=(4, 6, 8, 10), bottleneck=False)
