"""Synthetic VGG and ResNet weight files in each real source format, for tests and benchmarks.

Each writer produces a file with the real layer layout, key names and array layouts of its
source at any widths, and returns the arrays it wrote in the source's own layout, so an
independent reference can check a conversion::

    >>> from kzoo.synthetic import TINY_VGG19, write_caffe
    >>> blobs = write_caffe(tmp_path / "tiny.caffemodel", TINY_VGG19)

Use them to test your own zoo entries without downloading anything. :mod:`.layouts` holds
the network shapes, :mod:`.writers` the writers, :mod:`.encoding` the Caffe protobuf and
Python 2 pickle encoders they need.
"""

from __future__ import annotations

from kzoo.synthetic.layouts import (
    RESNET18,
    RESNET50,
    TINY_RESNET18,
    TINY_RESNET50,
    TINY_VGG16,
    TINY_VGG19,
    TINY_VGG19_BN,
    VGG16,
    VGG19,
    VGG19_BN,
    ResNetLayout,
    VGGLayout,
    keras_slots,
    resnet_slots,
)
from kzoo.synthetic.resnet_writers import (
    write_caffe_resnet,
    write_keras_h5_resnet,
    write_torch_resnet,
)
from kzoo.synthetic.writers import (
    write_caffe,
    write_keras_h5,
    write_lasagne,
    write_legacy_h5,
    write_safetensors,
)

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
    "write_caffe",
    "write_caffe_resnet",
    "write_keras_h5",
    "write_keras_h5_resnet",
    "write_lasagne",
    "write_legacy_h5",
    "write_safetensors",
    "write_torch_resnet",
]
