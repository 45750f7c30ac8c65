"""Named architectures, as architecture strings with default input shapes.

``kzoo.build("lenet")`` and ``kzoo.explain("vgg19")`` look names up here, and the zoo's
manifest names them (``"spec": "vgg19"``): this is the one place a VGG, ResNet or Inception
string is written. The ResNets repeat one pattern per stage, so their strings are composed from
the stage table of the paper (blocks per stage, bottleneck widths) by the small functions
below; ``kzoo.list_architectures()`` shows the resulting strings. Pure Python.
"""

from __future__ import annotations

__all__ = ["ARCHITECTURES", "get_architecture", "list_architectures"]

# convs per block of the paper's VGG configurations A, B, D and E (11, 13, 16 and 19 layers)
_VGG_BLOCKS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_MNIST = (28, 28, 1)
_IMAGENET = (224, 224, 3)
_INCEPTION = (299, 299, 3)

_WIDTHS = (64, 128, 256, 512)  # bottleneck widths of the four stages (conv2..conv5)
_DEPTHS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


def _v1_stage(width: int, blocks: int, stride: int, layout: str) -> str:
    """One ResNet v1 stage: ``R[...]xN``, only the first block strides.

    ``keras`` and ``caffe``: stride on the first 1x1 (v1); ``torch``: on the 3x3 (v1.5), with
    explicit symmetric padding and valid convs; ``basic``: torchvision's two 3x3 convs.
    """
    s = f"s{stride}" if stride > 1 else ""
    if layout == "basic":
        body = f"P1-{width}C3{s}v+BN-P1-{width}C3v+BN"
    elif layout == "torch":
        body = f"{width}C1+BN-P1-{width}C3{s}v+BN-{4 * width}C1+BN"
    else:
        body = f"{width}C1{s}+BN-{width}C3+BN-{4 * width}C1+BN"
    return f"R[{body}]" + (f"x{blocks}" if blocks > 1 else "")


def _resnet(depth: int, layout: str) -> str:
    """ResNet v1: 7x7/2 conv, 3x3/2 max pool, four stages, global average pool, FC1000."""
    options = {
        "keras": "{bias=true,eps=1.001e-5}",  # keras.applications: conv biases and BN
        "caffe": "{eps=1e-5}",
        "torch": "{eps=1e-5}",
        "basic": "{eps=1e-5}",
    }[layout]
    conv1 = "64C7s2v+BN{bias=true}" if layout == "caffe" else "64C7s2v+BN"
    pool1 = "P0,1-MP3s2" if layout == "caffe" else "P1-MP3s2"  # Caffe's ceil-mode output size
    stages = "-".join(
        _v1_stage(width, blocks, 1 if i == 0 else 2, layout)
        for i, (width, blocks) in enumerate(zip(_WIDTHS, _DEPTHS[depth], strict=True))
    )
    return f"{options}P3-{conv1}-{pool1}-{stages}-GAP-FC1000"


def _resnet_v2(depth: int) -> str:
    """keras.applications ResNetV2: pre-activation blocks, the stride on a stage's LAST block.

    Each stage is a plain group of ``PR`` blocks, so its blocks are numbered together; a
    strided block whose channels do not change gets Keras's 1x1 max-pool shortcut.
    """
    stages = []
    for i, (width, blocks) in enumerate(zip(_WIDTHS, _DEPTHS[depth], strict=True)):
        body = f"{width}C1-P1-{width}C3{{}}v-{4 * width}C1"
        if i == 3:  # the last stage does not stride
            stages.append(f"PR[{body.format('')}]x{blocks}")
        else:
            plain = f"PR[{body.format('')}]" + (f"x{blocks - 1}" if blocks > 2 else "")
            stages.append(f"[{plain}-PR[{body.format('s2')}]]")
    return "{eps=1.001e-5}P3-64C7s2v+linear-P1-MP3s2-" + "-".join(stages) + "-BN-relu-GAP-FC1000"


def _inception_v3() -> str:
    """keras.applications InceptionV3: every conv is conv + BN (no scale) + relu."""

    def c(spec: str) -> str:
        return "-".join(f"{part}+BN" for part in spec.split("-"))

    def pool_branch(filters: int) -> str:
        return f"AP3s1p-{filters}C1+BN"

    stem = c("32C3s2v-32C3v-64C3") + "-MP3s2-" + c("80C1-192C3v") + "-MP3s2"

    def mixed_35(pool: int) -> str:
        return f"cat[{c('64C1')}|{c('48C1-64C5')}|{c('64C1-96C3-96C3')}|{pool_branch(pool)}]"

    def mixed_17(n: int) -> str:
        return (
            f"cat[{c('192C1')}|{c(f'{n}C1-{n}C1,7-192C7,1')}"
            f"|{c(f'{n}C1-{n}C7,1-{n}C1,7-{n}C7,1-192C1,7')}|{pool_branch(192)}]"
        )

    mixed3 = f"cat[{c('384C3s2v')}|{c('64C1-96C3-96C3s2v')}|MP3s2]"
    mixed8 = f"cat[{c('192C1-320C3s2v')}|{c('192C1-192C1,7-192C7,1-192C3s2v')}|MP3s2]"
    split = f"cat[{c('384C1,3')}|{c('384C3,1')}]"
    mixed_8 = (
        f"cat[{c('320C1')}|{c('384C1')}-{split}|{c('448C1-384C3')}-{split}|{pool_branch(192)}]x2"
    )
    blocks = [
        stem,
        mixed_35(32),
        mixed_35(64) + "x2",
        mixed3,
        mixed_17(128),
        mixed_17(160) + "x2",
        mixed_17(192),
        mixed8,
        mixed_8,
    ]
    return "{scale=false}" + "-".join(blocks) + "-GAP-FC1000"


