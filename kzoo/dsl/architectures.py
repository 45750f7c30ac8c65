"""Named architectures from the talk, as architecture strings with default input shapes.

``kzoo.build("lenet")`` and ``kzoo.explain("vgg19")`` look names up here, and the zoo's
manifest names them (``"spec": "vgg19"``): this is the one place a VGG string is written.
Pure Python.
"""

from __future__ import annotations

__all__ = ["ARCHITECTURES", "get_architecture", "list_architectures"]

_VGG16 = "64C3x2-MP2-128C3x2-MP2-256C3x3-MP2-512C3x3-MP2-512C3x3-MP2-FC4096x2-FC1000"
_VGG19 = "64C3x2-MP2-128C3x2-MP2-256C3x4-MP2-512C3x4-MP2-512C3x4-MP2-FC4096x2-FC1000"
_VGG19_BN = (
    "64C3+BNx2-MP2-128C3+BNx2-MP2-256C3+BNx4-MP2-512C3+BNx4-MP2-512C3+BNx4-MP2-FC4096x2-FC1000"
)
_MNIST = (28, 28, 1)
_IMAGENET = (224, 224, 3)

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
    "vgg16": (_VGG16, _IMAGENET, "VGG-16 (Simonyan & Zisserman 2014), as keras.applications"),
    "vgg19": (_VGG19, _IMAGENET, "VGG-19 (Simonyan & Zisserman 2014), as keras.applications"),
    "vgg19_bn": (_VGG19_BN, _IMAGENET, "VGG-19 with batch normalisation after every conv"),
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
