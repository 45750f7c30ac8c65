"""Synthetic ResNet weight files in each real source format.

Each writer produces a file with the real names, layer layout and array layouts of its source
for a :class:`~kzoo.synthetic.layouts.ResNetLayout` at any widths, filled with random values,
and returns the arrays it wrote in the source's own layout and names, so an independent
reference can check a conversion:

- :func:`write_torch_resnet`: torchvision/timm keys (``conv1``, ``bn1``,
  ``layer{k}.{i}.conv{j}``, ``.bn{j}``, ``layer{k}.0.downsample.{0,1}``, ``fc``), no conv
  bias, as ``model.safetensors`` or as a ``torch.save`` zip ``.pth``;
- :func:`write_caffe_resnet`: Kaiming He's Caffe release (V2 ``layer``s ``conv1`` with bias,
  ``bn_conv1`` BatchNorm with its scale factor, ``scale_conv1``, ``res2a_branch2a``...,
  ``res4b1_branch2a`` numbering in the deep stages of ResNet-101/152, ``fc1000``);
- :func:`write_keras_h5_resnet`: keras.applications' legacy HDF5 (``conv1_conv``,
  ``conv2_block1_0_conv``..., every conv with a bias, ``predictions``).
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kzoo.synthetic.encoding import caffe_layer, field_key, varint_bytes, write_pth
from kzoo.synthetic.layouts import TINY_RESNET50, ResNetLayout
from kzoo.synthetic.writers import write_legacy_h5

__all__ = ["caffe_block_name", "write_caffe_resnet", "write_keras_h5_resnet", "write_torch_resnet"]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, n).astype(np.float32)


def _bn(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """gamma, beta, mean, variance."""
    return (
        _uniform(rng, 0.5, 1.5, n),
        _uniform(rng, -0.2, 0.2, n),
        _uniform(rng, -0.3, 0.3, n),
        _uniform(rng, 0.5, 2.0, n),
    )


def _layers(
    layout: ResNetLayout, rng: np.random.Generator
) -> Iterator[tuple[int, int, int, np.ndarray, tuple[np.ndarray, ...]]]:
    """``(stage, block, part, kernel (out, in, k, k), bn arrays)`` per conv; stage 1 is the stem."""
    stem = _normal(rng, (layout.stem, layout.in_channels, 7, 7), 49 * layout.in_channels)
    yield 1, 1, 1, stem, _bn(rng, layout.stem)
    for stage, block, part, c_in, c_out, kernel in layout.convs():
        weight = _normal(rng, (c_out, c_in, kernel, kernel), kernel * kernel * c_in)
        yield stage, block, part, weight, _bn(rng, c_out)


def _classifier(rng: np.random.Generator, layout: ResNetLayout) -> tuple[np.ndarray, np.ndarray]:
    """The fc weight ``(classes, features)`` and bias."""
    weight = _normal(rng, (layout.classes, layout.features), layout.features)
    return weight, _uniform(rng, -0.1, 0.1, layout.classes)


# ---------------------------------------------------------------------------------------------
# torchvision / timm


def write_torch_resnet(
    path: Path,
    layout: ResNetLayout = TINY_RESNET50,
    *,
    container: str = "safetensors",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a torchvision/timm ResNet state dict (``resnet50.tv_in1k``'s keys).

    Args:
        path: The file to write.
        layout: The network.
        container: ``"safetensors"`` (timm's ``model.safetensors``) or ``"pth"`` (a
            ``torch.save`` zip archive, torchvision's ``resnet50-0676ba61.pth``).
        seed: Random seed.

    Returns:
        The tensors written, keyed as in the file (torch layouts: conv ``(out, in, kh, kw)``,
        fc ``(classes, features)``).
    """
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for stage, block, part, weight, bn in _layers(layout, rng):
        if stage == 1:
            conv, norm = "conv1", "bn1"
        else:
            module = f"layer{stage - 1}.{block - 1}"
            conv, norm = (
                (f"{module}.downsample.0", f"{module}.downsample.1")
                if part == 0
                else (f"{module}.conv{part}", f"{module}.bn{part}")
            )
        tensors[f"{conv}.weight"] = weight
        for leaf, value in zip(("weight", "bias", "running_mean", "running_var"), bn, strict=True):
            tensors[f"{norm}.{leaf}"] = value
        tensors[f"{norm}.num_batches_tracked"] = np.array(1000, dtype=np.int64)
    tensors["fc.weight"], tensors["fc.bias"] = _classifier(rng, layout)
    if container == "safetensors":
        from safetensors.numpy import save_file

        save_file(tensors, str(path))
    elif container == "pth":
        write_pth(path, tensors)
    else:
        raise ValueError(
            f"container must be 'safetensors' or 'pth'. Received: container={container!r}"
        )
    return tensors