def _vgg(depth: int, batchnorm: bool) -> str:
    """VGG-11/13/16/19, each conv followed by BatchNorm in torchvision's ``_bn`` variants.

    VGG-19: ``64C3x2-MP2-128C3x2-MP2-256C3x4-MP2-512C3x4-MP2-512C3x4-MP2-FC4096x2-FC1000``.
    """
    conv = "C3+BN" if batchnorm else "C3"
    blocks = (
        f"{width}{conv}" + (f"x{count}" if count > 1 else "") + "-MP2"
        for width, count in zip((64, 128, 256, 512, 512), _VGG_BLOCKS[depth], strict=True)
    )
    return "-".join(blocks) + "-FC4096x2-FC1000"


def _vggs() -> dict[str, tuple[str, tuple[int, ...], str]]:
    found: dict[str, tuple[str, tuple[int, ...], str]] = {}
    for depth in (11, 13, 16, 19):
        twin = "as keras.applications" if depth in (16, 19) else "torchvision's"
        found[f"vgg{depth}"] = (
            _vgg(depth, False),
            _IMAGENET,
            f"VGG-{depth} (Simonyan & Zisserman 2014), {twin}",
        )
        found[f"vgg{depth}_bn"] = (
            _vgg(depth, True),
            _IMAGENET,
            f"VGG-{depth} with batch normalisation after every conv",
        )
    return found


def _resnets() -> dict[str, tuple[str, tuple[int, ...], str]]:
    found: dict[str, tuple[str, tuple[int, ...], str]] = {}
    for depth in (50, 101, 152):
        found[f"resnet{depth}"] = (
            _resnet(depth, "keras"),
            _IMAGENET,
            f"ResNet-{depth} v1 (He et al. 2015), as keras.applications",
        )
    for depth in (18, 34):
        found[f"resnet{depth}"] = (
            _resnet(depth, "basic"),
            _IMAGENET,
            f"ResNet-{depth} (basic blocks), torchvision's layout",
        )
    for depth in (50, 101, 152):
        found[f"resnet{depth}_torch"] = (
            _resnet(depth, "torch"),
            _IMAGENET,
            f"ResNet-{depth} v1.5 (stride on the 3x3), torchvision's layout",
        )
        found[f"resnet{depth}_caffe"] = (
            _resnet(depth, "caffe"),
            _IMAGENET,
            f"ResNet-{depth} v1, Kaiming He's Caffe release",
        )
    for depth in (50, 101, 152):
        found[f"resnet{depth}_v2"] = (
            _resnet_v2(depth),
            _IMAGENET,
            f"ResNet-{depth} v2 (pre-activation), as keras.applications",
        )
    return found


# name -> (spec, default input shape, one-line description)
ARCHITECTURES: dict[str, tuple[str, tuple[int, ...], str]] = {
    "lenet": ("20C5-MP2-50C5-MP2-FC256-FC10", _MNIST, "LeNet-style convnet for MNIST"),
    "mlp64": ("FC64-FC10", _MNIST, "one hidden layer of 64 units"),
    "mlp256": ("FC256-FC256-FC10", _MNIST, "two hidden layers of 256 units"),
    "convnet": (
        "64C3-64C3-MP2-128C3-128C3-MP2-FC256-FC10",
        _MNIST,
        "small VGG-style convnet for MNIST",
    ),
    **_vggs(),
    **_resnets(),
    "inception_v3": (
        _inception_v3(),
        _INCEPTION,
        "Inception-v3 (Szegedy et al. 2015), as keras.applications",
    ),
}


def list_architectures() -> dict[str, str]:
    """Every named architecture and its spec string.

    Returns:
        ``{"lenet": "20C5-MP2-50C5-MP2-FC256-FC10", ...}``.
    """
    return {name: spec for name, (spec, _, _) in ARCHITECTURES.items()}


def get_architecture(name: str) -> tuple[str, tuple[int, ...]] | None:
    """The spec and default input shape of a named architecture, or None if ``name`` is not one.

    Args:
        name: e.g. ``"vgg19"`` (case and surrounding spaces are ignored).
    """
    found = ARCHITECTURES.get(name.strip().lower())
    return None if found is None else (found[0], found[1])