# ---------------------------------------------------------------------------------------------
# Caffe (Kaiming He's release)


def caffe_block_name(stage: int, block: int, numbered: bool) -> str:
    """Caffe's name of a residual block: ``2a``, ``2b``..., or ``4a``, ``4b1``, ``4b2``...

    ResNet-101 and -152 number the blocks after ``a`` in their long stages (``res4b22``).
    """
    if block == 1:
        return f"{stage}a"
    return f"{stage}b{block - 1}" if numbered else f"{stage}{string.ascii_lowercase[block - 1]}"


def write_caffe_resnet(
    path: Path,
    layout: ResNetLayout = TINY_RESNET50,
    *,
    numbered_stages: tuple[int, ...] = (),
    seed: int = 0,
) -> dict[str, list[np.ndarray]]:
    """Write a ``.caffemodel`` like ``ResNet-50-model.caffemodel`` (V2 ``layer`` messages).

    Every conv is followed by a ``BatchNorm`` layer (blobs: mean and variance multiplied by a
    scale factor, and the factor) and a ``Scale`` layer (gamma, beta); only ``conv1`` has a
    bias.

    Args:
        path: The file to write.
        layout: The network (bottleneck blocks, as in the release).
        numbered_stages: Stages whose blocks are named ``b1``, ``b2``... (ResNet-101: (4,);
            ResNet-152: (3, 4)).
        seed: Random seed.

    Returns:
        Blobs by Caffe layer name, as stored (BatchNorm's mean and variance still scaled).
    """
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    branches = {0: "branch1", 1: "branch2a", 2: "branch2b", 3: "branch2c"}
    with open(path, "wb") as handle:
        name = b"ResNet-50"
        handle.write(field_key(1, 2) + varint_bytes(len(name)) + name)
        caffe_layer(handle, 2, "data", "data", [])

        def add(layer: str, kind: str, blobs: list[np.ndarray]) -> None:
            caffe_layer(handle, 2, layer, kind, blobs)
            if blobs:
                written[layer] = blobs

        for stage, block, part, weight, (gamma, beta, mean, var) in _layers(layout, rng):
            if stage == 1:
                conv, suffix = "conv1", "_conv1"
                blobs = [weight, _uniform(rng, -0.1, 0.1, weight.shape[0])]
            else:
                block_name = caffe_block_name(stage, block, stage in numbered_stages)
                conv, suffix = f"res{block_name}_{branches[part]}", f"{block_name}_{branches[part]}"
                blobs = [weight]
            factor = np.float32(rng.uniform(50, 1000))
            add(conv, "conv", blobs)
            add(f"bn{suffix}", "bn", [mean * factor, var * factor, np.array([factor], "f4")])
            add(f"scale{suffix}", "scale", [gamma, beta])
            if stage == 1:
                caffe_layer(handle, 2, "pool1", "pool", [])
        add("fc1000", "fc", list(_classifier(rng, layout)))
        caffe_layer(handle, 2, "prob", "softmax", [])
    return written


# ---------------------------------------------------------------------------------------------
# keras.applications legacy HDF5


def write_keras_h5_resnet(
    path: Path, layout: ResNetLayout = TINY_RESNET50, *, include_top: bool = True, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """Write weights like ``resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5``.

    Returns:
        The Keras-layout arrays written (conv ``(kh, kw, in, out)`` + bias, BN gamma, beta,
        mean, variance, dense ``(features, classes)`` + bias), keyed by layer name.
    """
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, list[np.ndarray]]] = [("input_1", []), ("conv1_pad", [])]
    for stage, block, part, weight, bn in _layers(layout, rng):
        name = "conv1" if stage == 1 else f"conv{stage}_block{block}_{part}"
        bias = _uniform(rng, -0.1, 0.1, weight.shape[0])
        layers.append((f"{name}_conv", [weight.transpose(2, 3, 1, 0).copy(), bias]))
        layers.append((f"{name}_bn", list(bn)))
        layers.append((f"{name}_relu", []))
    layers.append(("avg_pool", []))
    if include_top:
        weight, bias = _classifier(rng, layout)
        layers.append(("predictions", [weight.T.copy(), bias]))
    write_legacy_h5(path, layers)
    return {name: arrays for name, arrays in layers if arrays}
